"""Centring, PCA reduction and whitening shared by the linear separation methods.

Every linear method (FastICA, AMUSE, SOBI, …) starts the same way: remove the per-channel mean,
diagonalise the channel covariance, keep the ``n_sources`` strongest principal directions and
scale them to unit variance. This module does that once, with one rank policy:

* ``n_sources=None`` on a rank-deficient mixture (silent or duplicated channels): reduce to the
  rank and say so with a :class:`UserWarning`;
* ``n_sources`` asked explicitly above the rank, more sources than channels, or every channel
  silent: :class:`~demix.errors.ParameterError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from demix.errors import ParameterError

#: An eigenvalue of the channel covariance counts towards the rank when it exceeds this fraction
#: of the largest one (1e-10 in power is -100 dB: far below 16-bit quantisation noise, far above
#: the ~1e-16 round-off that a duplicated channel leaves).
RANK_RTOL = 1e-10

#: Centring a constant channel of value ``m`` leaves round-off of a few ulps of ``|m|``; variance
#: below ``(CENTRING_ULPS * eps * max|mean|)^2`` is that round-off, not signal.
CENTRING_ULPS = 64


@dataclass(frozen=True)
class Whitening:
    """The whitening transform of a mixture and the whitened data.

    Attributes
    ----------
    whitened : ndarray, (n_sources, n_samples)
        ``Z = K (X - mean)``, with identity covariance ``Z Z^T / n_samples``, in the ``dtype``
        asked of :func:`whiten`.
    whitening : ndarray, (n_sources, n_channels)
        ``K = D^{-1/2} E^T`` on the ``n_sources`` leading eigenpairs ``(D, E)`` of the covariance.
    dewhitening : ndarray, (n_channels, n_sources)
        ``K^+ = E D^{1/2}``; ``K K^+ = I``.
    mean : ndarray, (n_channels,)
        Per-channel mean removed before whitening.
    covariance : ndarray, (n_channels, n_channels)
        The channel covariance ``(X - mean)(X - mean)^T / n_samples``.
    rank : int
        Numerical rank of the channel covariance (see :data:`RANK_RTOL`).
    eigenvalues : ndarray, (n_channels,)
        All covariance eigenvalues, in decreasing order.
    """

    whitened: np.ndarray
    whitening: np.ndarray
    dewhitening: np.ndarray
    mean: np.ndarray
    covariance: np.ndarray
    rank: int
    eigenvalues: np.ndarray


def check_mixture(X: np.ndarray, *, min_samples: int = 2) -> np.ndarray:
    """Validate a mixture; return it as float32 or float64 ``(n_channels, n_samples)`` (no copy when it is).

    At least ``max(min_samples, 2 n_channels)`` samples are required: fewer cannot estimate a
    channel covariance, and usually mean the array is transposed.

    Raises
    ------
    ParameterError
        Not 2-D, complex, non-finite, no channel, or too few samples.
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ParameterError(f"mixture: expected a 2-D array (n_channels, n_samples), got shape {arr.shape}")
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ParameterError(f"mixture: expected real numbers, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    n_channels, n_samples = arr.shape
    needed = max(min_samples, 2 * n_channels)
    if n_channels < 1 or n_samples < needed:
        hint = " (is it transposed?)" if n_samples < n_channels else ""
        raise ParameterError(
            f"mixture: shape {arr.shape} (n_channels, n_samples) has too few samples{hint}; "
            f"expected at least {needed} for {n_channels} channel(s)"
        )
    if not np.all(np.isfinite(arr)):
        raise ParameterError("mixture: contains NaN or infinite values")
    return arr


def whiten(X: np.ndarray, n_sources: int | None = None, *, dtype: type = np.float64) -> Whitening:
    """Centre, PCA-reduce and whiten a mixture, in passes over cache-sized blocks.

    With ``Xc = X - mean`` and the eigendecomposition ``Xc Xc^T / T = E D E^T`` (eigenvalues in
    decreasing order), the whitening matrix keeps the ``n_sources`` leading eigenpairs:
    ``K = D_n^{-1/2} E_n^T``, so ``Z = K Xc`` has identity covariance. Mean and covariance are
    accumulated block by block in float64 and ``Z`` is written block by block, so nothing of the
    signal's size exists beyond ``X`` and ``Z`` themselves.

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture (validated with :func:`check_mixture`).
    n_sources : int or None
        Sources to keep; None means the numerical rank (``n_channels`` unless channels are
        silent or duplicated, in which case a :class:`UserWarning` says so).
    dtype : numpy float type
        Of the whitened data: float32 halves memory and doubles the speed of the passes of
        iterative methods; ``Z`` has unit variance, so its 7 digits are far below any
        statistical error.

    Returns
    -------
    Whitening

    Raises
    ------
    ParameterError
        ``n_sources`` not a positive integer, above ``n_channels`` (suggests ``demix nmf``), above
        the rank, or every channel silent.
    """
    X = check_mixture(X)
    mean, C = mean_and_covariance(X)
    transform = whitening_from_statistics(mean, C, n_sources)
    return dataclasses.replace(transform, whitened=whitened_blocks(X, mean, transform.whitening, dtype))


def whitening_from_statistics(mean: np.ndarray, C: np.ndarray, n_sources: int | None = None) -> Whitening:
    """The whitening transform from a mixture's mean and covariance alone, with :func:`whiten`'s
    rank policy; ``whitened`` is an empty ``(n_sources, 0)`` array.

    For statistics accumulated block by block over a recording read from disk
    (:mod:`demix.streaming`): the transform is the same as :func:`whiten` computes in memory.
    """
    n_channels = C.shape[0]
    n_sources = _check_n_sources(n_sources, n_channels)
    eigenvalues, E, rank = principal_axes(C, mean)
    n_sources, _ = choose_n_sources(n_sources, n_channels, rank)
    E = E[:, :n_sources]
    d = eigenvalues[:n_sources]
    K = (E / np.sqrt(d)).T
    return Whitening(
        whitened=np.empty((n_sources, 0)),
        whitening=K,
        dewhitening=E * np.sqrt(d),
        mean=mean,
        covariance=C,
        rank=rank,
        eigenvalues=np.clip(eigenvalues, 0.0, None),
    )


def principal_axes(C: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Eigenvalues (decreasing), sign-fixed eigenvectors and numerical rank of a covariance ``C``.

    Raises :class:`ParameterError` when the rank is 0 (every channel silent or constant).
    """
    eigenvalues, E = np.linalg.eigh(C)
    eigenvalues, E = eigenvalues[::-1], E[:, ::-1] * column_signs(E[:, ::-1])
    rank = numerical_rank(eigenvalues, mean)
    if rank == 0:
        raise ParameterError("mixture: every channel is silent or constant; nothing to separate")
    return eigenvalues, E, rank


def choose_n_sources(n_sources: int | None, n_channels: int, rank: int) -> tuple[int, int | None]:
    """Sources to separate, and the channel count when it was reduced to the rank (else None).

    None means one source per channel, or the rank with a :class:`UserWarning` when silent,
    constant or duplicated channels make the covariance singular; an explicit ``n_sources``
    above the rank is refused.
    """
    if n_sources is None:
        if rank < n_channels:
            warnings.warn(
                f"the mixture has rank {rank} for {n_channels} channels (silent, constant or "
                f"duplicated channels); separating {rank} sources instead of {n_channels}",
                UserWarning,
                stacklevel=3,
            )
            return rank, n_channels
        return n_channels, None
    if n_sources > rank:
        raise ParameterError(
            f"-n/--sources {n_sources} is more than the rank {rank} of the {n_channels}-channel "
            f"input (silent, constant or duplicated channels); expected at most {rank}"
        )
    return int(n_sources), None


def numerical_rank(eigenvalues: np.ndarray, mean: np.ndarray) -> int:
    """Numerical rank of a channel covariance from its eigenvalues (any order) and the mean.

    An eigenvalue counts when it exceeds both ``RANK_RTOL`` times the largest and the round-off
    floor that centring leaves (see :data:`CENTRING_ULPS`); 0 means every channel is constant.
    """
    d_max = float(np.max(eigenvalues))
    centring_floor = (CENTRING_ULPS * np.finfo(np.float64).eps * float(np.max(np.abs(mean)))) ** 2
    floor = max(RANK_RTOL * d_max, centring_floor)
    return int(np.count_nonzero(eigenvalues > floor)) if d_max > 0 else 0


def _check_n_sources(n_sources: int | None, n_channels: int) -> int | None:
    if n_sources is None:
        return None
    if isinstance(n_sources, bool) or not isinstance(n_sources, (int, np.integer)):
        raise ParameterError(f"-n/--sources {n_sources!r} is invalid; expected an integer ≥ 1")
    n_sources = int(n_sources)
    if n_sources < 1:
        raise ParameterError(f"-n/--sources {n_sources} is invalid; expected an integer ≥ 1")
    if n_sources > n_channels:
        raise ParameterError(
            f"-n/--sources {n_sources} is more than the {n_channels} channel(s) of the input; a linear "
            "unmixing needs at least as many channels as sources (for fewer channels try `demix nmf`)"
        )
    return n_sources


def column_signs(A: np.ndarray) -> np.ndarray:
    """Signs ``(n_columns,)`` that make each column's largest-magnitude entry positive.

    Blind separation leaves every source's sign free; fixing it this way makes results
    deterministic (used for principal axes and for the mixing columns of every linear method).
    """
    signs = np.sign(A[np.argmax(np.abs(A), axis=0), np.arange(A.shape[1])])
    signs[signs == 0] = 1.0
    return signs


#: float64 values per block of the passes over the input (512 KiB: a core's L2 cache).
PASS_VALUES = 1 << 16


def blocks(n_samples: int, size: int) -> range:
    """Start indices of consecutive blocks of ``size`` samples."""
    return range(0, n_samples, max(1, size))


def mean_and_covariance(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and covariance ``(X - μ)(X - μ)^T / T`` in float64, in one pass.

    The samples are shifted by the mean of the first block before the sums are taken, so the
    final correction ``C = Σ(x - c)(x - c)^T / T - (μ - c)(μ - c)^T`` subtracts two small terms
    rather than two large ones (no cancellation from a DC offset).
    """
    n, T = X.shape
    size = PASS_VALUES // n
    shift = X[:, :size].mean(axis=1, dtype=np.float64)
    buf = np.empty((n, min(T, size)))
    ones = np.ones(min(T, size))
    sums = np.zeros(n)
    C = np.zeros((n, n))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf are reported below
        for a in blocks(T, size):
            xb = X[:, a : a + size]
            k = xb.shape[1]
            centred = buf[:, :k]
            np.subtract(xb, shift[:, None], out=centred)
            sums += np.vecdot(centred, ones[:k])
            C += _gram(centred)
    offset = sums / T
    C = C / T - np.outer(offset, offset)
    mean = shift + offset
    if not (np.all(np.isfinite(C)) and np.all(np.isfinite(mean))):
        raise ParameterError("mixture: contains NaN or infinite values")
    return mean, C


def _gram(x: np.ndarray) -> np.ndarray:
    """``x @ x.T`` for a few long rows: OpenBLAS's syrk is 2-6x slower than row-pair dot
    products up to about six rows (measured, 64 Ki values per block)."""
    if x.shape[0] <= 6:
        return np.vecdot(x[:, None, :], x[None, :, :])
    return x @ x.T


def whitened_blocks(X: np.ndarray, mean: np.ndarray, K: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``Z = K (X - μ)`` in ``dtype``, computed in float64 block by block."""
    n, T = X.shape
    m = K.shape[0]
    size = PASS_VALUES // n
    Z: np.ndarray = np.empty((m, T), dtype=dtype)
    buf = np.empty((n, min(T, size)))
    out = np.empty((m, min(T, size)))
    for a in blocks(T, size):
        xb = X[:, a : a + size]
        centred = buf[:, : xb.shape[1]]
        np.subtract(xb, mean[:, None], out=centred)
        np.matmul(K, centred, out=out[:, : xb.shape[1]])
        Z[:, a : a + xb.shape[1]] = out[:, : xb.shape[1]]
    return Z
