"""The data that travels through demix: Signal in, Separation out, IterInfo for progress.

Array convention everywhere: a signal is ``(n_channels, n_samples)``, sources are
``(n_sources, n_samples)``; the mixing model is ``x = A s`` with ``A`` ``(n_channels, n_sources)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np


@dataclass(frozen=True)
class Signal:
    """Audio loaded into memory: ``data`` is ``(n_channels, n_samples)`` float."""

    data: np.ndarray
    sample_rate: int

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])


@dataclass(frozen=True)
class IterInfo:
    """One iteration's report to a progress callback: where we are and how much changed.

    ``objective`` is the value the method minimises (or maximises) at this iteration, when it
    computes one anyway (NMF's divergence, ICA's contrast); None when it does not.
    """

    iteration: int
    max_iter: int
    change: float
    objective: float | None = None


Callback = Callable[[IterInfo], None]


Layout = Literal["mono", "images"]
"""``mono``: sources ``(n_sources, n_samples)``; ``images``: ``(n_sources, n_channels, n_samples)``,
each source as heard at every microphone."""


@dataclass(frozen=True)
class Instantaneous:
    """The model ``x - mean = A s``: one mixing matrix for every sample.

    ``mixing`` ``A`` is ``(n_channels, n_sources)``; ``unmixing`` ``W`` is ``(n_sources, n_channels)``
    and acts on the centred mixture with whitening and PCA folded in (``s = W (x - mean)``).
    Post-processing projects the sources back onto a reference microphone with it.
    """

    mixing: np.ndarray
    unmixing: np.ndarray
    kind: ClassVar[str] = "instantaneous"


Model = Instantaneous | None
"""What a method says about how the sources were mixed; None when it has no mixing model
(masking methods). The per-frequency model of frequency-domain methods joins this union."""


@dataclass(frozen=True)
class Separation:
    """What a separation method returns; the same shape for every method.

    Attributes
    ----------
    sources : ndarray, (n_sources, n_samples) or (n_sources, n_channels, n_samples)
        Estimated sources in the method's own scale (unit variance for ICA-like methods); which
        shape is said by ``layout``.
    layout : {"mono", "images"}
        ``mono`` one signal per source; ``images`` each source at every microphone.
    model : Instantaneous or None
        The mixing model the method fitted, by kind; post-processing dispatches on it.
    n_iter, converged, final_change
        Convergence record (``converged`` is True for closed-form methods).
    facts : tuple of dict
        Per-source facts (components, features, a pan angle …), one dict per source in the
        order of ``sources``; the pipeline reorders them with the sources and writes each into
        that source's ``outputs[i]`` entry. Empty when the method has none.
    names : tuple of str or None
        Output names chosen by the method (e.g. ``percussive``); None means ``source_1 …``
        after ordering.
    diagnostics : dict
        Run-level, JSON-serialisable facts for the manifest. Nothing per source goes here
        (it would not follow the sources when they are reordered).
    """

    sources: np.ndarray
    layout: Layout
    model: Model
    n_iter: int
    converged: bool
    final_change: float
    facts: tuple[dict[str, Any], ...] = ()
    names: tuple[str, ...] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = 2 if self.layout == "mono" else 3
        if self.sources.ndim != expected:
            raise ValueError(f"{self.layout} sources must be {expected}-D, got shape {self.sources.shape}")
        n = self.sources.shape[0]
        if self.facts and len(self.facts) != n:
            raise ValueError(f"{len(self.facts)} per-source facts for {n} sources")
        if self.names is not None and len(self.names) != n:
            raise ValueError(f"{len(self.names)} names for {n} sources")

    @property
    def n_sources(self) -> int:
        return int(self.sources.shape[0])
