r"""Non-negative matrix factorisation with the β-divergence, by multiplicative updates.

``V ≈ W H`` with ``V`` ``(n_features, n_frames)`` (a magnitude or power spectrogram), ``W``
``(n_features, k)`` the spectral bases and ``H`` ``(k, n_frames)`` their activations.
The objective is

.. math::

    C(W, H) = D_\beta(V \mid WH) + \lambda\, \bar v^{\,\beta-1}
              \sum_k \lVert w_k \rVert_2 \lVert h_k \rVert_1,

with :math:`d_\beta(x|y) = \frac{x^\beta + (\beta-1) y^\beta - \beta x y^{\beta-1}}{\beta(\beta-1)}`
(Euclidean for β = 2, Kullback-Leibler for β = 1, Itakura-Saito for β = 0) and :math:`\bar v`
the mean of ``V``. The penalty is invariant to the scale exchange ``w_k/c, c h_k``; the free
columns of ``W`` are renormalised to unit L2 norm after every iteration, where it equals
:math:`\lambda \bar v^{\beta-1} \lVert H \rVert_1`: L1 sparsity on ``H`` with normalised bases,
which is what makes the penalty mean something (otherwise ``W`` grows and ``H`` shrinks). The
norm of the bases is L2, not L1, on purpose: with unit-L1 bases :math:`\lVert H \rVert_1 =
\sum WH`, which for KL is already part of the divergence, so the penalty would only shrink
``WH`` uniformly. The factor :math:`\bar v^{\beta-1}` makes λ independent of the loudness of
the input.

Each half-update is the majorisation-minimisation step of Févotte & Idier (2011),

.. math::

    H \leftarrow H \odot \left(\frac{W^T[(WH)^{\beta-2} \odot V]}
        {W^T (WH)^{\beta-1} + \lambda \bar v^{\beta-1}\lVert w\rVert_1}\right)^{\gamma(\beta)},
    \qquad \gamma(\beta) = \begin{cases} 1/(2-\beta) & \beta < 1\\ 1 & 1 \le \beta \le 2\\
    1/(\beta-1) & \beta > 2\end{cases}

(the penalty is linear in ``H``; the ``W`` step majorises the convex norm too, see
``_penalised_w_step``), which never increases :math:`C`. Entries are floored at a small
positive value after each update (the projection of the MM step onto ``[eps, ∞)``, still
monotone), so no entry locks at zero and no division produces NaN or inf.

References
----------
.. [1] D. D. Lee and H. S. Seung, "Algorithms for non-negative matrix factorization", NIPS 13,
   2001.
.. [2] C. Févotte and J. Idier, "Algorithms for nonnegative matrix factorization with the
   β-divergence", Neural Computation 23(9), 2011.
.. [3] C. Févotte, N. Bertin and J.-L. Durrieu, "Nonnegative matrix factorization with the
   Itakura-Saito divergence: with application to music analysis", Neural Computation 21(3), 2009.
.. [4] C. Boutsidis and E. Gallopoulos, "SVD based initialization: a head start for
   nonnegative matrix factorization", Pattern Recognition 41(4), 2008.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from demix.errors import ConvergenceWarning, ParameterError
from demix.types import Callback, IterInfo

__all__ = ["NMFResult", "beta_divergence", "beta_nmf", "nmf_init"]

_INITS = ("random", "nndsvd")
# Floors, relative to the mean of V (the data are rescaled to unit mean inside).
_EPS_FACTORS = 1e-10
_EPS_DATA = 1e-9


@dataclass(frozen=True)
class NMFResult:
    """The factorisation and its convergence record.

    Attributes
    ----------
    W : ndarray, (n_features, k)
        Bases; free columns have unit L2 norm, fixed columns are returned as given.
    H : ndarray, (k, n_frames)
        Activations, in the units of ``V``.
    n_iter : int
        Iterations done (one iteration updates ``H`` then ``W``).
    converged : bool
        Whether the relative objective change fell below ``tol`` before ``max_iter``.
    divergences : list of float
        :math:`D_\\beta(V|WH)` at the initial point and after every iteration (``n_iter + 1``).
    final_change : float
        Relative change of the objective over the last iteration.
    objectives : list of float
        The penalised objective at the same points (equal to ``divergences`` without sparsity).
    """

    W: np.ndarray
    H: np.ndarray
    n_iter: int
    converged: bool
    divergences: list[float]
    final_change: float
    objectives: list[float] = field(default_factory=list)


def _gamma(beta: float) -> float:
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def beta_divergence(V: np.ndarray, Y: np.ndarray, beta: float) -> float:
    """Sum of the elementwise β-divergence :math:`d_\\beta(V|Y)` (float64 reference formula).

    Entries with ``V == 0`` contribute their limit (``Y`` for KL, ``+inf`` for β <= 0).
    """
    V = np.asarray(V, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if beta == 2:
        return float(0.5 * np.sum((V - Y) ** 2))
    if beta == 1:
        pos = V > 0
        return float(np.sum(V[pos] * np.log(V[pos] / Y[pos])) - V.sum() + Y.sum())
    if beta == 0:
        R = V / Y
        return float(np.sum(R - np.log(R)) - V.size)
    num = V**beta + (beta - 1) * Y**beta - beta * V * Y ** (beta - 1)
    return float(np.sum(num) / (beta * (beta - 1)))


# --------------------------------------------------------------------------- validation
def _check_matrix(name: str, A: object) -> np.ndarray:
    arr = np.asarray(A)
    if arr.ndim != 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        raise ParameterError(f"{name} must be a non-empty 2-D numeric array, got shape {arr.shape}")
    if np.iscomplexobj(arr) or not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be real and finite (no NaN or inf)")
    if np.min(arr) < 0:
        raise ParameterError(f"{name} must be non-negative, got a minimum of {np.min(arr):.3g}")
    return arr


def _check_params(k: int, beta: float, max_iter: int, tol: float, init: str, sparsity: float) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ParameterError(f"k (number of components) must be an integer >= 1, got {k!r}")
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not math.isfinite(beta):
        raise ParameterError(f"beta must be a finite real number, got {beta!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ParameterError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not isinstance(tol, int | float) or not tol >= 0:
        raise ParameterError(f"tol must be a number >= 0, got {tol!r}")
    if init not in _INITS:
        raise ParameterError(f"init must be one of {_INITS}, got {init!r}")
    if not isinstance(sparsity, int | float) or not (math.isfinite(sparsity) and sparsity >= 0):
        raise ParameterError(f"sparsity must be a finite number >= 0, got {sparsity!r}")


# --------------------------------------------------------------------------- initialisation
def _random_init(
    F: int, N: int, k: int, rng: np.random.Generator, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform factors (scaled later so that ``WH`` has the mean of the data)."""
    W = rng.uniform(0.5, 1.5, size=(F, k))
    H = rng.uniform(0.5, 1.5, size=(k, N))
    return W.astype(dtype), H.astype(dtype)


def _nndsvd(V: np.ndarray, k: int, rng: np.random.Generator, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD [4] on a randomised truncated SVD, zeros filled with the mean (NNDSVDa)."""
    V = V.astype(np.float64)
    q = min(k + 10, *V.shape)
    Q, _ = np.linalg.qr(V @ rng.standard_normal((V.shape[1], q)))
    for _ in range(2):  # power iterations sharpen the spectrum's head
        Q, _ = np.linalg.qr(V @ (V.T @ Q))
    Ub, S, Vt = np.linalg.svd(Q.T @ V, full_matrices=False)
    U = Q @ Ub
    W = np.zeros((V.shape[0], k))
    H = np.zeros((k, V.shape[1]))
    for j in range(min(k, S.size)):
        x, y = U[:, j], Vt[j]
        xp, xn, yp, yn = np.maximum(x, 0), np.maximum(-x, 0), np.maximum(y, 0), np.maximum(-y, 0)
        mp = np.linalg.norm(xp) * np.linalg.norm(yp)
        mn = np.linalg.norm(xn) * np.linalg.norm(yn)
        u, v, m = (xp, yp, mp) if mp >= mn else (xn, yn, mn)
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        if nu > 0 and nv > 0:
            W[:, j] = np.sqrt(S[j] * m) * u / nu
            H[j] = np.sqrt(S[j] * m) * v / nv
    avg = V.mean()
    W[W == 0] = avg / 100
    H[H == 0] = avg / 100
    return W.astype(dtype), H.astype(dtype)


# --------------------------------------------------------------------------- updates
@dataclass
class _State:
    """Data, factors and work buffers of one run (all in the working dtype, V of unit mean)."""

    V: np.ndarray
    W: np.ndarray
    H: np.ndarray
    free: slice
    beta: float
    gamma: float
    lam: float
    eps: float
    sum_v: float
    const: float  # sum of the V-only terms of the divergence
    Y: np.ndarray  # (F, N) buffer
    Z: np.ndarray | None  # second (F, N) buffer, for β != 1, 2


def _l2(W: np.ndarray) -> np.ndarray:
    """Euclidean norm of every column."""
    return np.sqrt(np.einsum("fk,fk->k", W, W))


def _penalty(s: _State) -> float:
    """``lam * sum_k ||w_k||_2 ||h_k||_1``."""
    if s.lam == 0:
        return 0.0
    return s.lam * float(_l2(s.W).astype(np.float64) @ s.H.sum(axis=1, dtype=np.float64))


def _sum_wh(s: _State) -> float:
    return float(s.W.sum(axis=0, dtype=np.float64) @ s.H.sum(axis=1, dtype=np.float64))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` of two C-ordered arrays: BLAS dots on 64k-element chunks, summed exactly.

    A float32 BLAS dot of millions of terms drifts (~1e-5 relative); on chunks it stays near
    float32 resolution, at a tenth of the cost of an einsum.
    """
    a1, b1 = a.reshape(-1), b.reshape(-1)
    step = 1 << 16
    return math.fsum(float(np.dot(a1[i : i + step], b1[i : i + step])) for i in range(0, a1.size, step))


def _apply(factor: np.ndarray, num: np.ndarray, den: np.ndarray, s: _State) -> None:
    """``factor *= (num / den) ** gamma`` in place, then the floor at eps."""
    np.divide(num, den, out=num)
    if s.gamma != 1.0:
        np.power(num, s.gamma, out=num)
    factor *= num
    np.maximum(factor, s.eps, out=factor)


_Terms = tuple[np.ndarray, np.ndarray, float]


def _h_euclid(s: _State, want: bool) -> _Terms:
    """β = 2: only (k, N) and (k, k) products, no (F, N) temporaries."""
    W, H = s.W, s.H
    WtV, WtW = W.T @ s.V, W.T @ W
    div = 0.5 * (s.const - 2 * float(np.vdot(WtV, H)) + float(np.vdot(WtW, H @ H.T))) if want else math.nan
    return WtV, WtW @ H, div


def _h_kl(s: _State, want: bool) -> _Terms:
    """β = 1: ``W^T (V / WH)`` over the column sums of W; the divergence reuses the ratio."""
    W, H, Y = s.W, s.H, s.Y
    sum_wh = _sum_wh(s) if want else 0.0
    np.matmul(W, H, out=Y)
    np.divide(s.V, Y, out=Y)
    num = W.T @ Y
    div = math.nan
    if want:  # sum V log(V/WH) - sum V + sum WH
        np.log2(Y, out=Y)  # float32 log2 is ~40 % faster than log in numpy
        div = math.log(2.0) * _dot(s.V, Y) - s.sum_v + sum_wh
    return num, np.broadcast_to(W.sum(axis=0)[:, None], H.shape).copy(), div


def _h_is(s: _State, want: bool) -> _Terms:
    """β = 0: ``W^T (V / WH^2)`` over ``W^T (1 / WH)``."""
    W, Y, Z = s.W, s.Y, s.Z
    assert Z is not None
    np.matmul(W, s.H, out=Y)
    np.divide(s.V, Y, out=Z)  # V / WH
    np.reciprocal(Y, out=Y)  # 1 / WH
    den = W.T @ Y
    div = float(Z.sum(dtype=np.float64)) - s.V.size if want else math.nan
    Y *= Z
    num = W.T @ Y
    if want:
        np.log(Z, out=Z)
        div -= float(Z.sum(dtype=np.float64))
    return num, den, div


def _h_general(s: _State, want: bool) -> _Terms:
    """Any other β: ``W^T (V WH^(β-2))`` over ``W^T WH^(β-1)``."""
    W, Y, Z, beta = s.W, s.Y, s.Z, s.beta
    assert Z is not None
    np.matmul(W, s.H, out=Y)
    np.power(Y, beta - 1, out=Z)  # WH^(β-1)
    den = W.T @ Z
    div = math.nan
    if want:
        y_b, vy = float(np.vdot(Z, Y)), float(np.vdot(s.V, Z))
        div = (s.const + (beta - 1) * y_b - beta * vy) / (beta * (beta - 1))
    Z *= s.V
    Z /= Y
    return W.T @ Z, den, div


def _update_h(s: _State, want: bool) -> tuple[float, float]:
    """One MU step on H; returns (divergence, objective) at entry (NaN unless ``want``)."""
    pen = _penalty(s) if want else math.nan
    terms = {2.0: _h_euclid, 1.0: _h_kl, 0.0: _h_is}.get(s.beta, _h_general)
    num, den, div = terms(s, want)
    if s.lam:  # the penalty is linear in H: the MM step only gains a constant denominator
        den += s.lam * _l2(s.W)[:, None]
    _apply(s.H, num, den, s)
    return div, div + pen


def _update_w(s: _State) -> None:
    """One MU step on the free columns of W."""
    V, W, H, Y, beta, free = s.V, s.W, s.H, s.Y, s.beta, s.free
    Hf = H[free]
    if beta == 2:
        num = V @ Hf.T
        den = W @ (H @ Hf.T)
    else:
        np.matmul(W, H, out=Y)
        if beta == 1:
            np.divide(V, Y, out=Y)
            num = Y @ np.ascontiguousarray(Hf.T)  # a C-ordered right operand is faster
            den = np.broadcast_to(Hf.sum(axis=1), num.shape).copy()
        else:
            Z = s.Z
            assert Z is not None
            np.power(Y, beta - 1, out=Z)
            den = Z @ Hf.T
            Z *= V
            Z /= Y
            num = Z @ Hf.T
    Wf = W[:, free]  # a view: updated in place
    if s.lam:
        _penalised_w_step(Wf, num, den, s.lam * Hf.sum(axis=1), s)
    else:
        _apply(Wf, num, den, s)
    norms = _l2(Wf)  # unit L2 bases; the objective is invariant to this exchange
    Wf /= norms
    H[free] *= norms[:, None]


def _penalised_w_step(
    Wf: np.ndarray, num: np.ndarray, den: np.ndarray, weight: np.ndarray, s: _State
) -> None:
    r"""MM step on ``Wf`` for :math:`D + \sum_k m_k \lVert w_k \rVert_2` (``weight`` = m).

    The convex norm is majorised at the current :math:`\tilde w` (norm ``a``) by
    :math:`(\lVert w\rVert^2/a + a)/2`, or for β > 2 by the power-mean bound
    :math:`a\,(1 + (\sum_f \pi_f u_f^\beta - 1)/\beta)` with :math:`\pi_f = \tilde w_f^2/a^2`,
    :math:`u = w/\tilde w`. With ``A = num``, ``B = den`` and :math:`c = m \tilde w / a`, the
    auxiliary function's minimiser solves

    * β > 2: :math:`(B + c) u^{\beta-1} = A` (closed form, exponent γ);
    * β = 1: :math:`c u^2 + B u - A = 0` (closed form);
    * otherwise: :math:`B u^{\max(1, 2-\beta)} + c u^{3-\beta} - A = 0`, increasing and
      convex in u, solved by Newton from the unpenalised root (which lies above it).
    """
    c = Wf * (weight / _l2(Wf))  # (F, n_free)
    beta = s.beta
    if beta >= 2:
        _apply(Wf, num, den + c, s)
        return
    if beta == 1:
        u = 2 * num / (den + np.sqrt(den * den + 4 * c * num))
    else:
        p = 1.0 if beta > 1 else 2.0 - beta
        q = 3.0 - beta
        u = (num / den) ** (1.0 / p)
        for _ in range(50):
            f = den * u**p + c * u**q - num
            step = f / (p * den * u ** (p - 1) + q * c * u ** (q - 1))
            u = np.maximum(u - step, 0.5 * u)  # never jump below the root (convexity)
            if np.max(np.abs(step) / u) < 1e-9:
                break
    Wf *= u
    np.maximum(Wf, s.eps, out=Wf)


def _objective(s: _State) -> tuple[float, float]:
    """(divergence, penalised objective) at the current point, without changing it."""
    H0 = s.H.copy()
    out = _update_h(s, want=True)
    s.H[...] = H0
    return out


def _rel_change(before: float, after: float) -> float:
    return (before - after) / abs(before) if before != 0 else 0.0


def _data_constant(V: np.ndarray, beta: float) -> float:
    """The V-only term of the divergence sum (for β = 2 and the general formula)."""
    if beta == 2:
        return float(np.vdot(V, V))
    if beta in (0.0, 1.0):
        return 0.0
    return float(np.sum(V.astype(np.float64) ** beta))


def _initial_factors(
    V: np.ndarray,
    k: int,
    init: str,
    rng: np.random.Generator,
    dtype: type,
    W_fixed: np.ndarray | None,
    n_free: int,
) -> tuple[np.ndarray, np.ndarray, slice]:
    """Initial ``W`` (free columns of unit L2 norm), ``H`` and the slice of the free columns."""
    F, N = V.shape
    if W_fixed is None:
        if n_free != 0:
            raise ParameterError(f"n_free is only used with W_fixed, got n_free={n_free!r}")
        if init == "nndsvd":
            W, H = _nndsvd(V, k, rng, dtype)
        else:
            W, H = _random_init(F, N, k, rng, dtype)
        free = slice(0, k)
    else:
        Wf = _check_matrix("W_fixed", W_fixed)
        n_fixed = Wf.shape[1]
        if isinstance(n_free, bool) or not isinstance(n_free, int | np.integer) or n_free < 0:
            raise ParameterError(f"n_free must be an integer >= 0, got {n_free!r}")
        if Wf.shape[0] != F:
            raise ParameterError(
                f"W_fixed has {Wf.shape[0]} rows but V has {F} features (rows); they must match"
            )
        if k != n_fixed + n_free:
            raise ParameterError(f"k={k} must equal W_fixed.shape[1] + n_free = {n_fixed} + {n_free}")
        if init != "random":
            raise ParameterError(f"init={init!r} is not supported with W_fixed; use 'random'")
        if np.any(Wf.sum(axis=0) == 0):
            raise ParameterError("W_fixed has an all-zero column; every basis needs energy")
        W, H = _random_init(F, N, k, rng, dtype)
        W[:, :n_fixed] = Wf
        H[:n_fixed] /= _l2(Wf)[:, None]
        free = slice(n_fixed, k)
    norms = _l2(W[:, free])
    W[:, free] /= norms
    H[free] *= norms[:, None]
    if init == "random":  # start at the level of the data
        H *= V.mean(dtype=np.float64) / float(W.sum(axis=0) @ H.sum(axis=1) / (F * N))
    return np.ascontiguousarray(W, dtype=dtype), np.ascontiguousarray(H, dtype=dtype), free


# --------------------------------------------------------------------------- driver
def _normalised(V: object, beta: float) -> tuple[np.ndarray, float]:
    """Validated ``V`` divided by its mean and floored, C-ordered in the working dtype."""
    V = _check_matrix("V", V)
    scale = float(np.mean(V, dtype=np.float64))
    if scale == 0:
        raise ParameterError("V is all zero: there is nothing to factorise (silent input?)")
    Vn = np.array(V, dtype=np.float32 if beta == 1 else np.float64, order="C", copy=True)
    Vn *= 1.0 / scale
    np.maximum(Vn, _EPS_DATA, out=Vn)
    return Vn, scale


def nmf_init(
    V: np.ndarray, k: int, *, beta: float = 1.0, init: str = "random", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The initial ``(W, H)`` that :func:`beta_nmf` starts from with the same arguments.

    Useful to start another implementation from the same point. ``W`` (unit-L2 columns) and
    ``H`` are float64, in the units of ``V``.
    """
    _check_params(k, beta, 1, 0.0, init, 0.0)
    Vn, scale = _normalised(V, float(beta))
    rng = np.random.default_rng(seed)
    W, H, _ = _initial_factors(Vn, k, init, rng, Vn.dtype.type, None, 0)
    return W.astype(np.float64), H.astype(np.float64) * scale


def beta_nmf(
    V: np.ndarray,
    k: int,
    *,
    beta: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
    init: str = "random",
    seed: int = 0,
    sparsity: float = 0.0,
    W_fixed: np.ndarray | None = None,
    n_free: int = 0,
    callback: Callback | None = None,
) -> NMFResult:
    r"""Factorise ``V ≈ W H`` by β-divergence multiplicative updates.

    Parameters
    ----------
    V : ndarray, (n_features, n_frames)
        Non-negative data, not all zero (e.g. a magnitude spectrogram).
    k : int
        Total rank. With ``W_fixed`` it must equal ``W_fixed.shape[1] + n_free``.
    beta : float
        β of the divergence: 2 Euclidean, 1 Kullback-Leibler, 0 Itakura-Saito, or any real.
    max_iter : int
        Maximum number of iterations (each updates ``H`` then ``W``).
    tol : float
        Stop when the relative decrease of the objective over one iteration is below ``tol``
        (0 runs exactly ``max_iter`` iterations).
    init : {"random", "nndsvd"}
        Seeded uniform factors, or NNDSVD with zeros filled (not with ``W_fixed``).
    seed : int
        Seed of the ``numpy.random.Generator`` used for initialisation.
    sparsity : float
        λ >= 0, weight of the L1 penalty on ``H`` (module docstring: relative to the data level).
    W_fixed : ndarray, (n_features, n_fixed), optional
        Supervised mode: bases kept fixed; only ``H`` and ``n_free`` extra bases are learnt.
    n_free : int
        Number of free bases next to ``W_fixed`` (they come last in ``W``).
    callback : callable, optional
        Called with :class:`~demix.types.IterInfo` after every iteration.

    Returns
    -------
    NMFResult
        ``W``, ``H`` (float64), the iteration count, convergence flag and the divergence record.

    Notes
    -----
    Internally ``V`` is divided by its mean and floored at 1e-9 (so that the Itakura-Saito
    divergence stays finite where ``V`` is zero); divergences are reported in the units of
    ``V``. KL runs in float32 (its update only involves ratios close to one and products of
    non-negative numbers; sums are accumulated in float64); the other β run in float64.
    Raises :class:`~demix.errors.ConvergenceWarning` if ``tol > 0`` is not reached.
    """
    _check_params(k, beta, max_iter, tol, init, sparsity)
    beta = float(beta)
    Vn, scale = _normalised(V, beta)
    F, N = Vn.shape
    dtype = Vn.dtype.type
    rng = np.random.default_rng(seed)
    W, H, free = _initial_factors(Vn, k, init, rng, dtype, W_fixed, n_free)
    s = _State(
        V=Vn,
        W=W,
        H=H,
        free=free,
        beta=beta,
        gamma=_gamma(beta),
        lam=float(sparsity),
        eps=_EPS_FACTORS,
        sum_v=float(Vn.sum(dtype=np.float64)),
        const=_data_constant(Vn, beta),
        Y=np.empty((F, N), dtype=dtype),
        Z=None if beta in (1.0, 2.0) else np.empty((F, N), dtype=dtype),
    )
    divs: list[float] = []
    objs: list[float] = []
    converged = False
    change = math.inf
    n_iter = 0
    for it in range(max_iter):
        div, obj = _update_h(s, want=True)  # at the point reached after `it` iterations
        divs.append(div)
        objs.append(obj)
        _update_w(s)
        n_iter = it + 1
        if it >= 1:
            change = _rel_change(objs[-2], objs[-1])
        if callback is not None:
            callback(IterInfo(iteration=n_iter, max_iter=max_iter, change=change, objective=obj))
        if it >= 1 and abs(change) < tol:
            converged = True
            break
    div, obj = _objective(s)
    divs.append(div)
    objs.append(obj)
    change = _rel_change(objs[-2], objs[-1])
    if not converged and tol > 0:
        warnings.warn(
            f"NMF did not converge: the relative objective change was {change:.2e} after "
            f"{max_iter} iterations, above --tol {tol:g}; raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    unit = scale**beta
    H_out = s.H.astype(np.float64) * scale
    W_out = s.W.astype(np.float64)
    if W_fixed is not None:
        W_out[:, : s.free.start] = W_fixed
    return NMFResult(
        W=W_out,
        H=H_out,
        n_iter=n_iter,
        converged=converged,
        divergences=[d * unit for d in divs],
        final_change=float(change),
        objectives=[o * unit for o in objs],
    )
