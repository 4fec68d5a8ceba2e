"""Time-lagged covariance matrices, the ``--lags`` syntax, and the off-diagonality measure.

Second-order methods (AMUSE, SOBI, least-squares decorrelation) see a mixture only through its
lagged covariances ``C_tau = E[z(t + tau) z(t)^T]``; this module computes many of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.fft

from demix.errors import ParameterError

LagMethod = Literal["auto", "fft", "matmul"]

_LAGS_EXPECTED = "expected positive integers and ranges such as '1-100', '1,2,5,10' or '1-10,20,50'"
_ITEM = re.compile(r"^\s*(\d{1,18})\s*(?:-\s*(\d{1,18})\s*)?$")

#: Most lags one ``--lags`` may name: ten thousand lagged covariances is far beyond what joint
#: diagonalisation gains from (the default is 100) and keeps a typo from allocating gigabytes.
MAX_LAGS = 10_000

#: Samples per time block in the ``matmul`` method: a block of 8 channels plus 100 lags of margin
#: is ~0.5 MB, which stays in a core's L2 cache while every lag reuses it.
_BLOCK = 8192

#: Cost of one FFT term (per transform, per sample, per factor of log2 of the length) in
#: multiply-adds of the blocked products, measured on one core; used by ``auto``.
_FFT_COST_RATIO = 12.0


def parse_lags(text: str, n_samples: int | None = None) -> np.ndarray:
    """Parse a ``--lags`` value into sorted unique positive lags.

    Parameters
    ----------
    text : str
        Comma-separated integers and inclusive ranges ``a-b``: ``"1-100"``, ``"1,2,5,10"``,
        ``"1-10,20,50"``. Spaces are ignored; duplicates are merged.
    n_samples : int, optional
        Signal length; every lag must be below it.

    Returns
    -------
    ndarray of int64, (n_lags,)
        Sorted, unique, all ``>= 1`` (and ``< n_samples`` when given).

    Raises
    ------
    ParameterError
        Empty, malformed, non-positive, reversed range, more than :data:`MAX_LAGS` lags, or a lag
        ``>= n_samples``; the message names ``--lags``, the value and what is expected. Ranges
        are counted before any array is built, so ``1-2000000000`` is refused at once.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"--lags: {text!r} is empty; {_LAGS_EXPECTED}")
    ranges: list[tuple[int, int]] = []
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ParameterError(f"--lags: {item.strip()!r} in {text!r} is malformed; {_LAGS_EXPECTED}")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if start < 1:
            raise ParameterError(f"--lags: {text!r} contains lag {start}; {_LAGS_EXPECTED}")
        if stop < start:
            raise ParameterError(f"--lags: range {item.strip()!r} in {text!r} is reversed; {_LAGS_EXPECTED}")
        if n_samples is not None and stop >= n_samples:
            raise ParameterError(
                f"--lags: lag {stop} in {text!r} is not below the signal length "
                f"({n_samples} samples); expected lags from 1 to {n_samples - 1}"
            )
        ranges.append((start, stop))
    count = sum(stop - start + 1 for start, stop in ranges)
    if count > MAX_LAGS:
        raise ParameterError(
            f"--lags: {text!r} names {count} lags; expected at most {MAX_LAGS} (the default is 1-100)"
        )
    return np.unique(np.concatenate([np.arange(a, b + 1, dtype=np.int64) for a, b in ranges]))


def check_lags(lags: str | Sequence[int] | np.ndarray, n_samples: int) -> np.ndarray:
    """Validate lags given as a ``--lags`` string or a sequence of integers.

    Returns sorted unique int64 lags in ``[1, n_samples)``; raises :class:`ParameterError`
    otherwise.
    """
    if isinstance(lags, str):
        return parse_lags(lags, n_samples)
    arr = np.asarray(lags)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ParameterError(f"--lags: {lags!r} is empty or not 1-D; {_LAGS_EXPECTED}")
    is_int = np.issubdtype(arr.dtype, np.integer)
    is_whole = np.issubdtype(arr.dtype, np.floating) and bool(np.all(arr == np.round(arr)))
    if not (is_int or is_whole):
        raise ParameterError(f"--lags: {lags!r} are not integers; {_LAGS_EXPECTED}")
    if arr.size > MAX_LAGS:
        raise ParameterError(f"--lags: {arr.size} lags; expected at most {MAX_LAGS}")
    arr = np.unique(arr.astype(np.int64))
    if arr[0] < 1:
        raise ParameterError(f"--lags: {arr[0]} is not positive; {_LAGS_EXPECTED}")
    if arr[-1] >= n_samples:
        raise ParameterError(
            f"--lags: lag {arr[-1]} is not below the signal length ({n_samples} samples); "
            f"expected lags from 1 to {n_samples - 1}"
        )
    return arr


def lagged_covariances(Z: np.ndarray, lags: np.ndarray, *, method: LagMethod = "auto") -> np.ndarray:
    r"""Symmetrised lagged covariance matrices of a (centred) signal.

    .. math::

        C_\tau = \frac{1}{T - \tau} \sum_{t=0}^{T-\tau-1} z(t+\tau)\, z(t)^T, \qquad
        \bar C_\tau = \tfrac12 (C_\tau + C_\tau^T)

    ``Z`` is used as given (centre it first); the normalisation by the number of products
    ``T - tau`` makes each matrix an unbiased estimate.

    Parameters
    ----------
    Z : ndarray, (n, n_samples)
    lags : ndarray of int, (n_lags,)
        Positive lags below ``n_samples`` (see :func:`check_lags`).
    method : {"auto", "fft", "matmul"}
        ``fft``: one real FFT per channel (zero-padded to ``T + max(lags)`` so nothing wraps),
        one inverse FFT per channel pair ``i <= j`` of the real part of the cross-spectrum
        ``Re(F_i \bar F_j)``, whose inverse transform is directly the symmetrised
        cross-correlation; cost ``O(n^2 T log T)`` whatever the number of lags; round-off
        ``~eps |z_i| |z_j|`` on each sum, so relative to ``C_0`` it grows as ``T / (T - tau)``.
        ``matmul``: for each block of 8192 samples and each lag, one ``(n, B) @ (B, n)`` product
        on data that stays in cache; cost ``O(n^2 T n_lags)``, exact to round-off.
        ``auto``: whichever a cost model says is cheaper: ``fft`` when
        ``n^2 n_lags > 12 (n + n(n+1)/2) log2(nfft)``. The constant 12 is the measured ratio of
        the two methods' per-operation speeds (``benchmarks/bench_decorr.py`` and a sweep over
        2-16 channels, 100-800 lags, one core): with 8 channels and 60 s at 16 kHz the cache-blocked
        products win up to ~170 lags (0.25-0.4 s against 0.7-1.0 s at 100 lags, and 10-25x faster than
        one plain ``np.dot`` per lag, which streams the whole signal from memory for every lag);
        the FFT wins beyond, its cost not growing with the number of lags.

    Returns
    -------
    ndarray, (n_lags, n, n)
        Symmetric matrices, ``out[k]`` for ``lags[k]``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    lags = np.asarray(lags, dtype=np.int64)
    C = lagged_products(Z, lags, method=method)
    C /= (Z.shape[1] - lags)[:, None, None]
    return C


def lagged_products(Z: np.ndarray, lags: np.ndarray, *, method: LagMethod = "auto") -> np.ndarray:
    r"""Unnormalised symmetrised lagged products :math:`\tfrac12 \sum_t (z(t+\tau) z(t)^T + z(t) z(t+\tau)^T)`
    over every pair of samples of ``Z`` ``(n, T)``, ``(n_lags, n, n)``; lags may reach ``T`` or beyond
    (their sums are then partial or zero). The sums of :func:`lagged_covariances`, which a pass over
    a long recording accumulates block by block (:func:`demix.streaming.statistics`).
    """
    Z = np.asarray(Z, dtype=np.float64)
    lags = np.asarray(lags, dtype=np.int64)
    if method == "auto":
        method = _cheaper_method(Z.shape[0], Z.shape[1], lags)
    if method == "fft":
        return _lagged_fft(Z, lags)
    if method == "matmul":
        return _lagged_matmul(Z, lags)
    raise ParameterError(f"method: {method!r} is not one of 'auto', 'fft', 'matmul'")


def _cheaper_method(n: int, n_samples: int, lags: np.ndarray) -> LagMethod:
    """The method the cost model of :func:`lagged_covariances` predicts to be faster."""
    nfft = scipy.fft.next_fast_len(n_samples + int(lags.max()), real=True)
    fft_cost = _FFT_COST_RATIO * (n + n * (n + 1) / 2) * np.log2(nfft)
    return "fft" if n * n * lags.size > fft_cost else "matmul"


def _lagged_fft(Z: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Unnormalised symmetrised lagged products via cross-spectra (see lagged_covariances)."""
    n, T = Z.shape
    nfft = scipy.fft.next_fast_len(T + int(lags.max()), real=True)
    F = scipy.fft.rfft(Z, n=nfft, axis=1)
    C = np.empty((lags.size, n, n))
    for i in range(n):
        # Re(F_i conj F_j) is the spectrum of the even part of r_ij: (r_ij(tau) + r_ji(tau)) / 2
        cross = F[i].real * F[i:].real + F[i].imag * F[i:].imag
        r = scipy.fft.irfft(cross, n=nfft, axis=1)[:, lags]
        C[:, i, i:] = r.T
        C[:, i:, i] = r.T
    return C


def _lagged_matmul(Z: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Unnormalised symmetrised lagged products by cache-blocked per-lag matrix products."""
    n, T = Z.shape
    max_lag = int(lags.max())
    # zero padding makes every lag sum over the same block, products past the end being 0
    Zp = np.concatenate([Z, np.zeros((n, max_lag))], axis=1)
    C = np.zeros((lags.size, n, n))
    for start in range(0, T, _BLOCK):
        stop = min(start + _BLOCK, T)
        Xb = Zp[:, start:stop]
        for k, lag in enumerate(lags):
            C[k] += Zp[:, start + lag : stop + lag] @ Xb.T
    return (C + C.transpose(0, 2, 1)) / 2


def off_diagonality(C: np.ndarray) -> float:
    r"""How far a set of matrices is from being jointly diagonal.

    .. math::

        \operatorname{off}(\{C_\tau\}) =
        \frac{\sum_\tau \sum_{i \ne j} (C_\tau)_{ij}^2}{\sum_\tau \lVert C_\tau \rVert_F^2}
        \in [0, 1]

    0 when every matrix is diagonal (the sources are uncorrelated at every lag), and invariant to
    a common scale. demix reports it for the whitened mixture (before) and for the separated
    sources (after), on the same lags.

    Parameters
    ----------
    C : ndarray, (n_lags, n, n)
    """
    total = float(np.sum(C**2))
    if total == 0.0:
        return 0.0
    diag = float(np.sum(np.diagonal(C, axis1=1, axis2=2) ** 2))
    return max(total - diag, 0.0) / total
