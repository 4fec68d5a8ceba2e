r"""Several random starts of an ICA method; keep the most non-Gaussian solution.

An ICA contrast can have spurious local optima (on short or noisy clips, or with many sources),
and which one an iteration reaches depends on its random start. :func:`best_of_restarts` runs the
method from ``restarts`` seeds (``seed, seed + 1, …``, so any restart can be reproduced by a
single run with its seed) and keeps the solution whose sources are the most non-Gaussian by
Hyvärinen's negentropy approximation [1]_

.. math::

    J(W) = \sum_i \bigl(\hat E\{\log\cosh s_i\} - E\{\log\cosh \nu\}\bigr)^2,

``s_i`` the unit-variance sources and ``ν`` standard normal — one yardstick for every method (the
methods' own objectives are not comparable with each other, and Picard's likelihood depends on the
densities it chose). The spread of ``J`` across restarts says how much the start mattered: a
spread near 0 means every start found the same solution.

References
----------
.. [1] A. Hyvärinen, "Fast and robust fixed-point algorithms for independent component analysis",
   IEEE Transactions on Neural Networks 10(3), 626-634, 1999.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from demix.errors import ParameterError
from demix.methods.picard import ICAResult

__all__ = ["Restarts", "best_of_restarts", "negentropy"]

#: E{log cosh ν} for a standard normal ν.
_GAUSSIAN_LOGCOSH = 0.374567207491438
#: Samples per block when the negentropy is measured (bounded memory on long signals).
_BLOCK = 1 << 16


@dataclass(frozen=True)
class Restarts:
    """The kept solution and what every restart reached.

    Attributes
    ----------
    best : ICAResult
        The solution of largest negentropy.
    seeds : tuple of int
        The seed of every restart, in the order run.
    negentropy : tuple of float
        ``J`` reached from each seed (larger is more non-Gaussian).
    best_index : int
        Position of ``best`` in ``seeds``.
    """

    best: ICAResult
    seeds: tuple[int, ...]
    negentropy: tuple[float, ...]
    best_index: int

    @property
    def spread(self) -> float:
        """``max J - min J`` over the restarts (0 for one restart)."""
        return float(max(self.negentropy) - min(self.negentropy))

    @property
    def relative_spread(self) -> float:
        """:attr:`spread` divided by the best ``J`` (0 when ``J`` is 0)."""
        top = max(self.negentropy)
        return self.spread / top if top > 0 else 0.0


def negentropy(sources: np.ndarray) -> float:
    """Hyvärinen's negentropy approximation summed over the rows of ``sources`` (n, T).

    Rows are centred and scaled to unit variance first, so the value does not depend on scale.
    """
    S = np.asarray(sources, dtype=np.float64)
    n, T = S.shape
    mean = S.mean(axis=1, keepdims=True)
    std = S.std(axis=1, keepdims=True)
    std[std == 0] = 1.0
    total = np.zeros(n)
    for a in range(0, T, _BLOCK):
        y = (S[:, a : a + _BLOCK] - mean) / std
        total += np.logaddexp(y, -y).sum(axis=1)
    logcosh = total / T - np.log(2.0)
    return float(np.sum((logcosh - _GAUSSIAN_LOGCOSH) ** 2))


def best_of_restarts(
    method: Callable[..., ICAResult],
    X: np.ndarray,
    *,
    restarts: int,
    seed: int = 0,
    **options: object,
) -> Restarts:
    """Run ``method(X, seed=s, **options)`` for ``restarts`` seeds and keep the most non-Gaussian.

    Parameters
    ----------
    method : callable
        An ICA method taking ``seed`` (e.g. :func:`demix.methods.picard.picard`).
    X : ndarray, (n_channels, n_samples)
        The mixture.
    restarts : int
        How many seeds to run (``--restarts``), at least 1.
    seed : int
        The first seed; restart ``k`` uses ``seed + k``.
    **options
        Passed to ``method`` unchanged.

    Returns
    -------
    Restarts

    Raises
    ------
    ParameterError
        ``restarts`` or ``seed`` not an integer of at least 1 (resp. 0).
    """
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise ParameterError(f"--restarts {restarts!r} is invalid; expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"--seed {seed!r} is invalid; expected an integer >= 0")
    seeds = tuple(int(seed) + k for k in range(int(restarts)))
    best: ICAResult | None = None
    values: list[float] = []
    best_index = 0
    for k, s in enumerate(seeds):
        result = method(X, seed=s, **options)
        values.append(negentropy(result.sources))
        if best is None or values[-1] > values[best_index]:
            best, best_index = result, k
    assert best is not None  # restarts >= 1
    return Restarts(best=best, seeds=seeds, negentropy=tuple(values), best_index=best_index)
