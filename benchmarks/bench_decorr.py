"""Benchmark of the second-order methods: lagged covariances and joint diagonalisation.

Input: a deterministic 8-channel, 60 s, 16 kHz mixture of Gaussian AR(2) sources with distinct
spectral peaks, mixed by a well-conditioned random matrix (condition number 4), and 100 lags.

Times the three ways of computing the 100 lagged covariance matrices -- FFT cross-spectra, the
cache-blocked matrix products of :mod:`demix.methods.lagged`, and one plain ``np.dot`` per lag
(the reference point) -- then the Jacobi joint diagonalisation (per sweep) and the whole of
:func:`demix.methods.sobi.sobi`, with the Amari index reached. No peer library ships SOBI in this
environment (scikit-learn has none), so there is no peer column.

Run: ``.venv/bin/python benchmarks/bench_decorr.py``
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np
from scipy.signal import lfilter

from demix.methods.jointdiag import joint_diagonalise
from demix.methods.lagged import LagMethod, lagged_covariances
from demix.methods.sobi import sobi
from demix.methods.whitening import whiten
from demix.metrics import amari_index

N_CHANNELS = 8
SAMPLE_RATE = 16_000
SECONDS = 60
LAGS = np.arange(1, 101)
REPEATS = 2  # best of, for the fast timings; the CPU is shared

R = TypeVar("R")


def _mixture(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sources with spectral peaks spread over (0, pi) and their ``(mixture, mixing)``."""
    rng = np.random.default_rng(seed)
    n = SAMPLE_RATE * SECONDS
    sources = []
    for freq in np.linspace(0.2, 2.9, N_CHANNELS):
        s = lfilter([1.0], [1.0, -1.8 * np.cos(freq), 0.81], rng.standard_normal(n + 500))[500:]
        sources.append(s / s.std())
    U, _ = np.linalg.qr(rng.standard_normal((N_CHANNELS, N_CHANNELS)))
    V, _ = np.linalg.qr(rng.standard_normal((N_CHANNELS, N_CHANNELS)))
    A = U @ np.diag(np.linspace(1.0, 4.0, N_CHANNELS)) @ V.T
    return A @ np.stack(sources), A


def _naive(Z: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """One ``np.dot`` over the whole signal per lag: the textbook computation."""
    T = Z.shape[1]
    C = np.empty((lags.size, Z.shape[0], Z.shape[0]))
    for k, lag in enumerate(lags):
        c = np.dot(Z[:, lag:], Z[:, : T - lag].T) / (T - lag)
        C[k] = (c + c.T) / 2
    return C


def _best_time(fn: Callable[[], R], repeats: int) -> tuple[float, R]:
    """Best wall time of ``repeats`` calls, and the last result."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return float(best), out


def main() -> None:
    X, A = _mixture()
    n_lags = LAGS.size
    print(
        f"bench_decorr: {N_CHANNELS} channels x {SECONDS} s x {SAMPLE_RATE} Hz "
        f"({X.shape[1]} samples), {n_lags} lags, numpy {np.__version__}, {os.cpu_count()} CPUs"
    )
    t_white, wh = _best_time(lambda: whiten(X), 1)
    Z = wh.whitened

    t_naive, C_ref = _best_time(lambda: _naive(Z, LAGS), 1)
    rows = [("np.dot per lag (reference)", t_naive, 0.0)]
    methods: tuple[LagMethod, ...] = ("fft", "matmul", "auto")
    for method in methods:
        t, C = _best_time(partial(lagged_covariances, Z, LAGS, method=method), REPEATS)
        rows.append((f"lagged_covariances {method}", t, float(np.max(np.abs(C - C_ref)))))
    C_auto = C  # the last one: what sobi uses

    print(f"\nwhitening: {t_white:.3f} s\n")
    print(
        f"{'lagged covariances':<30}{'total s':>9}{'ms/lag':>9}{'ms/chan':>9}{'vs dot':>8}{'max |err|':>11}"
    )
    for name, t, err in rows:
        print(
            f"{name:<30}{t:9.3f}{1e3 * t / n_lags:9.2f}{1e3 * t / N_CHANNELS:9.1f}"
            f"{t_naive / t:7.1f}x{err:11.1e}"
        )

    t_jd, (_, n_sweeps, max_angle) = _best_time(lambda: joint_diagonalise(C_auto, 100, 1e-8, None), REPEATS)
    t_sobi, result = _best_time(lambda: sobi(X, lags=LAGS), 1)
    assert result.model is not None
    amari = amari_index(result.model.unmixing @ A)
    print(
        f"\njoint diagonalisation: {n_sweeps} sweeps in {t_jd * 1e3:.1f} ms "
        f"({t_jd * 1e3 / n_sweeps:.2f} ms/sweep, {N_CHANNELS * (N_CHANNELS - 1) // 2} pairs), "
        f"last max angle {max_angle:.1e} rad"
    )
    print(f"sobi end to end: {t_sobi:.3f} s, Amari index {amari:.2e}")


if __name__ == "__main__":
    main()
