"""Benchmark: demix KL-NMF against scikit-learn, and ``nmf_separate`` against librosa HPSS.

Run: ``.venv/bin/python benchmarks/bench_nmf.py [--seconds 60] [--iters 200] [--threads 1]
[--repeat 2] [--skip-separation]``

1. The magnitude spectrogram (n_fft 2048, hop 512) of a deterministic 60 s percussive/harmonic
   song (``benchmarks/songs.py``) is factorised with k = 16 by ``demix.methods.nmf.beta_nmf``
   (β = 1) and by ``sklearn.decomposition.NMF(solver="mu", beta_loss="kullback-leibler")``,
   both from the same ``W0, H0`` (``nmf_init``) for the same number of iterations (tol = 0).
   Reported: time per iteration, peak traced memory (tracemalloc, a separate short run) and
   the final KL divergence (same float64 formula for both); then the ratios.
2. The song is separated by ``nmf_separate(group="percussive-harmonic")`` and by
   ``librosa.effects.hpss``; SDR of each stem by ``demix.metrics`` (BSS Eval v3, as ``demix eval``).

BLAS threads are limited to ``--threads`` (default 1) for both libraries: on a shared machine
multi-threaded OpenBLAS with an inner dimension of 16 can be an order of magnitude slower
than one thread, which would measure the contention rather than the algorithms.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import librosa
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from songs import make_song

from demix.methods.nmf import beta_divergence, beta_nmf, nmf_init
from demix.methods.nmf_separate import nmf_separate

N_FFT, HOP, K = 2048, 512, 16


def _ours(V: np.ndarray, W0: np.ndarray, H0: np.ndarray, iters: int) -> tuple[Any, Any]:
    del W0, H0  # beta_nmf starts from nmf_init(V, K, seed=0) itself
    res = beta_nmf(V, K, beta=1.0, max_iter=iters, tol=0.0, init="random", seed=0)
    return res.W, res.H


def _sklearn(V: np.ndarray, W0: np.ndarray, H0: np.ndarray, iters: int) -> tuple[Any, Any]:
    from sklearn.decomposition import NMF

    # sklearn updates its W, then its H: factorising V.T makes that our H, then our W.
    model = NMF(K, solver="mu", beta_loss="kullback-leibler", init="custom", max_iter=iters,
                tol=0.0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Ht = model.fit_transform(V.T, W=np.ascontiguousarray(H0.T), H=np.ascontiguousarray(W0.T))
    return model.components_.T, Ht.T


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def _peak_mib(fn: Callable[..., Any], *args: Any) -> float:
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def _sdr(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """SDR of estimate i against reference i: BSS Eval v3 as ``demix eval`` computes it."""
    from demix.metrics import bss_eval_pairwise

    return np.diagonal(bss_eval_pairwise(ref, est).sdr)


def bench_factorisation(V: np.ndarray, iters: int, repeat: int) -> None:
    W0, H0 = nmf_init(V, K, beta=1.0, init="random", seed=0)
    print(f"\nKL-NMF, V {V.shape[0]}x{V.shape[1]}, k={K}, {iters} iterations, same W0/H0")
    print(f"(time: best of {repeat} interleaved runs; memory: tracemalloc peak over 10 iterations)")
    print(f"{'':10s} {'ms/iter':>9s} {'peak MiB':>9s} {'final KL':>14s}")
    runs = {"demix": _ours, "sklearn": _sklearn}
    best = dict.fromkeys(runs, np.inf)
    result = {}
    for _ in range(repeat):  # interleaved, so a change of machine load hits both
        for name, fn in runs.items():
            dt, result[name] = _timed(fn, V, W0, H0, iters)
            best[name] = min(best[name], dt)
    rows = {}
    for name, fn in runs.items():
        W, H = result[name]
        mem = _peak_mib(fn, V, W0, H0, min(iters, 10))
        div = beta_divergence(V, W @ H, 1.0)
        rows[name] = (best[name] / iters * 1e3, mem, div)
        print(f"{name:10s} {rows[name][0]:9.2f} {mem:9.1f} {div:14.6g}")
    (t_d, m_d, d_d), (t_s, m_s, d_s) = rows["demix"], rows["sklearn"]
    print(f"ratios (sklearn / demix): time {t_s / t_d:.1f}x, memory {m_s / m_d:.1f}x; "
          f"divergence demix/sklearn - 1 = {d_d / d_s - 1:+.2e}")  # fmt: skip


def bench_separation(song: Any) -> None:
    ref = np.stack([song.percussive, song.harmonic])
    x = song.mixture[None, :]
    print("\nPercussive/harmonic separation, SDR in dB (percussive, harmonic)")
    runs: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("nmf k=16", lambda: nmf_separate(x, song.sample_rate).sources),
        ("nmf k=32", lambda: nmf_separate(x, song.sample_rate, n_components=32).sources),
        (
            "nmf k=16 no refine",
            lambda: nmf_separate(x, song.sample_rate, refine_transients=False).sources,
        ),
        ("librosa hpss", lambda: np.stack(librosa.effects.hpss(song.mixture)[::-1])),
    ]
    for name, run in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt, est = _timed(run)
        sdr = _sdr(ref, est)
        print(f"{name:20s} {sdr[0]:6.2f} {sdr[1]:6.2f}   ({dt:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-separation", action="store_true")
    args = parser.parse_args()
    song = make_song(args.seconds, 22050, seed=0)
    V = np.abs(librosa.stft(song.mixture, n_fft=N_FFT, hop_length=HOP))
    print(f"song: {args.seconds:g} s at 22050 Hz, BLAS threads: {args.threads}")
    with threadpool_limits(args.threads):
        bench_factorisation(V, args.iters, args.repeat)
        if not args.skip_separation:
            bench_separation(song)


if __name__ == "__main__":
    main()
