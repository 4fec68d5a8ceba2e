"""Frequency-domain IVA side by side: demix's iva against pyroomacoustics and ssspy, same rooms.

Run with ``.venv/bin/python benchmarks/bench_iva.py`` (about 15 minutes on 2 cores;
``--quick`` runs one room per table in about 3). Needs ``../shared/data`` and pyroomacoustics.

Rooms are simulated with :mod:`demix.rooms` (image-source method, RT60 calibrated on the
simulated responses): a 6 x 5 x 3 m room, microphones 5 cm apart on a line at 1.5 m height near
the middle of the room, speakers 1.5-2 m away, at least 45 degrees apart in front of the array,
real speech cut to 8 s (LibriSpeech readers ``libri1``/``libri2`` male and ``libri3`` female; CMU
ARCTIC ``aew`` male and ``axb`` female, three sentences each concatenated). Every method gets the
same mixture and the same STFT (demix's: Hann, 4096 points, hop 1024, unless a row says otherwise)
and returns each source projected back onto microphone 0, which is scored with BSS Eval v3
(``demix.metrics.bss_eval_sources``, 512 taps) against that speaker's image at microphone 0.

Tables:

1. 2 speakers x 2 microphones, RT60 0.3 s: 4 speaker pairs x 2 placements.
2. 3 x 3, RT60 0.3 s: 3 placements; randomised methods (ILRMA's NMF initialisation) with seeds
   0-4 on each, reporting the worst seed as well as the mean.
3. The spread over rooms: RT60 0.2, 0.45 and 0.6 s, a smaller (4 x 3.5 x 2.7 m) and a larger
   (9 x 7 x 3.5 m) room, and 10 cm spacing, 2 x 2.

Per method: mean and minimum SDR over the rooms (and seeds), "x real time" = total audio seconds
divided by total wall time (STFT, separation and inverse STFT included; one untimed warm-up run
first), and peak memory of one run (tracemalloc, numpy arrays included, BLAS buffers not). The
machine is shared with other work, so compare the ratio of two rows, not absolute speeds.
Peers run at their defaults except the number of iterations where said (pyroomacoustics AuxIVA
and ILRMA: 20 iterations, ILRMA 2 bases; ssspy: IP2, 30 iterations, ILRMA 8 bases).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from demix.methods.iva import iva
from demix.metrics import bss_eval_sources
from demix.rooms import linear_array, place_sources, room_images
from demix.spectral import istft, stft

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RATE, SECONDS, N_FFT, HOP = 16000, 8.0, 4096, 1024
LIBRI = {
    "libri1": "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "libri2": "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "libri3": "librosa_data/libri3_198-209-0000_female_16k.wav",
}
ARCTIC = {
    "aew": [f"pyroomacoustics_samples/cmu_arctic_us_aew_a000{i}.wav" for i in (1, 2, 3)],
    "axb": [f"pyroomacoustics_samples/cmu_arctic_us_axb_a000{i}.wav" for i in (4, 5, 6)],
}
PAIRS = [("libri1", "libri3"), ("libri2", "libri3"), ("aew", "axb"), ("libri1", "libri2")]


# --- rooms -----------------------------------------------------------------------------------


def speech(name: str) -> np.ndarray:
    files = [LIBRI[name]] if name in LIBRI else ARCTIC[name]
    x = np.concatenate([sf.read(DATA / f)[0] for f in files])
    return x / np.std(x)


@dataclass(frozen=True)
class Scene:
    label: str
    images: np.ndarray  # (n_src, n_mics, n_samples)


def scene(
    names: tuple[str, ...],
    seed: int,
    *,
    rt60: float = 0.3,
    room: tuple[float, float, float] = (6.0, 5.0, 3.0),
    spacing: float = 0.05,
) -> Scene:
    sigs = [speech(n) for n in names]
    n = min(int(SECONDS * RATE), *(len(s) for s in sigs))
    S = np.stack([s[:n] for s in sigs])
    rng = np.random.default_rng(seed)
    centre = [room[0] / 2 + rng.uniform(-0.5, 0.5), room[1] / 2 + rng.uniform(-0.5, 0.5), 1.5]
    mics = linear_array(len(names), spacing, centre)
    pos = place_sources(
        len(names), centre, list(room), rng, min_distance=1.5, max_distance=2.0, min_separation_deg=45.0
    )
    images = room_images(S, RATE, room=list(room), rt60=rt60, mics=mics, positions=pos).images
    label = f"{'+'.join(names)} #{seed} rt{rt60} {'x'.join(f'{r:g}' for r in room)} {spacing * 100:g}cm"
    return Scene(label, images)


# --- the contenders: each maps a mixture (M, n) to estimates at mic 0 (K, n) ----------------

Runner = Callable[[np.ndarray], np.ndarray]


def ours(**kw: object) -> Runner:
    def run(X: np.ndarray) -> np.ndarray:
        return iva(X, RATE, **kw).images[:, 0]  # type: ignore[arg-type]

    return run


def _spectra(X: np.ndarray, n_fft: int = N_FFT) -> np.ndarray:
    return stft(X, n_fft, n_fft // 4)  # (M, F, N)


def pra_runner(algorithm: str, n_fft: int = N_FFT, **kw: object) -> Runner:
    import pyroomacoustics as pra

    fn = {"auxiva": pra.bss.auxiva, "ilrma": pra.bss.ilrma, "fastmnmf2": pra.bss.fastmnmf2}[algorithm]

    def run(X: np.ndarray) -> np.ndarray:
        S = _spectra(X, n_fft).transpose(2, 1, 0)  # (N, F, M)
        Y = fn(S, **kw)
        return istft(np.asarray(Y).transpose(2, 1, 0), n_fft, n_fft // 4, X.shape[1])

    return run


def ssspy_runner(kind: str, seed: int = 0) -> Runner:
    from ssspy.bss.ilrma import GaussILRMA
    from ssspy.bss.iva import AuxLaplaceIVA

    def run(X: np.ndarray) -> np.ndarray:
        if kind == "auxiva":
            model = AuxLaplaceIVA(spatial_algorithm="IP2", record_loss=False)
        else:
            model = GaussILRMA(
                n_basis=8, spatial_algorithm="IP2", record_loss=False, rng=np.random.default_rng(seed)
            )
        Y = model(_spectra(X), n_iter=30)
        return istft(np.asarray(Y), N_FFT, HOP, X.shape[1])

    return run


def fastica_runner() -> Runner:
    from demix.methods.fastica import fastica

    def run(X: np.ndarray) -> np.ndarray:
        return fastica(X, seed=0).sources

    return run


# --- measuring -------------------------------------------------------------------------------


def peak_mb(run: Runner, X: np.ndarray) -> float:
    tracemalloc.start()
    try:
        run(X)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def measure(name: str, runs: list[Runner], scenes: list[Scene]) -> tuple[str, list[float], float, float]:
    """Runs every runner (seeds) on every scene: SDRs (one mean per scene and runner), x RT, MB."""
    memory = peak_mb(runs[0], scenes[0].images.sum(0))
    sdrs, seconds, audio = [], 0.0, 0.0
    for sc in scenes:
        X = sc.images.sum(0)
        for run in runs:
            t0 = time.perf_counter()
            est = run(X)
            seconds += time.perf_counter() - t0
            audio += X.shape[1] / RATE
            sdrs.append(float(np.mean(bss_eval_sources(sc.images[:, 0], est).sdr)))
    return name, sdrs, audio / seconds, memory


def table(title: str, rows: list[tuple[str, list[float], float, float]], per_scene: int = 1) -> None:
    print(f"\n{title}")
    print(f"{'method':38s} {'mean SDR':>9s} {'min':>7s} {'x real time':>12s} {'peak MB':>8s}")
    for name, sdrs, speed, mb in rows:
        print(f"{name:38s} {np.mean(sdrs):9.2f} {np.min(sdrs):7.2f} {speed:12.1f} {mb:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one room per table")
    parser.add_argument("--fastmnmf", action="store_true", help="also pyroomacoustics FastMNMF2 (slow)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # every method single-threaded: the comparison is per core

    pairs = PAIRS[:1] if args.quick else PAIRS
    seeds = (0,) if args.quick else (0, 1)
    two = [scene(p, s) for p in pairs for s in seeds]
    print(f"{len(two)} rooms 2 x 2:", "; ".join(sc.label for sc in two))
    contenders: list[tuple[str, list[Runner]]] = [
        ("demix iva nmf (default)", [ours()]),
        ("demix iva gauss", [ours(model="gauss")]),
        ("demix iva laplace", [ours(model="laplace")]),
        ("demix iva laplace 2048", [ours(model="laplace", n_fft=2048)]),
        ("demix iva nmf 2048", [ours(n_fft=2048)]),
        ("pyroomacoustics AuxIVA", [pra_runner("auxiva")]),
        ("pyroomacoustics AuxIVA 2048", [pra_runner("auxiva", n_fft=2048)]),
        ("pyroomacoustics ILRMA", [pra_runner("ilrma")]),
        ("pyroomacoustics ILRMA 2048", [pra_runner("ilrma", n_fft=2048)]),
        ("ssspy AuxIVA-IP2 (Laplace)", [ssspy_runner("auxiva")]),
        ("ssspy ILRMA-IP2", [ssspy_runner("ilrma")]),
        ("time-domain FastICA (demix ica)", [fastica_runner()]),
    ]
    if args.fastmnmf:
        contenders.append(("pyroomacoustics FastMNMF2", [pra_runner("fastmnmf2")]))
    table("2 speakers x 2 mics, RT60 0.3 s", [measure(n, r, two) for n, r in contenders])

    three = [scene(("libri1", "libri2", "libri3"), s) for s in ((0,) if args.quick else (0, 1, 2))]
    seeds5 = range(5)
    contenders3 = [
        ("demix iva nmf (default), seeds 0-4", [ours(seed=s) for s in seeds5]),
        ("demix iva gauss", [ours(model="gauss")]),
        ("demix iva laplace", [ours(model="laplace")]),
        ("demix iva nmf, update ip, seed 0", [ours(update="ip")]),
        ("pyroomacoustics AuxIVA", [pra_runner("auxiva")]),
        ("pyroomacoustics ILRMA (unseeded) x5", [pra_runner("ilrma") for _ in seeds5]),
        ("ssspy ILRMA-IP2, seeds 0-4", [ssspy_runner("ilrma", s) for s in seeds5]),
    ]
    table(
        "3 speakers x 3 mics, RT60 0.3 s (min over rooms and seeds)",
        [measure(n, r, three) for n, r in contenders3],
    )

    spread = [
        scene(("libri1", "libri3"), 0, rt60=0.2),
        scene(("libri1", "libri3"), 0, rt60=0.45),
        scene(("libri1", "libri3"), 0, rt60=0.6),
        scene(("aew", "axb"), 1, rt60=0.6),
        scene(("libri2", "libri3"), 2, room=(4.0, 3.5, 2.7)),
        scene(("libri2", "libri3"), 2, room=(9.0, 7.0, 3.5)),
        scene(("libri1", "libri2"), 3, spacing=0.10),
    ]
    if args.quick:
        spread = spread[2:3]
    print("\nspread rooms:", "; ".join(sc.label for sc in spread))
    contenders_spread = [
        ("demix iva nmf (default)", [ours()]),
        ("demix iva gauss", [ours(model="gauss")]),
        ("demix iva laplace", [ours(model="laplace")]),
        ("pyroomacoustics AuxIVA", [pra_runner("auxiva")]),
        ("pyroomacoustics ILRMA", [pra_runner("ilrma")]),
    ]
    rows = [measure(n, r, spread) for n, r in contenders_spread]
    table("2 x 2 over RT60 0.2-0.6 s, room sizes and spacing", rows)
    print("\nper room (SDR):")
    for name, sdrs, _, _ in rows:
        print(f"  {name:36s}", " ".join(f"{s:6.2f}" for s in sdrs))


if __name__ == "__main__":
    main()
