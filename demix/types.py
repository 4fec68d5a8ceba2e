"""The data that travels through demix: Signal in, Separation out, IterInfo for progress.

Array convention everywhere: a signal is ``(n_channels, n_samples)``, sources are
``(n_sources, n_samples)``; the mixing model is ``x = A s`` with ``A`` ``(n_channels, n_sources)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Signal:
    """Audio loaded into memory: ``data`` is ``(n_channels, n_samples)`` float."""

    data: np.ndarray
    sample_rate: int
    origin: str = ""

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])


@dataclass(frozen=True)
class IterInfo:
    """One iteration's report to a progress callback: where we are and how much changed."""

    iteration: int
    max_iter: int
    change: float


Callback = Callable[[IterInfo], None]


@dataclass(frozen=True)
class Separation:
    """What a separation method returns; the same shape for every method.

    Attributes
    ----------
    sources : ndarray, (n_sources, n_samples)
        Estimated sources in the method's own scale (unit variance for ICA-like methods).
    mixing : ndarray, (n_channels, n_sources) or None
        ``A`` such that the centred mixture is close to ``A @ sources``; None for non-linear models.
    unmixing : ndarray, (n_sources, n_channels) or None
        ``W`` acting on the centred mixture, whitening and PCA folded in: ``sources = W @ (x - mean)``.
    n_iter, converged, final_change
        Convergence record (``converged`` is True for closed-form methods).
    diagnostics : dict
        Method-specific JSON-serialisable facts for the manifest (e.g. per-source kurtosis).
    names : tuple of str or None
        Output names chosen by the method (e.g. ``percussive``); None means ``source_1 …``.
    """

    sources: np.ndarray
    mixing: np.ndarray | None
    unmixing: np.ndarray | None
    n_iter: int
    converged: bool
    final_change: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] | None = None
