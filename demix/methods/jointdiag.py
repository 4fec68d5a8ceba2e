r"""Joint approximate diagonalisation of a set of symmetric matrices by Jacobi rotations.

Given ``C_k`` (``K`` symmetric ``n × n`` matrices), find the orthogonal ``V`` that makes every
``V^T C_k V`` as diagonal as possible (least squares on the off-diagonal entries). Used by SOBI
(lagged covariances) and by JADE (fourth-order cumulant matrices).

References
----------
.. [1] J.-F. Cardoso and A. Souloumiac, "Jacobi angles for simultaneous diagonalization",
   SIAM J. Matrix Anal. Appl. 17(1), 1996.
"""

from __future__ import annotations

import numpy as np

from demix.types import Callback, IterInfo

__all__ = ["joint_diagonalise"]


def joint_diagonalise(
    C: np.ndarray, max_iter: int, tol: float, callback: Callback | None
) -> tuple[np.ndarray, int, float]:
    """Jacobi joint diagonalisation of symmetric ``C`` (n_lags, n, n); returns ``V``, sweeps, angle.

    ``C`` is not modified; the rotated set is ``V^T C_tau V``.
    """
    n = C.shape[1]
    M = np.array(
        C.transpose(1, 2, 0), order="C"
    )  # a copy: C is never rotated in place  # (n, n, n_lags): rows contiguous over lags
    V = np.eye(n)
    max_angle = 0.0
    sweep = 0
    for sweep in range(1, max_iter + 1):
        max_angle = 0.0
        for p in range(n - 1):
            for q in range(p + 1, n):
                theta = _jacobi_angle(M[p, p] - M[q, q], M[p, q] + M[q, p])
                max_angle = max(max_angle, abs(theta))
                if abs(theta) > tol:
                    _rotate(M, V, p, q, np.cos(theta), np.sin(theta))
        if callback is not None:
            callback(IterInfo(iteration=sweep, max_iter=max_iter, change=max_angle))
        if max_angle <= tol:
            break
    return V, sweep, max_angle


def _jacobi_angle(g1: np.ndarray, g2: np.ndarray) -> float:
    """Optimal Givens angle for one pair (Cardoso & Souloumiac 1996, real case)."""
    ton = float(g1 @ g1 - g2 @ g2)
    toff = 2.0 * float(g1 @ g2)
    return 0.5 * float(np.arctan2(toff, ton + np.hypot(ton, toff)))


def _rotate(M: np.ndarray, V: np.ndarray, p: int, q: int, c: float, s: float) -> None:
    """In place: ``M_tau <- G^T M_tau G`` for every lag and ``V <- V G``, ``G = [[c, -s], [s, c]]``."""
    Mp, Mq = M[p].copy(), M[q].copy()
    M[p], M[q] = c * Mp + s * Mq, c * Mq - s * Mp
    Mp, Mq = M[:, p].copy(), M[:, q].copy()
    M[:, p], M[:, q] = c * Mp + s * Mq, c * Mq - s * Mp
    Vp, Vq = V[:, p].copy(), V[:, q].copy()
    V[:, p], V[:, q] = c * Vp + s * Vq, c * Vq - s * Vp
