"""BSS Eval v4: demix.bss_eval_v4 against museval (``evaluate(..., mode="v4")``) on the same input.

Run with ``.venv/bin/python benchmarks/bench_eval_v4.py`` (about a minute; ``--quick`` only runs
the MUSDB excerpt). Cases, all stereo images at 44.1 kHz, 1 s frames (``win = hop = 44100``,
museval's default), 512-tap filters:

* the MUSDB18 excerpt of ``../shared/data/museval_musdb18_sample`` with museval's own regression
  estimates (uniform noise; targets vocals and accompaniment), skipped if the folder is absent;
* 60 s of synthetic music-like images, 2 targets and 4 targets (MUSDB's vocals/drums/bass/other
  layout), whose estimates are filtered targets with leakage and noise.

Reported per tool: wall time (best of :data:`REPEATS` runs after a warm-up), the ratio museval /
demix, the largest |difference| from museval in dB over SDR/ISR/SIR/SAR and all frames (NaN
frames must coincide), and the peak memory allocated during one call (``tracemalloc``: numpy
arrays and Python objects, not BLAS buffers), input excluded.

museval is imported normally when it can be (its import chain, musdb -> stempeg, needs ``ffmpeg``
and ``ffprobe`` on PATH); otherwise its ``metrics.py`` is loaded on its own and called exactly as
``museval.evaluate`` calls it (no padding is needed: lengths are equal). Both use the same BLAS;
on a machine shared with other jobs, ``OPENBLAS_NUM_THREADS=1`` makes the timings steadier.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.signal

from demix.bss_eval_v4 import METRICS, bss_eval_v4

REPEATS = 2
RATE = 44100
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "museval_musdb18_sample"

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (refs, ests) -> (4, n_targets, n_frames)


def demix_runner(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # silent frames are expected in music
        scores = bss_eval_v4(refs, ests, window=RATE, hop=RATE)
    return np.stack([getattr(scores, name) for name in METRICS])


def museval_runner() -> tuple[Runner, str]:
    """museval's v4 evaluation on demix-shaped arrays, and how museval was reached."""
    try:
        import museval

        def run(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
            out = museval.evaluate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), win=RATE, hop=RATE)
            return np.stack(out)

        return run, "museval.evaluate"
    except (ImportError, RuntimeError) as exc:  # stempeg raises RuntimeError without ffmpeg
        reason = f"{type(exc).__name__}: {str(exc)[:50]}"
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("museval is not installed: nothing to compare with")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("museval_metrics_peer", path)
    assert module_spec is not None and module_spec.loader is not None
    metrics = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(metrics)

    def run_metrics(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
        out = metrics.bss_eval(  # museval.evaluate's call for mode="v4"
            refs.transpose(0, 2, 1),
            ests.transpose(0, 2, 1),
            compute_permutation=False,
            window=RATE,
            hop=RATE,
            framewise_filters=False,
            bsseval_sources_version=False,
        )
        return np.stack(out[:4])

    return run_metrics, f"museval/metrics.py loaded directly (import museval: {reason})"


# --- deterministic inputs --------------------------------------------------------------------


def musdb_case() -> tuple[np.ndarray, np.ndarray] | None:
    """museval's test_track_scores: real stems, np.random.seed(0) uniform-noise estimates."""
    import soundfile as sf

    if not DATA.is_dir():
        return None
    stems = {
        n: sf.read(DATA / f"{n}.flac", dtype="float64")[0].T for n in ("vocals", "drums", "bass", "other")
    }
    refs = np.stack([stems["vocals"], stems["drums"] + stems["bass"] + stems["other"]])
    np.random.seed(0)  # museval's recipe, global RNG on purpose
    voc = np.random.random((refs.shape[2], 2))
    acc = np.random.random((refs.shape[2], 2))
    return refs, np.stack([voc.T, acc.T])


def synthetic_case(n_targets: int, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coloured, amplitude-modulated, panned stereo images; estimates are filtered targets plus
    leakage from the other targets and noise. Target 0 pauses for 3 s (NaN frames, as vocals do)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    refs = np.empty((n_targets, 2, n))
    for j in range(n_targets):
        colour = scipy.signal.lfilter([1.0], [1.0, -0.95 + 0.3 * j / n_targets], rng.standard_normal(n))
        mono = (0.6 + 0.4 * np.sin(2 * np.pi * (0.2 + 0.1 * j) * t + j)) * colour / colour.std()
        pan = rng.uniform(0.2, 0.8)
        refs[j] = np.stack([np.sqrt(pan) * mono, np.sqrt(1 - pan) * mono])
    refs[0, :, 10 * RATE : 13 * RATE] = 0.0
    ests = np.empty_like(refs)
    for j in range(n_targets):
        fir = rng.standard_normal(32) * np.exp(-np.arange(32) / 6.0)
        ests[j] = scipy.signal.lfilter(fir, [1.0], refs[j], axis=-1)
        ests[j] += 0.3 * (refs.sum(axis=0) - refs[j]) / max(n_targets - 1, 1)
        ests[j] += 0.05 * rng.standard_normal((2, n))
    return refs, ests


# --- measuring --------------------------------------------------------------------------------


def measure(run: Runner, refs: np.ndarray, ests: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(best wall time s, peak MiB of one call, scores)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run(refs, ests)  # also the warm-up
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    best, out = np.inf, None
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = run(refs, ests)
        best = min(best, time.perf_counter() - start)
    assert out is not None
    return best, peak, out


def max_diff(ours: np.ndarray, theirs: np.ndarray) -> str:
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        return "NaN frames differ"
    finite = np.isfinite(ours) & np.isfinite(theirs)
    return f"{np.max(np.abs(ours[finite] - theirs[finite])):.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the MUSDB excerpt")
    args = parser.parse_args()
    peer, how = museval_runner()
    print(f"peer: {how}")
    print(
        f"1 s frames at {RATE} Hz, 512 taps; best of {REPEATS} runs after a warm-up; "
        f"{os.cpu_count()} CPU(s), BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
    )
    cases: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray] | None]]] = [
        ("MUSDB excerpt 2 tgt 6.8 s", musdb_case)
    ]
    if not args.quick:
        cases += [
            ("synthetic 2 tgt 60 s", lambda: synthetic_case(2, 60.0)),
            ("synthetic 4 tgt 60 s", lambda: synthetic_case(4, 60.0)),
        ]
    header = f"{'case':<27}{'tool':<9}{'time s':>9}{'museval/this':>14}{'peak MiB':>10}{'max|ΔdB|':>12}"
    print(header)
    print("-" * len(header))
    for name, make in cases:
        data = make()
        if data is None:
            print(f"{name:<27}skipped: {DATA} not found")
            continue
        refs, ests = data
        t_ours, m_ours, ours = measure(demix_runner, refs, ests)
        t_peer, m_peer, theirs = measure(peer, refs, ests)
        diff = max_diff(ours, theirs)
        print(f"{name:<27}{'demix':<9}{t_ours:>9.3f}{t_peer / t_ours:>13.1f}x{m_ours:>10.1f}{diff:>12}")
        print(f"{'':<27}{'museval':<9}{t_peer:>9.3f}{1.0:>13.1f}x{m_peer:>10.1f}{'—':>12}", flush=True)


if __name__ == "__main__":
    main()
