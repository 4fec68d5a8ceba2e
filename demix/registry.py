"""The registry of separation methods: each declared once, with its parameters and its model.

A :class:`MethodSpec` ties a method's name to the frozen dataclass of its parameters (the one
object that gives the call's keyword arguments, the manifest's ``params`` and the defaults the
CLI shows), the function that runs it, and the kind of model it returns. Every runner has one
signature, ``run(X, sample_rate, params, callback) -> Separation``, with ``X`` the mixture
``(n_channels, n_samples)``. A job names its method by the registry key, so it pickles as
plain data and runs the same in another process or on a cluster worker.

Adding a method: write ``demix/methods/<name>.py`` with its parameters dataclass (validated in
``__post_init__`` through :mod:`demix.checks`) and its runner, add one :class:`MethodSpec` here,
and a small command in ``demix/cli/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from demix.bases import SupervisedParams, separate_supervised
from demix.errors import ParameterError
from demix.methods import duet, fastica, iva, jade, nmf_separate, picard, repet, sobi
from demix.types import Callback, Separation

__all__ = ["METHODS", "MethodSpec", "method_spec"]

ModelKind = Literal["instantaneous", "none"]
StreamKind = Literal["statistics", "bases", "repetitions", "segments"]
Runner = Callable[[np.ndarray, int, Any, Callback | None], Separation]

#: Copies of the float64 input a linear method's in-memory path holds at its peak (input, whitened
#: float32 = half a copy, sources, images, written copy: measured ~5, issue 15).
LINEAR_COPIES = 6


@dataclass(frozen=True)
class MethodSpec:
    """One separation method as the pipeline sees it.

    Attributes
    ----------
    name : str
        Registry key, recorded in the manifest as ``method``.
    command : str
        The CLI command that runs it (several methods may share one, e.g. ``nmf``).
    params : type
        Frozen dataclass of the parameters; constructing it validates them.
    run : callable
        ``run(X, sample_rate, params, callback) -> Separation``.
    model : {"instantaneous", "none"}
        The kind of model its :class:`~demix.types.Separation` carries.
    min_channels : int
        Fewest input channels it can separate (2 for a linear unmixing: one channel gives one
        "source", the input itself); fewer are refused before any work.
    copies : float
        Float64 copies of the input its in-memory path holds at its peak (measured on minutes of
        stereo at 44.1 kHz, issue 15): the input times this is what deciding to stream, and
        sizing a segment, weigh against ``--max-memory``.
    stream : {"statistics", "bases", "repetitions", "segments"} or None
        How it separates a long file in bounded memory (None: it holds its input in memory).
        ``statistics``: one linear model fitted on statistics accumulated block by block and
        applied block by block (:mod:`demix.streaming`); ``bases``: NMF bases learnt on excerpts,
        then fixed while each segment's activations are fitted (:mod:`demix.streaming_nmf`);
        ``repetitions``: REPET's neighbours searched over the whole spectrogram, kept on disk,
        and its masks applied section by section (:mod:`demix.streaming_repet`; ``--refine
        nmf`` in segments); ``segments``: the method runs on overlapping segments, its sources
        matched across each overlap and cross-faded (:mod:`demix.segmented`).
    """

    name: str
    command: str
    params: type
    run: Runner
    model: ModelKind
    copies: float
    min_channels: int = 1
    stream: StreamKind | None = None

    def separate(self, X: np.ndarray, sample_rate: int, params: Any, callback: Callback | None) -> Separation:
        """Run the method on ``X`` with ``params`` (an instance of :attr:`params`)."""
        if not isinstance(params, self.params):
            raise TypeError(f"{self.name} takes {self.params.__name__}, got {type(params).__name__}")
        return self.run(X, sample_rate, params, callback)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "fastica",
            "ica",
            fastica.FastICAParams,
            fastica.separate,
            "instantaneous",
            LINEAR_COPIES,
            min_channels=2,
            stream="statistics",
        ),
        MethodSpec(
            "picard",
            "ica",
            picard.PicardParams,
            picard.separate,
            "instantaneous",
            LINEAR_COPIES,
            min_channels=2,
            stream="statistics",
        ),
        MethodSpec(
            "jade",
            "ica",
            jade.JadeParams,
            jade.separate,
            "instantaneous",
            LINEAR_COPIES,
            min_channels=2,
            stream="statistics",
        ),
        MethodSpec(
            "decorr",
            "decorr",
            sobi.DecorrParams,
            sobi.separate,
            "instantaneous",
            LINEAR_COPIES,
            min_channels=2,
            stream="statistics",
        ),
        MethodSpec("nmf", "nmf", nmf_separate.NMFParams, nmf_separate.separate, "none", 18, stream="bases"),
        MethodSpec(
            "nmf-supervised", "nmf", SupervisedParams, separate_supervised, "none", 18, stream="segments"
        ),
        MethodSpec(
            "duet", "duet", duet.DuetParams, duet.separate, "none", 32, min_channels=2, stream="segments"
        ),
        MethodSpec("repet", "repet", repet.RepetParams, repet.separate, "none", 14, stream="repetitions"),
        MethodSpec("iva", "iva", iva.IVAParams, iva.separate, "none", 32, min_channels=2, stream="segments"),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ParameterError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}") from None
