r"""The numerical core of frequency-domain IVA: weighted covariances and demixing-row updates.

Every model of :mod:`demix.methods.iva` fits, at each frequency ``f``, a demixing matrix ``W_f``
``(K, K)`` acting on the whitened STFT frames ``z_fn`` (``y_fn = W_f z_fn``) by the auxiliary-
function (majorise-minimise) scheme of Ono [1]_: with per-source weights ``φ_kfn`` the model
derives from the current estimate, row ``k`` minimises ``w_k^H V_kf w_k - log |det W_f|^2`` with

.. math::

    V_{kf} = \frac{1}{N} \sum_n φ_{kfn}\, z_{fn} z_{fn}^H .

This module holds what all models share:

* :class:`Products`: the products ``z_fn z_fn^H`` of every frame, stored once as a real
  ``(F, 2, T, N)`` array (real and imaginary parts of the ``T = K (K+1) / 2`` entries on and above
  the diagonal). A weighted covariance for weights that depend on the frame only (the Laplace and
  Gauss source models) is then one real matrix product ``(2 F T, N) @ (N, K)`` for all sources and
  frequencies at once, and so is the frame energy ``r_kn^2 = \sum_f |y_kfn|^2`` of every source
  for a given ``W``. No Python loop runs over frequencies; everything is batched over ``f``.
* :func:`ip_update`: iterative projection, one row at a time [1]_,
  ``w_k ← (W_f V_kf)^{-1} e_k``, then ``w_k ← w_k / \sqrt{w_k^H V_kf w_k}``.
* :func:`ip2_update`: the pairwise update of Ono [2]_: rows ``i, j`` jointly, as the generalised
  eigenvectors of a 2 × 2 Hermitian pencil solved in closed form. With two sources it is the exact
  minimiser over the whole ``W_f`` for the given weights, and converges in far fewer iterations.

References
----------
.. [1] N. Ono, "Stable and fast update rules for independent vector analysis based on auxiliary
   function technique", IEEE WASPAA 2011, 189-192.
.. [2] N. Ono, "Fast algorithm for independent component/vector/low-rank matrix analysis with three
   or more sources", ASJ Spring Meeting 2018 (the IP2 update; also N. Ono, "Fast stereo independent
   vector analysis and its implementation on mobile phone", IWAENC 2012, for two sources).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Fit", "Products", "fit_spherical", "inverse", "ip2_update", "ip_update", "log_abs_det", "pairs"]

#: Diagonal loading of every weighted covariance, relative to its mean diagonal, by the precision
#: its sums were taken in: keeps ``W V`` invertible and ``V`` positive definite at frequencies with
#: (almost) no energy, far below any covariance that carries signal.
_LOAD = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}
_TINY = 1e-30


class Products:
    """The per-frame outer products ``z_fn z_fn^H`` of whitened data ``Z`` ``(F, K, N)``.

    Memory is ``2 F K (K+1)/2 N`` float64 values: 12 MB for 2 channels, 8 s at 16 kHz, 4096-point
    frames with hop 1024; 25 MB for 3 channels.
    """

    def __init__(self, Z: np.ndarray, dtype: type = np.float64) -> None:
        n_freq, K, N = Z.shape
        self.n_freq, self.n_src, self.n_frames = n_freq, K, N
        a, b = np.triu_indices(K)
        self.rows, self.cols = a, b
        T = a.size
        prod = Z[:, a, :] * Z[:, b, :].conj()  # (F, T, N)
        data: np.ndarray = np.empty((n_freq, 2, T, N), dtype=dtype)
        data[:, 0] = prod.real
        data[:, 1] = prod.imag
        self.data = data
        #: ``(2 F T, N)`` view for products over all frequencies at once.
        self.flat = data.reshape(n_freq * 2 * T, N)
        #: ``(F, 2 T, N)`` view for products frequency by frequency.
        self.by_freq = data.reshape(n_freq, 2 * T, N)
        # Off-diagonal entries appear twice in a quadratic form.
        self._twice = np.where(a == b, 1.0, 2.0)

    def _assemble(self, flat: np.ndarray) -> np.ndarray:
        """``(K', F, 2, T)`` real parts → ``(K', F, K, K)`` Hermitian matrices, loaded."""
        K = self.n_src
        vals = flat[:, :, 0] + 1j * flat[:, :, 1]
        V = np.empty((flat.shape[0], self.n_freq, K, K), dtype=complex)
        V[..., self.rows, self.cols] = vals
        V[..., self.cols, self.rows] = vals.conj()
        diag = np.einsum("...kk->...k", V)
        load = _LOAD[self.data.dtype] * diag.real.mean(axis=-1, keepdims=True) + _TINY
        diag += load
        return V

    def weighted(self, weights: np.ndarray) -> np.ndarray:
        """``V_kf = mean_n φ_kn z_fn z_fn^H`` for weights ``(K', N)`` → ``(K', F, K, K)``."""
        out = self.flat @ (weights.T / self.n_frames)  # (2FT, K')
        T = self.rows.size
        return self._assemble(out.T.reshape(-1, self.n_freq, 2, T))

    def weighted_by_freq(self, weights: np.ndarray) -> np.ndarray:
        """``V_kf = mean_n φ_kfn z_fn z_fn^H`` for weights ``(K', F, N)`` → ``(K', F, K, K)``."""
        out = np.matmul(self.by_freq, weights.transpose(1, 2, 0)).astype(np.float64) / self.n_frames
        T = self.rows.size
        return self._assemble(out.transpose(2, 0, 1).reshape(-1, self.n_freq, 2, T))

    def _quadratic(self, W: np.ndarray) -> np.ndarray:
        """Coefficients ``(K', F, 2, T)`` with ``|w^H z|^2 = Σ_t c_t · (Re, Im)(z z^H)_t``."""
        q = W[..., self.rows] * W[..., self.cols].conj()  # (F, K', T): W_ka conj(W_kb)
        q = q * self._twice
        coef = np.empty((W.shape[1], self.n_freq, 2, self.rows.size), dtype=self.data.dtype)
        coef[:, :, 0] = q.real.transpose(1, 0, 2)
        coef[:, :, 1] = -q.imag.transpose(1, 0, 2)
        return coef

    def energy(self, W: np.ndarray) -> np.ndarray:
        """``r_kn^2 = Σ_f |(W_f z_fn)_k|^2`` for rows ``W`` ``(F, K', K)`` → ``(K', N)``."""
        coef = self._quadratic(W).reshape(W.shape[1], -1)
        return np.maximum(coef @ self.flat, 0.0)

    def power(self, W: np.ndarray) -> np.ndarray:
        """``|y_kfn|^2`` for rows ``W`` ``(F, K', K)`` → ``(K', F, N)``."""
        coef = self._quadratic(W).transpose(1, 0, 2, 3).reshape(self.n_freq, W.shape[1], -1)
        return np.maximum(np.matmul(coef, self.by_freq), 0.0).transpose(1, 0, 2)


def log_abs_det(W: np.ndarray) -> float:
    """``Σ_f log |det W_f|^2`` over a stack ``(F, K, K)``."""
    K = W.shape[-1]
    if K <= 3:  # closed form: LAPACK's per-matrix overhead dominates small matrices
        if K == 1:
            det = np.abs(W[:, 0, 0])
        elif K == 2:
            det = np.abs(W[:, 0, 0] * W[:, 1, 1] - W[:, 0, 1] * W[:, 1, 0])
        else:
            det = np.abs(np.einsum("fc,fc->f", W[:, 0, :], np.cross(W[:, 1, :], W[:, 2, :])))
        return float(2.0 * np.log(np.maximum(det, _TINY)).sum())
    _, logdet = np.linalg.slogdet(W)
    return float(2.0 * logdet.sum())


def inverse(M: np.ndarray) -> np.ndarray:
    """Inverses of a stack ``(F, K, K)``; closed form (adjugate over determinant) for ``K ≤ 3``.

    LAPACK's per-matrix call costs more than the arithmetic of a 2 × 2 or 3 × 3 inverse, so the
    small cases are elementwise over the whole stack.
    """
    K = M.shape[-1]
    if K == 2:
        adj = np.stack([np.stack([M[:, 1, 1], -M[:, 0, 1]], -1), np.stack([-M[:, 1, 0], M[:, 0, 0]], -1)], 1)
        det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    elif K == 3:
        cof = np.empty_like(M)
        for r in range(3):
            r1, r2 = (r + 1) % 3, (r + 2) % 3
            for c in range(3):
                c1, c2 = (c + 1) % 3, (c + 2) % 3
                cof[:, r, c] = M[:, r1, c1] * M[:, r2, c2] - M[:, r1, c2] * M[:, r2, c1]
        adj = cof.transpose(0, 2, 1)
        det = np.einsum("fc,fc->f", M[:, 0, :], cof[:, 0, :])
    else:
        return np.linalg.inv(M)
    safe = np.where(np.abs(det) > _TINY, det, _TINY)
    return adj / safe[:, None, None]


def ip_update(W: np.ndarray, V: np.ndarray, k: int) -> None:
    """Iterative projection of row ``k`` of ``W`` ``(F, K, K)`` in place, with ``V`` ``(F, K, K)``."""
    w = inverse(W @ V)[:, :, k]
    scale = np.sqrt(np.maximum(np.einsum("fi,fij,fj->f", w.conj(), V, w).real, _TINY))
    W[:, k, :] = (w / scale[:, None]).conj()


def ip2_update(W: np.ndarray, Vi: np.ndarray, Vj: np.ndarray, i: int, j: int) -> None:
    """Pairwise update of rows ``i`` and ``j`` of ``W`` ``(F, K, K)`` in place.

    The two rows live in ``w_k = P_k c_k`` with ``P_k = (W V_k)^{-1} [e_i, e_j]`` (the only
    directions that keep the other rows' stationarity); ``c_i, c_j`` are the generalised
    eigenvectors of the pencil ``G_i c = μ G_j c``, ``G_k = P_k^H V_k P_k``: ``c_i`` takes the
    larger ``μ`` (the assignment that maximises ``|det W_f|``), each normalised by ``c^H G_k c``.
    """
    K = W.shape[-1]
    if K == 2:
        # Then w_i, w_j span everything: they are the eigenvectors of V_j w = μ V_i w, w_i the
        # larger μ (the smaller weighted variance under its own V_i) — no inverse needed.
        wi, wj = _pencil_2x2(Vj, Vi)
        wi /= np.sqrt(np.maximum(np.einsum("fa,fab,fb->f", wi.conj(), Vi, wi).real, _TINY))[:, None]
        wj /= np.sqrt(np.maximum(np.einsum("fa,fab,fb->f", wj.conj(), Vj, wj).real, _TINY))[:, None]
        W[:, i, :] = wi.conj()
        W[:, j, :] = wj.conj()
        return
    Pi = inverse(W @ Vi)[:, :, [i, j]]
    Pj = inverse(W @ Vj)[:, :, [i, j]]
    Gi = _hermitian(Pi.conj().transpose(0, 2, 1) @ Vi @ Pi)
    Gj = _hermitian(Pj.conj().transpose(0, 2, 1) @ Vj @ Pj)
    ci, cj = _pencil_2x2(Gi, Gj)
    ci /= np.sqrt(np.maximum(np.einsum("fa,fab,fb->f", ci.conj(), Gi, ci).real, _TINY))[:, None]
    cj /= np.sqrt(np.maximum(np.einsum("fa,fab,fb->f", cj.conj(), Gj, cj).real, _TINY))[:, None]
    W[:, i, :] = np.einsum("fka,fa->fk", Pi, ci).conj()
    W[:, j, :] = np.einsum("fka,fa->fk", Pj, cj).conj()


def _hermitian(G: np.ndarray) -> np.ndarray:
    return 0.5 * (G + G.conj().transpose(0, 2, 1))


def _pencil_2x2(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalised eigenvectors of Hermitian 2 × 2 pencils ``A u = μ B u`` (``B`` definite).

    Returns ``(u_max, u_min)``, each ``(F, 2)``: the eigenvector of the larger ``μ``, from the
    better-conditioned row of ``A - μ B``, and its ``B``-orthogonal complement (the other
    eigenvector). Closed form: ``μ`` solves ``det(B) μ² - β μ + det(A) = 0`` with
    ``β = A00 B11 + A11 B00 - 2 Re(A01 conj(B01))``.
    """
    a = (B[:, 0, 0] * B[:, 1, 1]).real - np.abs(B[:, 0, 1]) ** 2
    c = (A[:, 0, 0] * A[:, 1, 1]).real - np.abs(A[:, 0, 1]) ** 2
    beta = (A[:, 0, 0] * B[:, 1, 1] + A[:, 1, 1] * B[:, 0, 0]).real - 2.0 * (
        A[:, 0, 1] * B[:, 0, 1].conj()
    ).real
    disc = np.sqrt(np.maximum(beta**2 - 4.0 * a * c, 0.0))
    mu = (beta + disc) / (2.0 * np.maximum(a, _TINY))
    D = A - mu[:, None, None] * B
    row0 = np.stack([D[:, 0, 1], -D[:, 0, 0]], axis=-1)
    row1 = np.stack([-D[:, 1, 1], D[:, 1, 0]], axis=-1)
    n0 = np.einsum("fa,fa->f", row0.conj(), row0).real
    n1 = np.einsum("fa,fa->f", row1.conj(), row1).real
    u = np.where((n0 >= n1)[:, None], row0, row1)
    # A ∝ B: every vector is an eigenvector; keep the axes.
    flat = np.maximum(n0, n1) <= 1e-24 * np.maximum(np.abs(A).sum(axis=(1, 2)) ** 2, _TINY)
    u[flat] = np.array([1.0, 0.0])
    v = np.einsum("fab,fb->fa", B, u)
    u_other = np.stack([-v[:, 1].conj(), v[:, 0].conj()], axis=-1)
    return u, u_other


# --- the spherical (frame-weighted) source models: Laplace and time-varying Gauss ------------


@dataclass(frozen=True)
class Fit:
    """What a model's iteration returns: the demixing of the whitened data and its record."""

    W: np.ndarray
    n_iter: int
    converged: bool
    change: float
    objective: list[float]


def spherical_objective(energy: np.ndarray, W: np.ndarray, model: str) -> float:
    """Negative log-likelihood per frame (up to a constant) that the updates decrease monotonically.

    Laplace: ``Σ_k mean_n 2 r_kn - Σ_f log|det W_f|²``; Gauss: ``Σ_k mean_n F log(r_kn² + c)
    - Σ_f log|det W_f|²`` with the floor ``c = GAUSS_FLOOR · F``.
    """
    n_freq = W.shape[0]
    r2 = np.maximum(energy, 0.0)
    if model == "laplace":
        contrast = 2.0 * np.sqrt(r2).mean(axis=1).sum()
    else:
        contrast = n_freq * np.log(r2 + GAUSS_FLOOR * n_freq).mean(axis=1).sum()
    return float(contrast - log_abs_det(W))


#: The Gauss model's frame energy ``r²`` is floored by ``GAUSS_FLOOR · F`` (the whitened data have
#: unit power per frequency, so this is about 1 % of a source's mean frame energy): without it, a
#: row that nearly cancels a source in its quiet frames earns ever larger weights there, and the
#: iteration runs away from the separating solution.
GAUSS_FLOOR = 1e-2


def spherical_weights(energy: np.ndarray, model: str, n_freq: int) -> np.ndarray:
    """The majorisers' weights ``φ_kn``: ``1/r`` (Laplace) or ``F/(r² + c)`` (Gauss).

    With exactly these weights the normalisation ``w^H V w = 1`` of :func:`ip_update` is the
    minimiser of the majoriser, so :func:`spherical_objective` never increases.
    """
    if model == "gauss":
        return n_freq / (energy + GAUSS_FLOOR * n_freq)
    r2 = np.maximum(energy, 1e-12 * energy.mean(axis=1, keepdims=True) + _TINY)
    return 1.0 / np.sqrt(r2)


def pairs(n_src: int) -> list[tuple[int, int]]:
    """The IP2 schedule of one sweep: ``(0, 1)`` for two sources, else every cyclic neighbour pair."""
    if n_src == 2:
        return [(0, 1)]
    return [(k, (k + 1) % n_src) for k in range(n_src)]


def fit_spherical(
    prod: Products,
    W: np.ndarray,
    *,
    model: str,
    update: str,
    max_iter: int,
    tol: float,
    report: Callable[[int, float], None],
) -> Fit:
    """AuxIVA with a spherical source prior (``model`` "laplace" or "gauss"), from ``W`` ``(F, K, K)``.

    ``update`` is "ip" or "ip2"; ``report(iteration, change)`` is called after every sweep. Stops
    when the objective per frequency and source changes by less than ``tol``.
    """
    n_freq, K, _ = W.shape
    energy = prod.energy(W)
    previous = spherical_objective(energy, W, model)
    objective: list[float] = []
    change = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        if update == "ip" or K == 1:
            V = prod.weighted(spherical_weights(energy, model, n_freq))
            for k in range(K):
                ip_update(W, V[k], k)
        else:
            for n, (i, j) in enumerate(pairs(K)):
                rows = [i, j]
                e = energy[rows] if n == 0 else prod.energy(W[:, rows])
                V = prod.weighted(spherical_weights(e, model, n_freq))
                ip2_update(W, V[0], V[1], i, j)
        energy = prod.energy(W)
        value = spherical_objective(energy, W, model)
        objective.append(value)
        change = abs(previous - value) / (n_freq * K)
        previous = value
        report(it, change)
        if change < tol:
            break
    return Fit(W, it, bool(change < tol), float(change), objective)
