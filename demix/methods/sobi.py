"""Second-order blind separation: AMUSE, SOBI and least-squares decorrelation.

These methods use no higher-order statistics: they separate sources that are uncorrelated with
each other at several time lags but have *different* spectra (different normalised
autocorrelations), which includes Gaussian sources that ICA cannot separate. Each returns a
:class:`~demix.types.Separation` whose ``unmixing`` ``W`` acts on the centred mixture
(``sources = W @ (X - mean)``, unit-variance sources) and whose ``mixing`` is ``A`` with
``W @ A = I``.

Mathematical names: ``X`` the mixture ``(n_channels, n_samples)``, ``Z = K (X - mean)`` the
whitened mixture, ``C_tau`` its symmetrised lagged covariances, ``V`` the orthogonal rotation
found by the method, ``W = V^T K`` the unmixing and ``A = K^+ V`` the mixing.

``diagnostics["off_diagonality_before"/"_after"]`` are :func:`~demix.methods.lagged.off_diagonality`
of the lagged covariances, at the method's lags, of the whitened mixture and of the sources.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from demix import checks
from demix.errors import ConvergenceWarning, ParameterError
from demix.methods.jointdiag import joint_diagonalise
from demix.methods.lagged import check_lags, lagged_covariances, off_diagonality, parse_lags
from demix.methods.whitening import Whitening, check_mixture, column_signs, whiten
from demix.types import Callback, Instantaneous, IterInfo, Separation

__all__ = ["DecorrParams", "amuse", "lagged_covariances", "lsq", "parse_lags", "separate", "sobi"]

Lags = str | Sequence[int] | np.ndarray


DEFAULT_LAGS = {"sobi": "1-100", "amuse": "1", "lsq": "1-100"}


@dataclass(frozen=True)
class DecorrParams:
    """Parameters of ``demix decorr``; validated on construction (messages in the CLI's terms).

    ``lags`` None takes the method's default (:data:`DEFAULT_LAGS`), recorded as the text used.
    """

    method: Literal["sobi", "amuse", "lsq"] = "sobi"
    lags: str | None = None
    sources: int | None = None
    max_iter: int = 100
    tol: float = 1e-8
    seed: int | None = 0

    def __post_init__(self) -> None:
        checks.choice("--method", self.method, DEFAULT_LAGS)
        if self.lags is None:
            object.__setattr__(self, "lags", DEFAULT_LAGS[self.method])
        chosen = parse_lags(str(self.lags))
        if self.method == "amuse" and len(chosen) != 1:
            raise ParameterError(
                f"--lags {self.lags!r}: amuse diagonalises one lagged covariance; give one lag"
            )
        checks.optional_integer("-n/--sources", self.sources, low=1)
        checks.integer("--max-iter", self.max_iter, low=1)
        checks.number("--tol", self.tol, low=0.0, low_open=True)
        checks.optional_integer("--seed", self.seed, low=0)


def separate(
    X: np.ndarray, sample_rate: int, params: DecorrParams, callback: Callback | None = None
) -> Separation:
    """Run the second-order method ``params.method`` with its validated parameters (any rate)."""
    lags = str(params.lags)
    if params.method == "amuse":
        return amuse(X, n_sources=params.sources, lag=int(parse_lags(lags)[0]))
    if params.method == "lsq":
        return lsq(
            X, n_sources=params.sources, lags=lags, seed=params.seed, max_iter=params.max_iter,
            tol=params.tol, callback=callback,
        )  # fmt: skip
    return sobi(
        X, n_sources=params.sources, lags=lags, max_iter=params.max_iter, tol=params.tol, callback=callback
    )


def whitening_sources(params: DecorrParams) -> int | None:
    """Sources the whitening keeps for ``params`` (``lsq`` is 2 x 2)."""
    return 2 if params.method == "lsq" else params.sources


def separate_from_statistics(
    wh: Whitening, C: np.ndarray, lags: np.ndarray, params: DecorrParams, callback: Callback | None = None
) -> Separation:
    """The method ``params.method`` from statistics alone: the whitening (its ``whitened`` may be
    empty) and the lagged covariances ``C`` of the whitened mixture at ``lags``.

    Second-order methods see the mixture only through these, so statistics accumulated block by
    block over a long recording (:mod:`demix.streaming`) give the in-memory result to round-off;
    the sources are then ``unmixing @ (x - mean)``, applied block by block by the caller.
    """
    if params.method == "amuse":
        return _amuse(wh, C, lags)
    if params.method == "lsq":
        if wh.covariance.shape[0] != 2 or params.sources not in (None, 2):
            raise ParameterError(
                f"lsq: separates 2 sources from 2 channels, got {wh.covariance.shape[0]} channels and "
                f"-n/--sources {params.sources}; use sobi for other shapes"
            )
        _check_iteration(params.max_iter, params.tol)
        if params.tol <= np.finfo(float).eps:
            eps = np.finfo(float).eps
            raise ParameterError(f"--tol: expected a number above {eps:.3g}, got {params.tol}")
        return _lsq(wh, C, lags, params.seed, 3, params.max_iter, params.tol, callback)
    _check_iteration(params.max_iter, params.tol)
    return _sobi(wh, C, lags, params.max_iter, params.tol, callback)


def amuse(X: np.ndarray, *, n_sources: int | None = None, lag: int = 1) -> Separation:
    r"""AMUSE: whiten, then diagonalise one lagged covariance (closed form).

    After whitening, ``Z = U s`` with ``U`` orthogonal, so the symmetrised lagged covariance is
    ``C_tau = U diag(rho_i(tau)) U^T`` where ``rho_i(tau)`` is source ``i``'s normalised
    autocorrelation. Its eigenvectors are the columns of ``U`` -- *provided the eigenvalues
    ``rho_i(tau)`` are distinct*. When two sources have equal autocorrelation at ``lag`` the
    eigenvectors in their plane are arbitrary and AMUSE does not separate them;
    ``diagnostics["eigenvalue_gap"]`` (smallest gap between the ``rho_i(tau)``; None for one
    source) shows how close that is, and :func:`sobi` avoids it by using many lags.

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture.
    n_sources : int, optional
        Sources to separate (PCA reduction); default the rank of the mixture.
    lag : int
        The lag ``tau >= 1`` in samples.

    Returns
    -------
    Separation
        Sources ordered by decreasing ``rho_i(lag)``, each with its ``autocorrelation`` fact;
        ``n_iter=0``, ``converged=True``. Diagnostics: ``lags``, ``eigenvalue_gap``,
        ``off_diagonality_before``, ``off_diagonality_after``, ``rank``.

    References
    ----------
    L. Tong, R.-W. Liu, V. C. Soon and Y.-F. Huang, "Indeterminacy and identifiability of blind
    identification", IEEE Trans. Circuits and Systems 38(5), 499-509, 1991.
    """
    X = check_mixture(X)
    n_samples = X.shape[1]
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or not 1 <= lag < n_samples:
        raise ParameterError(
            f"--lag: expected an integer from 1 to {n_samples - 1} (below the signal length), got {lag!r}"
        )
    lags = np.array([lag], dtype=np.int64)
    wh = whiten(X, n_sources)
    return _amuse(wh, lagged_covariances(wh.whitened, lags), lags)


def _amuse(wh: Whitening, C: np.ndarray, lags: np.ndarray) -> Separation:
    """AMUSE from the whitening and the one lagged covariance ``C`` ``(1, n, n)`` of the whitened data."""
    eigenvalues, V = np.linalg.eigh(C[0])
    eigenvalues, V = eigenvalues[::-1], V[:, ::-1]
    gap = float(np.min(np.diff(eigenvalues[::-1]))) if eigenvalues.size > 1 else None
    facts = tuple({"autocorrelation": float(v)} for v in eigenvalues)
    return _separation(
        wh, V, C, lags, n_iter=0, converged=True, change=0.0, extra={"eigenvalue_gap": gap}, facts=facts
    )


def sobi(
    X: np.ndarray,
    *,
    n_sources: int | None = None,
    lags: Lags = np.arange(1, 101),
    max_iter: int = 100,
    tol: float = 1e-8,
    callback: Callback | None = None,
) -> Separation:
    r"""SOBI: whiten, then jointly diagonalise many lagged covariances by Jacobi rotations.

    With ``Z = U s`` whitened, every ``C_tau = U diag(rho(tau)) U^T``; SOBI finds the orthogonal
    ``V`` minimising :math:`\sum_\tau \sum_{i \ne j} (V^T C_\tau V)_{ij}^2`, which recovers
    ``U`` (up to order and sign) as soon as, for every pair of sources, the autocorrelation
    sequences differ at *some* lag.

    The minimisation is the real Jacobi algorithm of Cardoso & Souloumiac: a *sweep* visits
    every pair ``(p, q)`` and applies the Givens rotation whose angle is the closed-form optimum
    for that pair over all lags,

    .. math::

        g_\tau = \begin{pmatrix} C_{\tau,pp} - C_{\tau,qq} \\ 2 C_{\tau,pq} \end{pmatrix},\quad
        G = \sum_\tau g_\tau g_\tau^T,\quad
        \theta = \tfrac12 \operatorname{atan2}\!\big(2G_{12},\,
        G_{11} - G_{22} + \sqrt{(G_{11} - G_{22})^2 + 4G_{12}^2}\big).

    Rotations with ``|theta| <= tol`` are skipped; the method has *converged* after the first
    sweep in which every pair's angle is at most ``tol`` radians (near the optimum the angles
    shrink quadratically, so this takes a few sweeps).

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture, any number of channels.
    n_sources : int, optional
        Sources to separate (PCA reduction); default the rank of the mixture.
    lags : str or sequence of int
        Lags in samples, positive and below ``n_samples``; a string uses the ``--lags`` syntax
        of :func:`~demix.methods.lagged.parse_lags` (``"1-100"``).
    max_iter : int
        Maximum number of sweeps.
    tol : float
        Rotation angle (radians) below which a pair counts as diagonalised.
    callback : callable, optional
        Called after each sweep with ``IterInfo(iteration=sweep, max_iter, change=max |theta|)``.

    Returns
    -------
    Separation
        ``n_iter`` sweeps, ``final_change`` the largest angle of the last sweep. Diagnostics:
        ``lags``, ``off_diagonality_before``, ``off_diagonality_after``, ``rank``.

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` sweeps end with an angle still above ``tol``.

    References
    ----------
    A. Belouchrani, K. Abed-Meraim, J.-F. Cardoso and E. Moulines, "A blind source separation
    technique using second-order statistics", IEEE Trans. Signal Processing 45(2), 434-444, 1997.

    J.-F. Cardoso and A. Souloumiac, "Jacobi angles for simultaneous diagonalization",
    SIAM J. Matrix Analysis and Applications 17(1), 161-164, 1996.
    """
    X = check_mixture(X)
    lag_array = check_lags(lags, X.shape[1])
    _check_iteration(max_iter, tol)
    wh = whiten(X, n_sources)
    return _sobi(wh, lagged_covariances(wh.whitened, lag_array), lag_array, max_iter, tol, callback)


def _sobi(
    wh: Whitening, C: np.ndarray, lag_array: np.ndarray, max_iter: int, tol: float, callback: Callback | None
) -> Separation:
    """SOBI from the whitening and the lagged covariances ``C`` of the whitened data."""
    V, n_sweeps, max_angle = joint_diagonalise(C, max_iter, tol, callback)
    converged = max_angle <= tol
    if not converged:
        warnings.warn(
            f"sobi: stopped after max_iter={max_iter} sweeps with a rotation of "
            f"{max_angle:.3g} rad still above tol={tol:g}; raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return _separation(wh, V, C, lag_array, n_iter=n_sweeps, converged=converged, change=max_angle, extra={})


def lsq(
    X: np.ndarray,
    *,
    n_sources: int | None = None,
    lags: Lags = np.arange(1, 101),
    seed: int | None = 0,
    n_starts: int = 3,
    max_iter: int = 200,
    tol: float = 1e-10,
    callback: Callback | None = None,
) -> Separation:
    r"""Least-squares decorrelation of a 2 x 2 mixture over many lags.

    The unknowns are the directions of the two mixing columns,
    ``a_k = (cos theta_k, sin theta_k)`` (columns normalised to unit length; scale is free).
    The demixing row that cancels source ``k'`` is orthogonal to ``a_k'``, so up to row scale
    ``W(theta) = adj(A) = [[sin theta_2, -cos theta_2], [-sin theta_1, cos theta_1]]`` -- no matrix
    inverse, hence smooth and bounded even when the two columns become parallel. With
    ``R_tau`` the symmetrised lagged covariances of the centred mixture (``tau = 0`` and every
    chosen lag) and ``w_1, w_2`` the rows of ``W``, the residuals are the correlation
    coefficients of the two demixed signals,

    .. math::

        r_\tau(\theta) = \frac{w_1^T R_\tau w_2}{\sqrt{(w_1^T R_0 w_1)(w_2^T R_0 w_2)}},

    which all vanish at the true directions when the sources are uncorrelated at every lag;
    ``scipy.optimize.least_squares`` (Levenberg-Marquardt) minimises :math:`\sum_\tau r_\tau^2`.
    The data enter only through the ``R_tau``, so each evaluation costs ``O(n_lags)``.

    Why 2 x 2 only: for ``n`` channels the same problem has ``n(n-1)`` angles and
    ``n(n-1)/2`` residuals per lag, but the adjugate trick no longer gives each demixing row from
    the other columns alone, so ``W = A^{-1}`` would be needed and the residuals blow up near
    singular ``A``; :func:`sobi` solves that general case by joint diagonalisation instead.

    Parameters
    ----------
    X : ndarray, (2, n_samples)
        A two-channel mixture of rank 2.
    n_sources : {None, 2}
        Accepted for a uniform signature; only 2 sources are possible.
    lags : str or sequence of int
        Positive lags (lag 0 is always added), as for :func:`sobi`.
    seed : int or None
        Seed of the extra random starting points.
    n_starts : int
        Starting points: the principal axes of the mixture, then ``n_starts - 1`` random pairs of
        directions; the lowest cost wins.
    max_iter : int
        Maximum residual evaluations per start (``max_nfev``).
    tol : float
        ``ftol``, ``xtol`` and ``gtol`` of ``least_squares`` (above machine epsilon).
    callback : callable, optional
        Called after each start with ``IterInfo(iteration=start, max_iter=n_starts,
        change=best cost so far)``.

    Returns
    -------
    Separation
        Unit-variance sources ordered by mixing direction; ``n_iter`` the evaluations of the best
        start, ``converged`` whether it met ``tol``, ``final_change`` its cost. Diagnostics:
        ``lags``, ``off_diagonality_before``, ``off_diagonality_after``, ``rank``,
        ``mixing_angles_deg``, ``max_abs_correlation``, ``start_costs``, ``n_eval_total``.

    Warns
    -----
    ConvergenceWarning
        When the best start used ``max_iter`` evaluations before meeting ``tol``.

    References
    ----------
    L. Molgedey and H. G. Schuster, "Separation of a mixture of independent signals using time
    delayed correlations", Physical Review Letters 72(23), 3634-3637, 1994.

    A. Belouchrani, K. Abed-Meraim, J.-F. Cardoso and E. Moulines, "A blind source separation
    technique using second-order statistics", IEEE Trans. Signal Processing 45(2), 434-444, 1997.
    """
    X = check_mixture(X)
    if X.shape[0] != 2 or n_sources not in (None, 2):
        raise ParameterError(
            f"lsq: separates 2 sources from 2 channels, got {X.shape[0]} channels and "
            f"-n/--sources {n_sources}; use sobi for other shapes"
        )
    lag_array = check_lags(lags, X.shape[1])
    _check_iteration(max_iter, tol)
    if tol <= np.finfo(float).eps:
        raise ParameterError(f"--tol: expected a number above {np.finfo(float).eps:.3g}, got {tol}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ParameterError(f"--seed: expected a non-negative integer or None, got {seed!r}")
    if isinstance(n_starts, bool) or not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ParameterError(f"n_starts: expected a positive integer, got {n_starts!r}")

    wh = whiten(X, 2)
    Cz = lagged_covariances(wh.whitened, lag_array)
    return _lsq(wh, Cz, lag_array, seed, n_starts, max_iter, tol, callback)


def _lsq(
    wh: Whitening,
    Cz: np.ndarray,
    lag_array: np.ndarray,
    seed: int | None,
    n_starts: int,
    max_iter: int,
    tol: float,
    callback: Callback | None,
) -> Separation:
    """Least-squares decorrelation from the whitening and the lagged covariances of the whitened data."""
    from scipy.optimize import least_squares

    D = wh.dewhitening
    R = np.concatenate([(D @ D.T)[None], D @ Cz @ D.T])  # lags 0, lag_array of X - mean

    rng = np.random.default_rng(seed)
    runs = []
    for start in range(n_starts):
        x0 = _lsq_start(start, wh.dewhitening, rng)
        runs.append(
            least_squares(
                _lsq_residuals, x0, args=(R,), method="lm", max_nfev=max_iter, ftol=tol, xtol=tol, gtol=tol
            )
        )
        if callback is not None:
            best_cost = min(float(run.cost) for run in runs)
            callback(IterInfo(iteration=start + 1, max_iter=n_starts, change=best_cost))
    best = min(runs, key=lambda run: float(run.cost))
    costs = [float(run.cost) for run in runs]
    n_eval = sum(int(run.nfev) for run in runs)
    converged = bool(best.status > 0)
    if not converged:
        warnings.warn(
            f"lsq: least_squares stopped after max_iter={max_iter} evaluations with cost "
            f"{best.cost:.3g} (tol={tol:g}); raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return _lsq_separation(wh, Cz, R, lag_array, np.mod(best.x, np.pi), best, costs, n_eval, converged)


def _lsq_unmixing(theta: np.ndarray) -> np.ndarray:
    """Rows cancelling the other column: the adjugate of ``[[cos t1, cos t2], [sin t1, sin t2]]``."""
    return np.array([[np.sin(theta[1]), -np.cos(theta[1])], [-np.sin(theta[0]), np.cos(theta[0])]])


def _lsq_residuals(theta: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Correlation coefficients of the two demixed signals at lag 0 and every lag."""
    W = _lsq_unmixing(theta)
    cross = W[0] @ R @ W[1]
    return np.asarray(cross / np.sqrt((W[0] @ R[0] @ W[0]) * (W[1] @ R[0] @ W[1])))


def _lsq_start(start: int, D: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Start 0: the principal axes (already uncorrelated at lag 0); then random distinct pairs."""
    if start == 0:
        return np.arctan2(D[1], D[0])
    first = rng.uniform(0.0, np.pi)
    return np.array([first, first + rng.uniform(np.pi / 4, 3 * np.pi / 4)])


def _lsq_separation(
    wh: Whitening,
    Cz: np.ndarray,
    R: np.ndarray,
    lags: np.ndarray,
    theta: np.ndarray,
    best: Any,
    costs: list[float],
    n_eval: int,
    converged: bool,
) -> Separation:
    """Unit-variance unmixing from the optimal angles, sources ordered by angle, diagnostics."""
    order = np.argsort(theta)
    theta = theta[order]
    W = _lsq_unmixing(theta)
    W /= np.sqrt(np.einsum("ij,jk,ik->i", W, R[0], W))[:, None]
    A = np.linalg.inv(W)
    signs = column_signs(A)
    W, A = W * signs[:, None], A * signs
    C_after = W @ R[1:] @ W.T
    diagnostics = {
        "lags": [int(v) for v in lags],
        "off_diagonality_before": off_diagonality(Cz),
        "off_diagonality_after": off_diagonality(C_after),
        "rank": wh.rank,
        "max_abs_correlation": float(np.max(np.abs(_lsq_residuals(theta, R)))),
        "start_costs": costs,
        "n_eval_total": n_eval,
    }
    return Separation(
        sources=W @ (wh.dewhitening @ wh.whitened),
        layout="mono",
        model=Instantaneous(mixing=A, unmixing=W),
        facts=tuple({"mixing_angle_deg": float(v)} for v in np.degrees(theta)),
        n_iter=int(best.nfev),
        converged=converged,
        final_change=float(best.cost),
        diagnostics=diagnostics,
    )


def _separation(
    wh: Whitening,
    V: np.ndarray,
    C: np.ndarray,
    lags: np.ndarray,
    *,
    n_iter: int,
    converged: bool,
    change: float,
    extra: dict[str, Any],
    facts: tuple[dict[str, Any], ...] = (),
) -> Separation:
    """Fold the rotation ``V`` into unmixing/mixing, fix signs, and record the diagnostics."""
    signs = column_signs(wh.dewhitening @ V)
    W = (V.T @ wh.whitening) * signs[:, None]
    A = (wh.dewhitening @ V) * signs
    rotation = V * signs
    C_after = np.einsum("ki,lkm,mj->lij", rotation, C, rotation)
    diagnostics = {
        "lags": [int(v) for v in lags],
        "off_diagonality_before": off_diagonality(C),
        "off_diagonality_after": off_diagonality(C_after),
        "rank": wh.rank,
        **extra,
    }
    return Separation(
        sources=(V.T @ wh.whitened) * signs[:, None],
        layout="mono",
        model=Instantaneous(mixing=A, unmixing=W),
        facts=facts,
        n_iter=n_iter,
        converged=converged,
        final_change=float(change),
        diagnostics=diagnostics,
    )


def _check_iteration(max_iter: int, tol: float) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ParameterError(f"--max-iter: expected a positive integer, got {max_iter!r}")
    if not isinstance(tol, (int, float, np.floating)) or not (np.isfinite(tol) and tol > 0):
        raise ParameterError(f"--tol: expected a positive finite number, got {tol!r}")
