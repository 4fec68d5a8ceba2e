r"""Picard: maximum-likelihood ICA by preconditioned L-BFGS, orthogonal (Picard-O) or not.

The model is ``x = A s`` with independent sources of density ``p_i``. After centring and whitening
(``z = K (x - μ)``, shared with every linear method, see :mod:`demix.methods.whitening`), Picard
looks for the unmixing ``W`` (acting on ``z``) that minimises the negative log-likelihood

.. math::

    L(W) = -\log|\det W| + \sum_i \hat E\{f_i(y_i)\}, \qquad y = W z, \quad f_i = -\log p_i,

by relative moves ``W \leftarrow (I + E) W`` [1]_. Its relative gradient is
``G = \hat E\{\psi(y) y^T\} - I`` with the score ``ψ_i = f_i'``, and near a separating point the
Hessian is block-diagonal in the pairs ``(E_{ij}, E_{ji})``:
``[[h_{ij}, 1], [1, h_{ji}]]`` with ``h_{ij} ≈ \hat E\{ψ_i'(y_i)\} \hat E\{y_j^2\}`` (the
approximation :math:`\tilde H^2` of [1]_; the diagonal ``h_{ii} = \hat E\{ψ_i'(y_i) y_i^2\}`` is taken
exactly). That block Hessian, its eigenvalues floored at ``lambda_min``, preconditions an L-BFGS
iteration whose steps are checked by a backtracking line search. Every step is the
exact gradient of the likelihood, so the solution need *not* have exactly uncorrelated outputs:
on a few seconds of speech the sources themselves are not, and forcing it (orthogonal ICA, FastICA)
costs 2-4 dB of SIR.

With ``ortho=True`` (Picard-O [2]_) ``W`` stays orthogonal, ``W \leftarrow e^{E} W`` with ``E``
skew-symmetric; the gradient is the skew part ``(M - M^T)/2`` of ``M = \hat E\{ψ(y) y^T\}`` and the
pair curvature ``(\hat E\{ψ_i'\} + \hat E\{ψ_j'\} - M_{ii} - M_{jj})/2``. Its fixed points are
those of FastICA with the same non-linearity, reached by a quasi-Newton method that does not
stall on mixtures of sub- and super-Gaussian sources.

Densities: ``f(y) = \log\cosh y`` (score ``\tanh y``) for super-Gaussian sources, and with
``extended=True`` ``f(y) = y^2/2 - \log\cosh y`` (score ``y - \tanh y``, a mixture of two Gaussians)
for the sources whose stability margin ``κ_i = \hat E\{\tanh'(y_i)\}\hat E\{y_i^2\} -
\hat E\{y_i \tanh y_i\}`` is negative, i.e. sub-Gaussian ones (tones, uniform noise) [3]_. The
choice is re-made at every iteration; when it changes, the L-BFGS memory is emptied.

How it is fast (a float64 L-BFGS around float32 point-wise work):

* one fused pass over the whitened data per likelihood evaluation, in cache-sized blocks: ``y =
  W z`` in float64, rounded to float32 sample by sample, then in float32 ``t = \tanh y`` and
  ``\log\cosh y = |y| - \log(1 + |t|) + \log 2`` (one logarithm besides the tanh), then
  ``\hat E\{t z^T\}`` by a float64 product. Every sum over samples is accumulated in float64;
  float32 point-wise functions are 5-7x faster than float64 ones here;
* a trial point of the line search that is accepted already carries the statistics of the next
  gradient, so an iteration is usually one pass;
* float32 rounding makes likelihood values noisy at the ``1e-7/\sqrt T`` level, more than the
  decrease of a step near convergence; a step whose loss change is within that noise is judged by
  the trapezoidal estimate ``α(φ'(0) + φ'(α))/2`` of the change along the line, from exact-enough
  gradients;
* on long signals the iteration first runs on FastICA's stratified subsample of 65 536 samples
  (:func:`demix.methods.fastica.warm_indices`) and then continues on the full data, keeping its
  L-BFGS memory; only an iteration on the full data can satisfy the stopping rule, so the result is
  a stationary point of the full-data likelihood to ``tol``. The full data may be an array or
  blocks read from disk pass by pass (:func:`fit`, :mod:`demix.streaming`);
* the orthogonal mode starts with :data:`FASTICA_STEPS` symmetric FastICA steps, which reach the
  basin of a solution in fewer passes than L-BFGS from a random rotation.

References
----------
.. [1] P. Ablin, J.-F. Cardoso and A. Gramfort, "Faster independent component analysis by
   preconditioning with Hessian approximations", IEEE Trans. Signal Processing 66(15), 2018.
.. [2] P. Ablin, J.-F. Cardoso and A. Gramfort, "Faster ICA under orthogonal constraint", ICASSP 2018.
.. [3] T.-W. Lee, M. Girolami and T. J. Sejnowski, "Independent component analysis using an
   extended infomax algorithm for mixed sub-Gaussian and super-Gaussian sources", Neural
   Computation 11(2), 1999.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import numpy as np
from scipy import linalg

from demix import checks
from demix.errors import ConvergenceWarning, ParameterError
from demix.methods.fastica import Whitened, blocks_of, warm_indices
from demix.methods.whitening import Whitening, column_signs
from demix.types import Callback, Instantaneous, IterInfo, Separation

__all__ = [
    "AUTO_ORTHO_SECONDS",
    "ICAResult",
    "PicardParams",
    "choose_ortho",
    "finish",
    "fit",
    "picard",
    "separate",
    "to_separation",
]

#: float64 values of whitened data per block of a pass (256 KiB).
_BLOCK_VALUES = 1 << 15
#: The subsample phase stops at this gradient norm: its own optimum is ~4e-3 from the full-data one.
#: (The subsample is FastICA's, :func:`demix.methods.fastica.warm_indices`: 65 536 samples, used
#: when the signal is at least 8 times longer; the full data then only polish, measured 2-5 full
#: passes instead of 20-40.)
_WARM_TOL = 1e-4
_LOG2 = math.log(2.0)
_EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class ICAResult:
    """What demix's ICA methods (picard, jade) return, before the pipeline wraps it.

    Attributes
    ----------
    unmixing : ndarray, (n_sources, n_channels)
        ``U`` acting on the centred mixture: ``sources = U @ (X - mean)``.
    mixing : ndarray, (n_channels, n_sources)
        ``A`` with ``U @ A = I``; ``A @ sources`` is the centred mixture projected on the kept
        principal subspace (the mixture itself when no dimension was dropped).
    sources : ndarray, (n_sources, n_samples)
        Unit-variance sources; each mixing column's largest entry is positive.
    n_iter, converged, final_change
        Iterations (Picard) or Jacobi sweeps (JADE), whether ``tol`` was reached, and the last
        gradient norm (Picard) or rotation angle (JADE).
    objective : tuple of float
        The objective after every iteration (Picard: negative log-likelihood per sample; JADE:
        off-diagonal energy of the cumulant matrices before and after).
    facts : tuple of dict
        One JSON-serialisable dict per source, in the order of ``sources`` (Picard: ``density``,
        ``"super"`` or ``"sub"``; JADE: none). The pipeline adds each source's kurtosis itself.
    diagnostics : dict
        Run-level JSON-serialisable facts (``rank``, warm start, line-search failures …).
    """

    unmixing: np.ndarray
    mixing: np.ndarray
    sources: np.ndarray
    n_iter: int
    converged: bool
    final_change: float
    objective: tuple[float, ...]
    facts: tuple[dict[str, Any], ...] = ()
    diagnostics: dict[str, Any] = field(default_factory=dict)


def to_separation(result: ICAResult, diagnostics: dict[str, Any] | None = None) -> Separation:
    """The pipeline's :class:`~demix.types.Separation` of an :class:`ICAResult`."""
    return Separation(
        sources=result.sources,
        layout="mono",
        model=Instantaneous(mixing=result.mixing, unmixing=result.unmixing),
        n_iter=result.n_iter,
        converged=result.converged,
        final_change=result.final_change,
        facts=result.facts,
        diagnostics={**result.diagnostics, **(diagnostics or {})},
    )


@dataclass(frozen=True)
class PicardParams:
    """Parameters of ``demix ica --method picard``; validated on construction (CLI terms).

    ``sources`` is a count, a fraction of explained variance, ``"auto"`` or None (see
    :mod:`demix.methods.n_sources`); ``ortho`` None means ``"auto"`` (:func:`choose_ortho`);
    ``restarts`` above 1 keeps the most non-Gaussian of that many seeds
    (:func:`demix.methods.restarts.best_of_restarts`).
    """

    sources: int | float | str | None = None
    ortho: bool | None = None
    extended: bool = True
    max_iter: int = 500
    tol: float = 1e-7
    seed: int = 0
    restarts: int = 1

    def __post_init__(self) -> None:
        from demix.methods.n_sources import check_spec

        check_spec(self.sources)
        if self.ortho is not None and not isinstance(self.ortho, bool):
            raise ParameterError(f"--ortho {self.ortho!r} is invalid; expected True, False or None (auto)")
        if not isinstance(self.extended, bool):
            raise ParameterError(f"--extended {self.extended!r} is invalid; expected True or False")
        checks.integer("--max-iter", self.max_iter, low=1)
        checks.number("--tol", self.tol, low=0.0, low_open=True)
        checks.integer("--seed", self.seed, low=0)
        checks.integer("--restarts", self.restarts, low=1)


def separate(
    X: np.ndarray, sample_rate: int, params: PicardParams, callback: Callback | None = None
) -> Separation:
    """:func:`picard` (with restarts when asked) as the pipeline's runner."""
    options: dict[str, Any] = {
        "n_sources": params.sources,
        "ortho": "auto" if params.ortho is None else params.ortho,
        "extended": params.extended,
        "max_iter": params.max_iter,
        "tol": params.tol,
        "sample_rate": sample_rate,
    }
    if params.restarts == 1:
        return to_separation(picard(X, seed=params.seed, callback=callback, **options))
    from demix.methods.restarts import best_of_restarts

    report = best_of_restarts(picard, X, restarts=params.restarts, seed=params.seed, **options)
    return to_separation(
        report.best,
        {
            "restart_seeds": list(report.seeds),
            "restart_negentropy": list(report.negentropy),
            "restart_best_seed": report.seeds[report.best_index],
            "restart_spread": report.spread,
        },
    )


def finish(white: Whitening, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold a whitened-domain unmixing ``W`` (n, n) back: unmixing, mixing, sources.

    Rows are scaled to unit-variance sources and signs fixed so that each mixing column's largest
    entry is positive; ``A = K^+ W^{-1}`` so ``U A = I`` even when ``W`` is not orthogonal. The
    variances come from the mixture's covariance, so a whitening without its whitened data (a
    recording streamed from disk, :mod:`demix.streaming`) gives the same unmixing and no sources.
    """
    Z = white.whitened
    scale = np.sqrt(np.einsum("ij,jk,ik->i", W, _whitened_covariance(white), W))
    scale[scale == 0] = 1.0
    Ws = W / scale[:, None]
    A = white.dewhitening @ np.linalg.inv(Ws)
    signs = column_signs(A)
    A *= signs
    Ws *= signs[:, None]
    return Ws @ white.whitening, A, Ws @ Z


def _whitened_covariance(white: Whitening) -> np.ndarray:
    """``K C K^T``: the covariance of the whitened data (identity up to round-off)."""
    return white.whitening @ white.covariance @ white.whitening.T


def picard(
    X: np.ndarray,
    *,
    n_sources: int | float | str | None = None,
    ortho: bool | str = False,
    extended: bool = True,
    max_iter: int = 500,
    tol: float = 1e-7,
    m: int = 7,
    lambda_min: float = 0.01,
    ls_tries: int = 10,
    seed: int | None = 0,
    sample_rate: float | None = None,
    callback: Callback | None = None,
) -> ICAResult:
    """Separate a linear mixture by maximum-likelihood ICA with the Picard algorithm.

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture.
    n_sources : int, float in (0, 1), "auto" or None
        Sources to separate; see :func:`demix.methods.n_sources.count_sources` (None: one per
        channel, or the rank with a warning).
    ortho : bool or "auto"
        Keep the whitened-domain unmixing orthogonal (Picard-O: outputs exactly uncorrelated, the
        fixed points of FastICA). False (default) maximises the likelihood without that
        constraint, better on short clips (see the module docstring). ``"auto"`` picks by
        :func:`choose_ortho` and needs ``sample_rate``.
    extended : bool
        Switch each source between a super- and a sub-Gaussian density by the sign of its
        stability margin; False models every source as super-Gaussian (speech).
    max_iter : int
        Most iterations (those on the warm-start subsample included).
    tol : float
        Stop when the largest entry of the relative gradient is below it (python-picard's rule).
    m : int
        L-BFGS memory (pairs of steps and gradient changes).
    lambda_min : float
        Floor of the eigenvalues of the Hessian approximation.
    ls_tries : int
        Halvings tried by the line search before falling back to the gradient direction.
    seed : int or None
        Seed of the random orthogonal starting point and of the warm-start subsample.
    sample_rate : float, optional
        Samples per second; used only by ``ortho="auto"``.
    callback : callable, optional
        Called with :class:`~demix.types.IterInfo` (``change`` is the gradient norm) after each
        iteration.

    Returns
    -------
    ICAResult
        ``objective`` is the negative log-likelihood per sample, up to a constant, after every
        iteration; ``facts`` hold each source's ``density`` (``"super"`` or ``"sub"``);
        ``diagnostics`` hold ``ortho`` (the mode used), ``rank``,
        ``warm_start_samples``, ``n_iter_warm_start`` and ``line_search_failures``.

    Raises
    ------
    ParameterError
        A bad mixture or option (see :func:`check_options`).

    Warns
    -----
    ConvergenceWarning
        ``max_iter`` reached before ``tol``.

    References
    ----------
    .. [1] P. Ablin, J.-F. Cardoso and A. Gramfort, "Faster independent component analysis by
       preconditioning with Hessian approximations", IEEE Trans. Signal Processing 66(15), 2018.
    .. [2] P. Ablin, J.-F. Cardoso and A. Gramfort, "Faster ICA under orthogonal constraint",
       ICASSP 2018.
    """
    from demix.methods.n_sources import whiten_sources

    check_options(max_iter=max_iter, tol=tol, seed=seed, m=m, lambda_min=lambda_min, ls_tries=ls_tries)
    if ortho == "auto":
        arr = np.asarray(X)
        ortho = choose_ortho(arr.shape[-1] if arr.ndim else 0, sample_rate)
    elif not isinstance(ortho, (bool, np.bool_)):
        raise ParameterError(f"--ortho {ortho!r} is invalid; expected True, False or auto")
    white = whiten_sources(X, n_sources)
    Z = white.whitened
    rng = np.random.default_rng(seed)
    idx = warm_indices(Z.shape[1], rng)
    warm = None if idx is None else np.ascontiguousarray(Z[:, idx])
    settings = Settings(bool(ortho), extended, max_iter, tol, m, lambda_min, ls_tries)
    return fit(white, Z, warm, rng, settings, callback)


@dataclass(frozen=True)
class Settings:
    """How :func:`fit` iterates: :func:`picard`'s options of the same names."""

    ortho: bool
    extended: bool = True
    max_iter: int = 500
    tol: float = 1e-7
    m: int = 7
    lambda_min: float = 0.01
    ls_tries: int = 10


def fit(
    white: Whitening,
    Z: Whitened,
    warm: np.ndarray | None,
    rng: np.random.Generator,
    settings: Settings,
    callback: Callback | None = None,
) -> ICAResult:
    """Picard on whitened data ``Z``: an array, or a :class:`~demix.methods.fastica.BlockSource`
    read pass by pass from disk (Ablin, Cardoso & Gramfort 2018).

    ``warm`` is the warm-start subsample (``Z`` at :func:`~demix.methods.fastica.warm_indices`,
    or None) and ``rng`` the generator those indices were drawn from, which then draws the
    initial rotation; ``settings`` are :func:`picard`'s options. Every likelihood evaluation on
    the full data is one pass over ``Z``, and only such a pass can meet the stopping rule: on disk
    as in memory, the result is a stationary point of the full-data likelihood to ``tol``. The
    sources are ``white.whitened`` unmixed (none, ``(n, 0)``, when the whitening holds no data).
    """
    ortho, tol = settings.ortho, settings.tol
    solver = _Solver(ortho, settings.extended, settings.m, settings.lambda_min, settings.ls_tries, callback,
                     settings.max_iter)  # fmt: skip
    data = _Data(Z, _whitened_covariance(white))
    with one_blas_thread():
        W = _random_rotation(rng, Z.shape[0])
        if ortho:
            W = fastica_steps(W, data if warm is None else _Data.of(warm), FASTICA_STEPS)
        if warm is not None:
            W = solver.run(_Data.of(warm), W, max(tol, _WARM_TOL))
        n_warm = solver.n_iter
        W = solver.run(data, W, tol)
        U, A, S = finish(white, W)
    if not solver.converged:
        warnings.warn(
            f"Picard ({'orthogonal' if ortho else 'non-orthogonal'}) did not converge: the gradient "
            f"norm was {solver.gradient_norm:.3g} after {solver.n_iter} iterations, above "
            f"tol={tol:g}; raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    facts = tuple({"density": "super" if s > 0 else "sub"} for s in solver.signs)
    diagnostics: dict[str, Any] = {
        "ortho": ortho,
        "rank": white.rank,
        "warm_start_samples": 0 if warm is None else int(warm.shape[1]),
        "n_iter_warm_start": n_warm,
        "line_search_failures": solver.failures,
        "fastica_steps": FASTICA_STEPS if ortho else 0,
    }
    return ICAResult(
        unmixing=U,
        mixing=A,
        sources=S,
        n_iter=solver.n_iter,
        converged=solver.converged,
        final_change=solver.gradient_norm,
        objective=tuple(solver.history),
        facts=facts,
        diagnostics=diagnostics,
    )


#: ``ortho="auto"`` keeps the unmixing orthogonal for signals at least this long (seconds).
AUTO_ORTHO_SECONDS = 8.0


def choose_ortho(n_samples: int, sample_rate: float | None) -> bool:
    """The ``ortho="auto"`` rule: orthogonal from :data:`AUTO_ORTHO_SECONDS` on, free below.

    Over a few seconds, real sources are measurably correlated and the orthogonal constraint
    biases the unmixing; over longer spans their correlation fades below the extra estimation
    variance of the unconstrained likelihood. Measured (min SIR, free minus orthogonal) on
    LibriSpeech (3 readers): +0.2 to +4.4 dB on 2-7 s clips (19 of 20 clips gain), -2.7 to
    +0.8 dB at 10 s, -1.1 dB on the whole 13.9 s; ARCTIC pairs +0.2 to +8 dB up to 5 s;
    MUSDB stems (up to 6.8 s) mostly +1 to +2.5 dB. The rule counts seconds, not samples: what
    decorrelates sources is the number of syllables and notes, not the sample rate.
    """
    if sample_rate is None or not (isinstance(sample_rate, (int, float, np.number)) and sample_rate > 0):
        raise ParameterError(
            f"--ortho auto needs the sample rate (the rule is in seconds), got {sample_rate!r}"
        )
    return n_samples / float(sample_rate) >= AUTO_ORTHO_SECONDS


def check_options(**options: Any) -> None:
    """Validate Picard's numeric options; messages use the CLI's option names."""
    for name, minimum in (("max_iter", 1), ("m", 1), ("ls_tries", 1)):
        value = options[name]
        if not _is_int(value) or value < minimum:
            flag = "--max-iter" if name == "max_iter" else name
            raise ParameterError(f"{flag} {value!r} is invalid; expected an integer >= {minimum}")
    for name in ("tol", "lambda_min"):
        value = options[name]
        ok = not isinstance(value, bool) and isinstance(value, (int, float, np.number))
        if not ok or not (0 < value < math.inf):
            flag = "--tol" if name == "tol" else name
            raise ParameterError(f"{flag} {value!r} is invalid; expected a finite number > 0")
    seed = options["seed"]
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ParameterError(f"--seed {seed!r} is invalid; expected an integer >= 0 or None")


_CONTROLLER: list[Any] = []


def one_blas_thread() -> AbstractContextManager[object]:
    """Hold BLAS to one thread: every product here is thin, and OpenBLAS's threads cost more in
    hand-overs than they gain (see :mod:`demix.methods.fastica`). The controller is built once
    (building it scans the loaded libraries: ~5 ms)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return cast(AbstractContextManager[object], _CONTROLLER[0].limit(limits=1, user_api="blas"))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _random_rotation(rng: np.random.Generator, n: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


# --- one pass over the data ------------------------------------------------------------------


class _Stats(NamedTuple):
    """Sample statistics of ``y = W z`` at one point (all means over samples)."""

    logcosh: np.ndarray  # (n,) E{log cosh y_i}
    tanh_sq: np.ndarray  # (n,) E{tanh^2 y_i}
    tanh_y: np.ndarray  # (n, n) E{tanh(y_i) y_j}
    tanh_y_sq: np.ndarray  # (n,) E{tanh^2(y_i) y_i^2}
    yy: np.ndarray  # (n, n) E{y y^T}


class _Data(NamedTuple):
    """Whitened samples (an array or a block source) and their covariance (identity up to
    round-off for the full data)."""

    Z: Whitened
    cov: np.ndarray  # Z Z^T / T

    @classmethod
    def of(cls, Z: np.ndarray) -> _Data:
        return cls(Z, (Z @ Z.T) / Z.shape[1])


def _statistics(W: np.ndarray, data: _Data, diagonal: bool) -> _Stats:
    """All statistics Picard needs at ``W``, in one blocked pass over the data.

    ``diagonal``: also ``E{tanh^2(y) y^2}`` (the exact diagonal of the non-orthogonal Hessian).
    """
    Z = data.Z
    n, T = Z.shape
    size = max(64, _BLOCK_VALUES // n)
    k0 = min(T, size)
    y32 = np.empty((n, k0), dtype=np.float32)
    t32 = np.empty_like(y32)
    a32 = np.empty_like(y32)
    buf64 = np.empty((n, k0))
    ones = np.ones(k0)
    lc_sum = np.zeros(n)
    tsq = np.zeros(n)
    tysq = np.zeros(n)
    tz = np.zeros((n, n))
    for zb in blocks_of(Z, size):
        k = zb.shape[1]
        yb, tb, ab, b64 = y32[:, :k], t32[:, :k], a32[:, :k], buf64[:, :k]
        # y in float64, then rounded sample by sample: rounding W itself to float32 would bias
        # every sample alike and hold the gradient norm above 1e-7 (measured).
        np.matmul(W, zb, out=b64)
        yb[...] = b64
        np.tanh(yb, out=tb)
        # log cosh y = |y| - log(1 + |tanh y|) + log 2: one transcendental besides tanh.
        np.abs(tb, out=ab)
        ab += 1.0
        np.log(ab, out=ab)
        np.subtract(np.abs(yb, out=yb), ab, out=ab)
        b64[...] = ab
        lc_sum += np.vecdot(b64, ones[:k])  # summed in float64
        tsq += np.vecdot(tb, tb)
        if diagonal:
            np.multiply(tb, yb, out=ab)  # tanh(y) |y|, squared below
            tysq += np.vecdot(ab, ab)
        b64[...] = tb
        tz += _cross(b64, zb)
    return _Stats(
        logcosh=lc_sum / T + _LOG2,
        tanh_sq=tsq / T,
        tanh_y=(tz / T) @ W.T,
        tanh_y_sq=tysq / T,
        yy=W @ data.cov @ W.T,
    )


#: Symmetric FastICA steps that start the orthogonal mode. From a random rotation they reach the
#: basin faster than L-BFGS does (measured, Picard-O iterations from 4 seeds, without -> with 5
#: steps: 3.5 s LibriSpeech clips 10.0 -> 4.5 and 7.2 -> 2.0; 2 voices + tone + uniform, 5 s:
#: 12.0 -> 1.5); a step costs less than a Picard pass. The unconstrained mode gains nothing from
#: them (14.8 -> 12.8, 14.8 -> 17.5, 14.2 -> 14.0), so it starts from the rotation itself.
FASTICA_STEPS = 5


def fastica_steps(W: np.ndarray, data: _Data, steps: int) -> np.ndarray:
    """``steps`` symmetric FastICA iterations (``g = tanh``) from the orthogonal ``W``.

    ``W^+ = E{g(W z) z^T} - diag(E{g'(W z)}) W`` then ``W <- (W^+ W^{+T})^{-1/2} W^+``; the
    statistics come from the same fused pass as Picard's (``E{g(y) z^T} = E{g(y) y^T} W`` for an
    orthogonal ``W``). ``tanh`` serves sub- and super-Gaussian sources alike here.
    """
    for _ in range(steps):
        st = _statistics(W, data, False)
        W_new = st.tanh_y @ W - (1.0 - st.tanh_sq)[:, None] * W
        s, u = np.linalg.eigh(W_new @ W_new.T)
        W = (u / np.sqrt(np.clip(s, np.finfo(float).tiny, None))) @ u.T @ W_new
    return W


def _cross(t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``t @ z.T`` for a few long rows: row-pair dot products beat BLAS's gemm up to ~6 rows."""
    if t.shape[0] <= 6:
        return np.vecdot(t[:, None, :], z[None, :, :])
    return t @ z.T


# --- the quasi-Newton iteration ----------------------------------------------------------------


class _Point(NamedTuple):
    W: np.ndarray
    stats: _Stats
    loss: float
    G: np.ndarray  # relative gradient (skew for ortho)


class _Solver:
    """Preconditioned L-BFGS with backtracking, carried across the warm-start and full phases."""

    def __init__(
        self,
        ortho: bool,
        extended: bool,
        m: int,
        lambda_min: float,
        ls_tries: int,
        callback: Callback | None,
        max_iter: int,
    ) -> None:
        self.ortho, self.extended, self.lambda_min, self.ls_tries = ortho, extended, lambda_min, ls_tries
        self.callback, self.max_iter = callback, max_iter
        self.memory: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=m)
        self.signs = np.ones(0)
        self.n_iter = 0
        self.failures = 0
        self.gradient_norm = math.inf
        self.converged = False
        self.history: list[float] = []

    # The loss and its gradient at W for the current densities (signs).
    def _point(self, W: np.ndarray, data: _Data, stats: _Stats | None = None) -> _Point:
        st = _statistics(W, data, not self.ortho) if stats is None else stats
        sub = self.signs < 0
        var = np.diag(st.yy)
        loss = float(np.sum(np.where(sub, 0.5 * var - st.logcosh, st.logcosh)))
        if not self.ortho:
            loss -= float(np.linalg.slogdet(W)[1])
        M = np.where(sub[:, None], st.yy - st.tanh_y, st.tanh_y)  # E{psi(y) y^T}
        G = 0.5 * (M - M.T) if self.ortho else M - np.eye(len(M))
        return _Point(W, st, loss, G)

    def _choose_signs(self, st: _Stats) -> bool:
        """Densities from the stability margins; True when they changed."""
        if not self.extended:
            new = np.ones(len(st.logcosh))
        else:
            kappa = (1.0 - st.tanh_sq) * np.diag(st.yy) - np.diag(st.tanh_y)
            new = np.where(kappa >= 0, 1.0, -1.0)
        changed = len(self.signs) != len(new) or bool(np.any(new != self.signs))
        self.signs = new
        return changed

    def _preconditioner(self, pt: _Point) -> np.ndarray:
        """The curvature ``h`` of the block-diagonal Hessian approximation, regularised."""
        st, sub = pt.stats, self.signs < 0
        dpsi = np.where(sub, st.tanh_sq, 1.0 - st.tanh_sq)  # E{psi'}
        var = np.diag(st.yy)
        if self.ortho:
            M_diag = np.where(sub, var - np.diag(st.tanh_y), np.diag(st.tanh_y))
            h = 0.5 * (dpsi[:, None] + dpsi[None, :] - M_diag[:, None] - M_diag[None, :])
            return np.maximum(h, self.lambda_min)
        h = dpsi[:, None] * var[None, :]
        # Diagonal exactly: E{psi' y^2} = E{y^2} - E{tanh^2 y^2} (super) or E{tanh^2 y^2} (sub).
        np.fill_diagonal(h, np.where(sub, st.tanh_y_sq, var - st.tanh_y_sq))
        lowest = 0.5 * (h + h.T - np.sqrt((h - h.T) ** 2 + 4.0))
        shift = np.where(lowest < self.lambda_min, self.lambda_min - lowest, 0.0)
        np.fill_diagonal(shift, 0.0)
        return h + shift

    def _solve(self, h: np.ndarray, q: np.ndarray) -> np.ndarray:
        if self.ortho:
            z = q / h
            return 0.5 * (z - z.T)
        # Each pair [[h_ij, 1], [1, h_ji]] [z_ij, z_ji] = [q_ij, q_ji]; the diagonal is q_ii/(h_ii+1).
        return (h.T * q - q.T) / (h * h.T - 1.0)

    def _direction(self, pt: _Point) -> np.ndarray:
        """The L-BFGS two-loop recursion with the block Hessian as the initial inverse."""
        q = pt.G.copy()
        alphas = []
        for s, y, rho in reversed(self.memory):
            alpha = rho * float(np.sum(s * q))
            alphas.append(alpha)
            q -= alpha * y
        z = self._solve(self._preconditioner(pt), q)
        for (s, y, rho), alpha in zip(self.memory, reversed(alphas), strict=True):
            z += (alpha - rho * float(np.sum(y * z))) * s
        return -z

    def _move(self, W: np.ndarray, D: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """The trial point and the direction of the path's derivative there (relative)."""
        n = len(W)
        if self.ortho:
            return linalg.expm(alpha * D) @ W, D
        step = np.eye(n) + alpha * D
        return step @ W, D @ np.linalg.inv(step)

    def _line_search(self, pt: _Point, D: np.ndarray, data: _Data) -> tuple[_Point, np.ndarray] | None:
        """Backtracking from the full step; the accepted point and the step taken, or None."""
        slope0 = float(np.sum(pt.G * D))
        noise = 16.0 * _EPS32 * (1.0 + abs(pt.loss)) / math.sqrt(data.Z.shape[1])
        alpha = 1.0
        for _ in range(self.ls_tries):
            with np.errstate(all="ignore"):
                W_new, D_there = self._move(pt.W, D, alpha)
                if not np.all(np.isfinite(W_new)) or abs(np.linalg.det(W_new)) == 0:
                    alpha /= 2
                    continue
                new = self._point(W_new, data)
            if math.isfinite(new.loss):
                if new.loss < pt.loss:
                    return new, alpha * D
                # Within float32 noise: judge by the trapezoidal estimate of the loss change.
                if new.loss < pt.loss + noise and slope0 + float(np.sum(new.G * D_there)) < 0:
                    return new, alpha * D
            alpha /= 2
        return None

    def run(self, data: _Data, W: np.ndarray, tol: float) -> np.ndarray:
        """Iterate on ``data`` from ``W`` until the gradient norm is below ``tol`` or ``max_iter``."""
        stats = _statistics(W, data, not self.ortho)
        self._choose_signs(stats)
        pt = self._point(W, data, stats)
        self.converged = False
        while True:
            self.gradient_norm = float(np.max(np.abs(pt.G)))
            if self.gradient_norm < tol:
                self.converged = True
                break
            if self.n_iter >= self.max_iter:
                break
            D = self._direction(pt)
            found = self._line_search(pt, D, data)
            if found is None:  # the quasi-Newton direction failed: plain gradient, memory emptied
                self.failures += 1
                self.memory.clear()
                found = self._line_search(pt, -pt.G, data)
                if found is None:
                    break
            new, s = found
            y = new.G - pt.G
            sy = float(np.sum(s * y))
            if sy > 0:
                self.memory.append((s, y, 1.0 / sy))
            pt = new
            if self._choose_signs(pt.stats):
                self.memory.clear()
                pt = self._point(pt.W, data, pt.stats)
            self.n_iter += 1
            self.history.append(pt.loss)
            if self.callback is not None:
                change = float(np.max(np.abs(pt.G)))
                self.callback(IterInfo(iteration=self.n_iter, max_iter=self.max_iter, change=change))
        return pt.W
