r"""ILRMA: independent low-rank matrix analysis, IVA with an NMF model of each source's spectrogram.

Kitamura et al. [1]_ model each separated source ``y_kfn = w_kf^H z_fn`` as zero-mean complex
Gaussian with variance ``r_kfn = Σ_l t_kfl v_kln``: a few spectral shapes ``t_k·l`` (``n_basis``
of them) switched on and off by activations ``v_kl·``. The negative log-likelihood per frame is

.. math::

    J = \frac{1}{N} \sum_{k,f,n} \Big( \frac{|y_{kfn}|^2}{r_{kfn}} + \log r_{kfn} \Big)
        - \sum_f \log |\det W_f|^2 ,

and each iteration decreases it by

1. the Itakura-Saito multiplicative updates of ``T`` and ``V`` for ``P = |Y|²`` (majorise-minimise),
   ``T ← T ⊙ \sqrt{((P ⊙ R^{-2}) V^T) / (R^{-1} V^T)}`` and likewise for ``V``;
2. the demixing update of :mod:`demix.methods.auxiva` with weights ``φ_kfn = 1 / r_kfn``;
3. a rescaling of each source to unit mean power, applied to ``W`` and ``T`` together (``J`` is
   unchanged; it keeps the NMF and the demixing on one scale).

Because a basis spans all frequencies, a source's frequencies share spectral shapes, and that ties
them into one source more strongly than the common envelope of AuxIVA; the price is more work per
iteration and a random initialisation of ``T`` and ``V`` (seeded).

References
----------
.. [1] D. Kitamura, N. Ono, H. Sawada, H. Kameoka, H. Saruwatari, "Determined blind source
   separation unifying independent vector analysis and nonnegative matrix factorization",
   IEEE/ACM Trans. ASLP 24(9), 1626-1641, 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from demix.methods.auxiva import Fit, Products, ip2_update, ip_update, log_abs_det, pairs

__all__ = ["fit_ilrma"]

_EPS = 1e-12


def fit_ilrma(
    Z: np.ndarray,
    W: np.ndarray,
    *,
    n_basis: int,
    update: str,
    max_iter: int,
    tol: float,
    rng: np.random.Generator,
    report: Callable[[int, float], None],
) -> Fit:
    """ILRMA on whitened data ``Z`` ``(F, K, N)`` from ``W`` ``(F, K, K)``; see the module docstring.

    ``update`` is "ip" or "ip2"; ``report(iteration, change)`` is called after every iteration;
    stops when ``J`` changes by less than ``tol`` per frequency and source.

    The spectrogram-sized arrays (``|Y|²``, the model, the weights) are float32: they are
    non-negative, every update is a ratio of sums of them, and the data are whitened per
    frequency, so their relative round-off (1e-7) is far below what changes a separation; it
    halves the memory traffic that dominates an iteration. ``W``, the covariances and every
    matrix update stay float64.
    """
    n_freq, K, N = Z.shape
    prod = Products(Z, dtype=np.float32)
    P = prod.power(W)  # (K, F, N)
    T = rng.uniform(0.1, 1.0, (K, n_freq, n_basis)).astype(np.float32)
    V = rng.uniform(0.1, 1.0, (K, n_basis, N)).astype(np.float32)
    # Start the model on the scale of the data.
    T *= (P.mean(axis=(1, 2), dtype=np.float64) / (T @ V).mean(axis=(1, 2), dtype=np.float64))[:, None, None]
    floor = np.float32(_EPS * max(float(P.mean(dtype=np.float64)), np.finfo(np.float32).tiny))
    previous = _objective(P, np.maximum(T @ V, floor), W)
    objective: list[float] = []
    change = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        T, V, R = _nmf_step(P, T, V, floor)
        inv = np.reciprocal(R, out=R)  # the weights 1 / r_kfn
        cov = prod.weighted_by_freq(inv)
        if update == "ip" or K == 1:
            for k in range(K):
                ip_update(W, cov[k], k)
        else:
            for i, j in pairs(K):
                ip2_update(W, cov[i], cov[j], i, j)
        P = prod.power(W)
        # The objective before rescaling (J is invariant to it), from the weights already at hand.
        fit = np.einsum("kfn,kfn->", P, inv, dtype=np.float64) - np.log(inv).sum(dtype=np.float64)
        value = float(fit / N - log_abs_det(W))
        # Unit mean power per source, applied to W, |Y|² and T together.
        scale = np.maximum(P.mean(axis=(1, 2), dtype=np.float64), float(floor))
        W /= np.sqrt(scale)[None, :, None]
        P /= scale.astype(np.float32)[:, None, None]
        T /= scale.astype(np.float32)[:, None, None]
        objective.append(value)
        change = abs(previous - value) / (n_freq * K)
        previous = value
        report(it, change)
        if change < tol:
            break
    return Fit(W, it, bool(change < tol), float(change), objective)


def _nmf_step(
    P: np.ndarray, T: np.ndarray, V: np.ndarray, floor: np.floating
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Itakura-Saito multiplicative update of ``T`` then ``V`` for every source at once.

    Returns the new ``T``, ``V`` and the model ``R = T V`` (floored).
    """
    T, V = T.copy(), V.copy()
    for side in ("T", "V"):
        R = np.maximum(T @ V, floor)
        inv = np.reciprocal(R, out=R)
        ratio = P * inv
        ratio *= inv  # P / R²
        if side == "T":
            Vt = V.transpose(0, 2, 1)
            T *= np.sqrt((ratio @ Vt) / np.maximum(inv @ Vt, _EPS))
        else:
            Tt = T.transpose(0, 2, 1)
            V *= np.sqrt((Tt @ ratio) / np.maximum(Tt @ inv, _EPS))
    return T, V, np.maximum(T @ V, floor)


def _objective(P: np.ndarray, R: np.ndarray, W: np.ndarray) -> float:
    N = P.shape[-1]
    fit = np.divide(P, R).sum(dtype=np.float64) + np.log(R).sum(dtype=np.float64)
    return float(fit / N - log_abs_det(W))
