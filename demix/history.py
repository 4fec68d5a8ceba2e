"""Record a method's convergence from its progress callback, thinned to a few hundred points.

Methods report every iteration through ``callback(IterInfo)`` (DESIGN: callbacks, not prints).
:class:`History` sits between the method and whatever callback the caller passes (a progress
bar), forwards every report and keeps a bounded, evenly thinned copy for the manifest, so a
run of a million iterations still records a few hundred points and the last one.
"""

from __future__ import annotations

import math
from typing import Any

from demix.types import Callback, IterInfo

__all__ = ["History"]

DEFAULT_POINTS = 300


class History:
    """A callback that forwards to ``callback`` and keeps a thinned convergence history.

    The first ``max_points // 4`` reports are all kept (where convergence changes fastest); the
    rest are kept at a stride of 1, 2, 4 … reports: when more than ``max_points`` are held,
    every other one is dropped and the stride doubles. Memory and the manifest stay bounded
    (at most ``1.25 max_points`` reports plus the last one) whatever the iteration count.

    Parameters
    ----------
    callback : callable, optional
        Called with every :class:`~demix.types.IterInfo`, unchanged.
    max_points : int
        Most reports kept (the last report is always kept as well).
    """

    def __init__(self, callback: Callback | None = None, *, max_points: int = DEFAULT_POINTS) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        self.callback = callback
        self.max_points = max_points
        self.n_reports = 0
        self._stride = 1
        self._head: list[tuple[int, IterInfo]] = []
        self._kept: list[tuple[int, IterInfo]] = []
        self._last: IterInfo | None = None

    def __call__(self, info: IterInfo) -> None:
        if self.callback is not None:
            self.callback(info)
        step = self.n_reports
        self.n_reports += 1
        self._last = info
        if step < self.max_points // 4:
            self._head.append((step, info))
        if step % self._stride:
            return
        self._kept.append((step, info))
        if len(self._kept) > self.max_points:
            self._stride *= 2
            self._kept = [(s, i) for s, i in self._kept if s % self._stride == 0]

    def record(self) -> dict[str, Any]:
        """The history as JSON-ready lists: ``step`` (0-based report number), ``iteration``,
        ``change`` and, when the method reported one, ``objective``; non-finite values are None."""
        points = sorted(dict(self._head + self._kept).items())
        if self._last is not None and (not points or points[-1][0] != self.n_reports - 1):
            points.append((self.n_reports - 1, self._last))
        out: dict[str, Any] = {
            "n_reports": self.n_reports,
            "step": [s for s, _ in points],
            "iteration": [i.iteration for _, i in points],
            "change": [_finite(i.change) for _, i in points],
        }
        if any(i.objective is not None for _, i in points):
            out["objective"] = [_finite(i.objective) for _, i in points]
        return out


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
