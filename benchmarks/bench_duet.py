"""More sources than microphones: demix duet against ssspy's cACGMM, same stereo mixtures.

Run with ``.venv/bin/python benchmarks/bench_duet.py`` (about five minutes on 2 cores, most of it
ssspy). Two deterministic anechoic stereo mixtures of real speech from ``../shared/data`` (the
three LibriSpeech readers and, fourth, CMU ARCTIC's aew; 10 s at 16 kHz, equal RMS), built with
``demix.rooms.pan_images``:

* three speakers panned at 25/45/65 degrees with inter-channel delays +2/0/-3 samples;
* four speakers panned at 10/30/55/80 degrees without delay.

Contenders, each given the true number of sources (``auto`` is shown separately for ours):

* ``demix duet`` with its three outputs: ``wiener`` (default), ``soft`` masks, ``binary`` masks;
* ``demix duet plain``: ``max_iter=0``, binary masks from the histogram's peaks (classic DUET,
  no EM), to show what the spatial mixture model buys;
* ssspy 0.2 ``CACGMM`` (Ito et al. 2016: per-frequency cACGMM, random start, its default
  posterior-score permutation alignment, 100 EM iterations, ``rng`` seeded), on the same STFT
  (demix.spectral, n_fft 2048, hop 512, demix's default at 16 kHz); its posterior masks are
  applied to both channels.

Quality is the issue's: BSS Eval v3 SDR (``demix.metrics.bss_eval_sources``) of each estimate's
channel 0 against that source's image at channel 0. Speed is wall time (demix: the best of
:data:`REPEATS` runs; ssspy, slow, runs once) and real-time factor (audio seconds per second of
computing); peak memory is what ``tracemalloc`` sees allocated during the first call (numpy
arrays, not BLAS's buffers). The machine is shared with other jobs, so absolute times are noisy;
the ratio is the number to read.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from demix.methods.duet import duet
from demix.metrics import bss_eval_sources
from demix.rooms import pan_images
from demix.spectral import apply_masks, stft

RATE = 16_000
SECONDS = 10.0
N_FFT, HOP = 2048, 512  # demix's default at 16 kHz (about 0.1 s), given to both
PEER_ITER = 100
REPEATS = 3  # demix's times are the best of three (the first under tracemalloc); ssspy runs once
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIBRI = [
    "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
]
ARCTIC = [f"pyroomacoustics_samples/cmu_arctic_us_aew_a000{i}.wav" for i in (1, 2, 3)]


def speakers(n: int) -> np.ndarray:
    length = int(SECONDS * RATE)
    voices = [sf.read(DATA / path)[0][:length] for path in LIBRI]
    voices.append(np.concatenate([sf.read(DATA / path)[0] for path in ARCTIC])[:length])
    S = np.stack(voices[:n])
    return 0.1 * S / S.std(axis=1, keepdims=True)


@dataclass(frozen=True)
class Mixture:
    name: str
    images: np.ndarray  # (n_sources, 2, n_samples)

    @property
    def mixture(self) -> np.ndarray:
        return self.images.sum(axis=0)


Runner = Callable[[np.ndarray, int], np.ndarray]  # (mixture, n_sources) -> images (n, 2, T)


def demix_runner(**kwargs: object) -> Runner:
    def run(X: np.ndarray, n: int) -> np.ndarray:
        return duet(X, RATE, n_sources=n, n_fft=N_FFT, hop=HOP, **kwargs).images  # type: ignore[arg-type]

    return run


def ssspy_runner(X: np.ndarray, n: int) -> np.ndarray:
    from ssspy.bss.cacgmm import CACGMM

    S = stft(X, N_FFT, HOP)
    model = CACGMM(n_sources=n, rng=np.random.default_rng(0))
    model(S, n_iter=PEER_ITER)
    return apply_masks(S, model.posterior, N_FFT, HOP, X.shape[1])


@dataclass
class Row:
    method: str
    seconds: float
    peak_mib: float
    sdr: np.ndarray


def measure(label: str, run: Runner, mix: Mixture, repeats: int = REPEATS) -> Row:
    """Peak memory from a first run under tracemalloc, time the best of ``repeats`` runs without it."""
    n = mix.images.shape[0]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        images = run(mix.mixture, n)
        seconds = time.perf_counter() - t0
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        run(mix.mixture, n)
        seconds = min(seconds, time.perf_counter() - t0)
    sdr = bss_eval_sources(mix.images[:, 0], images[:, 0]).sdr
    return Row(label, seconds, peak, sdr)


def main() -> None:
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs the shared real audio")
    mixtures = [
        Mixture("3 speakers, pan 25/45/65, delay +2/0/-3", pan_images(speakers(3), [25, 45, 65], [2, 0, -3])),
        Mixture("4 speakers, pan 10/30/55/80, no delay", pan_images(speakers(4), [10, 30, 55, 80])),
    ]
    duet(mixtures[0].mixture[:, :RATE], RATE)  # warm-up: librosa's first STFT compiles
    print(
        f"{SECONDS:g} s at {RATE} Hz, STFT {N_FFT}/{HOP}; ssspy CACGMM {PEER_ITER} iterations; "
        f"{os.cpu_count()} CPU(s), shared with other jobs; SDR of channel 0 (BSS Eval v3)"
    )
    header = (
        f"{'method':<22}{'time [s]':>9}{'x real time':>12}{'peak [MiB]':>11}  "
        f"{'SDR per source [dB]':<26}{'mean':>6}{'min':>6}"
    )
    verdicts = []
    for mix in mixtures:
        print(f"\n{mix.name}")
        print(header)
        print("-" * len(header))
        rows = [
            measure("demix duet (wiener)", demix_runner(), mix),
            measure("demix duet soft", demix_runner(mask="soft"), mix),
            measure("demix duet binary", demix_runner(mask="binary"), mix),
            measure("demix duet plain", demix_runner(mask="binary", max_iter=0), mix),
            measure("ssspy CACGMM", ssspy_runner, mix, repeats=1),
        ]
        for r in rows:
            per = " ".join(f"{v:5.1f}" for v in r.sdr)
            print(
                f"{r.method:<22}{r.seconds:>9.2f}{SECONDS / r.seconds:>11.1f}x{r.peak_mib:>11.0f}  "
                f"{per:<26}{np.mean(r.sdr):>6.1f}{np.min(r.sdr):>6.1f}"
            )
        ours, peer = rows[0], rows[-1]
        auto = duet(mix.mixture, RATE, n_fft=N_FFT, hop=HOP)
        print(f"n_sources='auto' finds {len(auto.sources)}: {auto.diagnostics['n_sources_rule']}")
        verdicts.append(
            f"{mix.name}: demix {np.mean(ours.sdr):.1f} dB mean / {np.min(ours.sdr):.1f} min vs ssspy "
            f"{np.mean(peer.sdr):.1f} / {np.min(peer.sdr):.1f}; {peer.seconds / ours.seconds:.0f}x faster"
        )
    print("\nfloors: mean SDR >= 6 dB (both mixtures), each >= 3 dB (three speakers); beat ssspy's cACGMM")
    for verdict in verdicts:
        print("  " + verdict)


if __name__ == "__main__":
    main()
