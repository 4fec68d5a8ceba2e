r"""JADE: ICA by joint approximate diagonalisation of fourth-order cumulant matrices.

After whitening (``z = K (x - μ)``, identity covariance), the sources are ``y = V^T z`` for a
rotation ``V``. For independent sources every fourth-order cumulant matrix

.. math::

    Q_z(M) = \hat E\{(z^T M z)\, z z^T\} - \operatorname{tr}(M) I - M - M^T

is diagonalised by the true rotation, so JADE [1]_ computes ``Q_z(M)`` for the ``n(n+1)/2``
symmetric basis matrices ``M = e_p e_p^T`` and ``(e_p e_q^T + e_q e_p^T)/\sqrt 2`` (``p < q``) —
together they hold every fourth-order cross-cumulant — and finds the ``V`` that makes all of them
as diagonal as possible with the Jacobi method of Cardoso & Souloumiac [2]_ (shared with SOBI:
:func:`demix.methods.jointdiag.joint_diagonalise`). This maximises the sum of squared
auto-cumulants, a contrast that needs no density model and no random start: JADE is
deterministic and suits sub- and super-Gaussian sources alike.

Cost. The cumulants are read from the moment matrix ``\hat E\{p p^T\}`` of the ``n(n+1)/2``
products ``p = (z_p z_q)_{p \le q}``, built block by block in float32 products accumulated in
float64: ``O(n^4 T)`` time and ``O(n^4)`` memory, and the joint diagonalisation of ``n(n+1)/2``
matrices costs ``O(n^5)`` per sweep. Hence :data:`MAX_SOURCES` = 16 (136 matrices of 16 x 16,
~10 s per minute of 16 kHz audio on one core); beyond that, use Picard. Being a mean over samples,
the moment matrix of a recording too long for memory is accumulated over whitened blocks read from
disk in one pass (:mod:`demix.streaming`), and :func:`fit` diagonalises it as in memory.

References
----------
.. [1] J.-F. Cardoso and A. Souloumiac, "Blind beamforming for non-Gaussian signals", IEE
   Proceedings F 140(6), 362-370, 1993.
.. [2] J.-F. Cardoso and A. Souloumiac, "Jacobi angles for simultaneous diagonalization", SIAM J.
   Matrix Anal. Appl. 17(1), 161-164, 1996.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from demix import checks
from demix.errors import ConvergenceWarning, ParameterError
from demix.methods.fastica import Whitened, blocks_of
from demix.methods.jointdiag import joint_diagonalise
from demix.methods.n_sources import SourcesSpec, check_spec, whiten_sources
from demix.methods.picard import ICAResult, finish, one_blas_thread, to_separation
from demix.methods.whitening import Whitening
from demix.types import Callback, Separation

__all__ = ["MAX_SOURCES", "JadeParams", "cumulant_matrices", "fit", "jade", "separate"]

#: Most sources JADE separates (its cumulant set grows as n^4; see the module docstring).
MAX_SOURCES = 16
#: float32 values of the pair products per block (1 MiB).
_BLOCK_VALUES = 1 << 18


@dataclass(frozen=True)
class JadeParams:
    """Parameters of ``demix ica --method jade``; validated on construction (CLI terms).

    ``tol`` None means ``0.01 / sqrt(n_samples)`` radians (Cardoso's choice).
    """

    sources: int | float | str | None = None
    max_iter: int = 100
    tol: float | None = None

    def __post_init__(self) -> None:
        check_spec(self.sources)
        if (
            isinstance(self.sources, int)
            and not isinstance(self.sources, bool)
            and self.sources > MAX_SOURCES
        ):
            _refuse(self.sources)
        checks.integer("--max-iter", self.max_iter, low=1)
        if self.tol is not None:
            checks.number("--tol", self.tol, low=0.0, high=1.0, low_open=True)


def separate(
    X: np.ndarray, sample_rate: int, params: JadeParams, callback: Callback | None = None
) -> Separation:
    """:func:`jade` as the pipeline's runner (any sample rate)."""
    result = jade(X, n_sources=params.sources, max_iter=params.max_iter, tol=params.tol, callback=callback)
    return to_separation(result)


def jade(
    X: np.ndarray,
    *,
    n_sources: SourcesSpec = None,
    max_iter: int = 100,
    tol: float | None = None,
    callback: Callback | None = None,
) -> ICAResult:
    """Separate a linear mixture with JADE (Cardoso & Souloumiac 1993).

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture.
    n_sources : int, float in (0, 1), "auto" or None
        Sources to separate (see :func:`demix.methods.n_sources.count_sources`), at most
        :data:`MAX_SOURCES`.
    max_iter : int
        Most Jacobi sweeps.
    tol : float, optional
        Stop when every Givens angle of a sweep is below it (radians); None means
        ``0.01 / sqrt(n_samples)``, Cardoso's choice: smaller rotations are far below the
        statistical error of the cumulants.
    callback : callable, optional
        Called with :class:`~demix.types.IterInfo` after every sweep (``change`` is its largest
        angle).

    Returns
    -------
    ICAResult
        ``n_iter`` Jacobi sweeps, ``final_change`` the last sweep's largest angle, ``objective``
        the off-diagonal energy of the cumulant matrices before and after; ``diagnostics``
        hold ``rank`` and ``n_cumulant_matrices``.

    Raises
    ------
    ParameterError
        More than :data:`MAX_SOURCES` sources, a bad mixture, ``max_iter`` or ``tol``.

    References
    ----------
    .. [1] J.-F. Cardoso and A. Souloumiac, "Blind beamforming for non-Gaussian signals", IEE
       Proceedings F 140(6), 1993.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ParameterError(f"--max-iter {max_iter!r} is invalid; expected an integer >= 1")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1):
        raise ParameterError(f"--tol {tol!r} is invalid; expected a number in (0, 1) (radians)")
    arr = np.asarray(X)
    if n_sources is None and arr.ndim == 2 and arr.shape[0] > MAX_SOURCES:
        _refuse(arr.shape[0])
    white = whiten_sources(X, n_sources)
    return fit(white, cumulant_matrices(white.whitened), white.whitened.shape[1], max_iter, tol, callback)


def fit(
    white: Whitening,
    C: np.ndarray,
    n_samples: int,
    max_iter: int = 100,
    tol: float | None = None,
    callback: Callback | None = None,
) -> ICAResult:
    """JADE from the cumulant matrices ``C`` (:func:`cumulant_matrices`) of ``n_samples`` whitened
    samples: the rotation that jointly diagonalises them (Cardoso & Souloumiac 1993).

    The data enter only through ``C``, a mean over samples, so the cumulants of a recording
    accumulated block by block from disk (:mod:`demix.streaming`) give the in-memory fit. The
    sources are ``white.whitened`` unmixed (none, ``(n, 0)``, when the whitening holds no data).
    """
    angle_tol = 0.01 / math.sqrt(n_samples) if tol is None else float(tol)
    with one_blas_thread():
        before = _off_diagonal(C)
        # A copy in C order: joint_diagonalise rotates a transposed view of its argument in place
        # when that view happens to be contiguous.
        V, sweeps, angle = joint_diagonalise(np.array(C, order="C"), max_iter, angle_tol, callback)
        after = _off_diagonal(np.einsum("ji,kjl,lm->kim", V, C, V))
        U, A, S = finish(white, V.T)
    converged = angle <= angle_tol
    if not converged:
        warnings.warn(
            f"JADE did not converge: the largest Jacobi angle was {angle:.3g} rad after {sweeps} "
            f"sweeps, above tol={angle_tol:.3g}; raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    diagnostics: dict[str, Any] = {
        "rank": white.rank,
        "n_cumulant_matrices": int(C.shape[0]),
    }
    return ICAResult(
        unmixing=U,
        mixing=A,
        sources=S,
        n_iter=int(sweeps),
        converged=bool(converged),
        final_change=float(angle),
        objective=(before, after),
        diagnostics=diagnostics,
    )


def _refuse(n: int) -> None:
    raise ParameterError(
        f"--method jade separates at most {MAX_SOURCES} sources (its fourth-order cumulant set "
        f"grows as n^4), got {n}; pass -n/--sources {MAX_SOURCES} or fewer, or use --method picard"
    )


def cumulant_matrices(Z: Whitened) -> np.ndarray:
    """The ``n(n+1)/2`` fourth-order cumulant matrices ``Q_z(M)`` of whitened ``Z`` (n, T), an
    array or a :class:`~demix.methods.fastica.BlockSource` (one pass over its blocks).

    Returns an array ``(n(n+1)/2, n, n)`` of symmetric matrices, for ``M = e_p e_p^T`` then
    ``(e_p e_q^T + e_q e_p^T)/\\sqrt 2`` in the order of ``np.triu_indices(n)``. Refuses more than
    :data:`MAX_SOURCES` rows.
    """
    n, T = Z.shape
    if n > MAX_SOURCES:
        _refuse(n)
    iu, ju = np.triu_indices(n)
    n_pairs = len(iu)
    moments = np.zeros((n_pairs, n_pairs))
    size = max(64, _BLOCK_VALUES // n_pairs)
    P = np.empty((n_pairs, min(T, size)), dtype=np.float32)
    with one_blas_thread():
        for block in blocks_of(Z, size):
            zb = block.astype(np.float32, copy=False)
            k = zb.shape[1]
            Pb = P[:, :k]
            np.multiply(zb[iu], zb[ju], out=Pb)
            moments += (Pb @ Pb.T).astype(np.float64)
    moments /= T
    # E{z_p z_q z_k z_l} for every (p, q) pair and every (k, l), symmetric in k and l.
    pair = np.empty((n, n), dtype=np.intp)
    pair[iu, ju] = np.arange(n_pairs)
    pair[ju, iu] = np.arange(n_pairs)
    C = np.ascontiguousarray(moments[:, pair])  # (n_pairs, n, n)
    eye = np.eye(n)
    C[iu == ju] -= eye  # tr(M) I for M = e_p e_p^T
    C[np.arange(n_pairs), iu, ju] -= 1.0  # M + M^T: entries (p, q) and (q, p)
    C[np.arange(n_pairs), ju, iu] -= 1.0
    C[iu != ju] *= math.sqrt(2.0)
    return C


def _off_diagonal(C: np.ndarray) -> float:
    diag = np.einsum("kii->ki", C)
    return float(np.sum(C * C) - np.sum(diag * diag))
