"""Benchmark: ``demix.methods.repet`` (REPET-SIM) against librosa's vocal-separation recipe.

Run: ``.venv/bin/python benchmarks/bench_repet.py [--threads 1] [--repeat 3] [--long 300]
[--plots DIR]``

1. **MUSDB excerpt** (``../shared/data/museval_musdb18_sample``, 6.8 s, 44.1 kHz stereo): the
   input is ``mixture.flac`` (AAC-encoded on its own, so not exactly the sum of the stems); the
   references are ``vocals`` and ``drums + bass + other``. Every estimate is scored by BSS Eval v3
   (``demix.metrics.bss_eval_sources``) on the channel mean, stems in the contract's order. The
   peer is the librosa gallery's "Vocal separation" recipe on the channel mean: nearest-neighbour
   median filter (``librosa.decompose.nn_filter``, cosine, neighbours ≥ 2 s apart), then soft
   masks with margins 2 (background) and 10 (foreground), power 2. demix gets the stereo mixture
   (stereo stems out). Rows: the mixture itself as both stems, the recipe, demix with the
   defaults, ``--mask binary``, ``--refine nmf``. Time: the best of ``--repeat`` runs after an
   untimed warm-up, as a real-time factor and relative to the recipe; peak memory: tracemalloc
   in the warm-up run (numpy arrays, not BLAS buffers).
2. **Other music** (``librosa_data``, no references): the defaults on every song and a few
   speech files: the repetition structure that decides the warning (and the commonest distance
   between similar frames), the share of the magnitude explained, and the stems' energy shares.
   ``--plots DIR`` saves each spectrogram with its vocal mask as a PNG.
3. ``--long S``: a deterministic S-second stereo input (the excerpt repeated with random gains
   and a noise floor) to time the O(N²) similarity; demix only.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from demix.methods.repet import repet
from demix.metrics import bss_eval_sources

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MUSDB = DATA / "museval_musdb18_sample"
OTHER = [
    "fishin_0-10s_22k.wav",
    "vibeace_0-10s_22k.wav",
    "brahms_hungarian_dance5_0-10s_44k_stereo.wav",
    "nutcracker_2-12s_22k.wav",
    "humpback_0-10s_22k.wav",
    "trumpet_22k.wav",
    "libri1_5703-47212-0000_male_16k.wav",
    "libri3_198-209-0000_female_16k.wav",
]


def _read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, always_2d=True)
    return np.ascontiguousarray(data.T), int(rate)


def librosa_recipe(y: np.ndarray, rate: int) -> np.ndarray:
    """The librosa gallery's vocal separation on a mono signal: (vocals, accompaniment)."""
    S_full, phase = librosa.magphase(librosa.stft(y))
    S_filter = librosa.decompose.nn_filter(
        S_full, aggregate=np.median, metric="cosine", width=int(librosa.time_to_frames(2, sr=rate))
    )
    S_filter = np.minimum(S_full, S_filter)
    mask_i = librosa.util.softmask(S_filter, 2 * (S_full - S_filter), power=2)
    mask_v = librosa.util.softmask(S_full - S_filter, 10 * S_filter, power=2)
    n = y.shape[-1]
    return np.stack(
        [librosa.istft(mask_v * S_full * phase, length=n), librosa.istft(mask_i * S_full * phase, length=n)]
    )


def _timed(fn: Callable[[], np.ndarray], repeat: int) -> tuple[np.ndarray, float, float]:
    """(result, best time in s, peak traced MiB of the warm-up run)."""
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best, peak


def bench_musdb(repeat: int) -> None:
    mixture, rate = _read(MUSDB / "mixture.flac")
    vocals = _read(MUSDB / "vocals.flac")[0]
    accompaniment = sum(_read(MUSDB / f"{s}.flac")[0] for s in ("drums", "bass", "other"))
    reference = np.stack([vocals.mean(axis=0), accompaniment.mean(axis=0)])
    seconds = mixture.shape[1] / rate
    mono = mixture.mean(axis=0)

    def demix_run(**kw: object) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return repet(mixture, rate, **kw).stems.mean(axis=1)  # type: ignore[arg-type]

        return run

    rows: list[tuple[str, Callable[[], np.ndarray] | None]] = [
        ("mixture as both stems", None),
        ("librosa recipe (mono)", lambda: librosa_recipe(mono, rate)),
        ("demix repet (defaults)", demix_run()),
        ("demix repet --mask binary", demix_run(mask="binary")),
        ("demix repet --refine nmf", demix_run(refine="nmf")),
    ]
    print(f"MUSDB excerpt: mixture.flac, {seconds:.2f} s, {rate} Hz stereo; SDR on the channel mean")
    head = ("vocals", "accomp", "time s", "x real", "vs rec")
    print(f"{'method':28s} " + " ".join(f"{h:>7s}" for h in head) + f" {'MiB':>6s}")
    recipe_time = np.nan
    for name, fn in rows:
        if fn is None:
            est, t, peak = np.stack([mono, mono]), np.nan, np.nan
        else:
            est, t, peak = _timed(fn, repeat)
        if name.startswith("librosa"):
            recipe_time = t
        sdr = bss_eval_sources(reference, est).sdr
        print(
            f"{name:28s} {sdr[0]:7.2f} {sdr[1]:7.2f} {t:7.3f} {seconds / t:7.1f} "
            f"{recipe_time / t:7.2f} {peak:6.0f}"
        )


def bench_other(plots: Path | None) -> None:
    print("\nOther inputs (no references), demix defaults:")
    print(f"{'file':46s} {'struct':>6s} {'lag s':>5s} {'warns':>5s} {'expl':>5s} {'voc E':>5s} {'acc E':>5s}")
    for name in OTHER:
        path = DATA / "librosa_data" / name
        if not path.exists():
            continue
        x, rate = _read(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = repet(x, rate)
        warned = any("does not fit" in str(w.message) for w in caught)
        d, f = result.diagnostics, result.facts
        print(
            f"{name:46s} {d['repetition_structure']:6.2f} {d['repeat_lag_s']:5.2f} {warned!s:>5s} "
            f"{d['explained_share']:5.2f} {f[0]['energy_share']:5.2f} {f[1]['energy_share']:5.2f}"
        )
        if plots is not None:
            _plot(x, rate, result.stems[0], plots / f"repet_{path.stem}.png", d["repetition_structure"])


def _plot(x: np.ndarray, rate: int, vocals: np.ndarray, out: Path, fit: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.abs(librosa.stft(x.mean(axis=0), n_fft=2048, hop_length=512))
    Y = np.abs(librosa.stft(vocals.mean(axis=0), n_fft=2048, hop_length=512))
    top = int(8000 / (rate / 2) * X.shape[0])
    fig, ax = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax[0].imshow(librosa.amplitude_to_db(X[:top], ref=np.max), origin="lower", aspect="auto", cmap="magma")
    ax[0].set_title(f"{out.stem}: mixture, 0-8 kHz")
    ratio = np.clip(Y[:top] / np.maximum(X[:top], 1e-9), 0, 1)
    ax[1].imshow(ratio, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="gray")
    ax[1].set_title(f"|vocals| / |mixture| (white: voice), repetition structure {fit:.2f}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)


def bench_long(seconds: float) -> None:
    x, rate = _read(MUSDB / "mixture.flac")
    rng = np.random.default_rng(0)
    reps = int(np.ceil(seconds * rate / x.shape[1]))
    y = np.concatenate([x * rng.uniform(0.7, 1.0) for _ in range(reps)], axis=1)[:, : int(seconds * rate)]
    y = y + 1e-3 * rng.standard_normal(y.shape)
    repet(y[:, : rate * 5], rate)  # warm-up
    tracemalloc.start()
    t = time.perf_counter()
    result = repet(y, rate)
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        f"\nLong input: {seconds:g} s stereo at {rate} Hz: {elapsed:.1f} s ({seconds / elapsed:.1f}x real "
        f"time), peak {peak:.0f} MiB traced, search window {result.diagnostics['search_window_s']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--long", type=float, default=0.0, help="seconds of a long input to time (0: skip)")
    parser.add_argument("--plots", type=Path, default=None, help="folder for mask images")
    args = parser.parse_args()
    print(f"BLAS threads: {args.threads}")
    with threadpool_limits(args.threads):
        bench_musdb(args.repeat)
        bench_other(args.plots)
        if args.long > 0:
            bench_long(args.long)


if __name__ == "__main__":
    main()
