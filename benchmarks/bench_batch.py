"""Many files: ``demix ica DIR -j 2`` against ``-j 1``, and demix's per-file overhead in a batch.

Run with ``.venv/bin/python benchmarks/bench_batch.py [N]`` (a few minutes on 2 cores). It writes
``N`` (default 200) deterministic 2 s stereo mixtures (two Laplacian sources, 16 kHz, a seeded
mixing matrix per file) into a temporary folder and times, in the same run and through the real
command line (``python -m demix``):

* ``-j 1``: one process, one input after another;
* ``-j 2``: two worker processes;
* a control: two independent ``-j 1`` processes at once, each on half the files: the speed-up
  two processes can have on this machine now (on a shared, loaded machine it can be none);
* the peer: what a shell script does without ``-j``, one ``demix ica FILE`` process per file,
  timed on the first :data:`LOOP_FILES` files and reported per file.

Every run has one BLAS thread per worker (``OMP_NUM_THREADS=1``, so ``-j 1`` is one thread too).
Per-file overhead is the batch's wall time per file less the separation itself (the median of the
manifests' ``separate_s``: the method, its post-processing and the model-fit check): process
start-up and imports (amortised), reading, hashing, writing and the manifest. Start-up
alone is the time of ``python -m demix --version``. Peak memory is the largest resident set of a
child process (``ru_maxrss``). Timings taken on a shared, loaded machine are noisy: compare the
ratios, measured in the same run.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 200
LOOP_FILES = 5
SECONDS, RATE = 2.0, 16000
TARGET_SPEEDUP, TARGET_OVERHEAD_MS = 1.7, 50.0
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_inputs(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        sources = rng.laplace(size=(2, int(SECONDS * RATE)))
        mixing = rng.uniform(0.2, 1.0, size=(2, 2))
        path = folder / f"take_{i:04d}.wav"
        sf.write(path, (mixing @ sources / 12).T, RATE, subtype="FLOAT")
        paths.append(path)
    return paths


def demix(*args: str | Path) -> tuple[float, float]:
    """Wall and CPU time (user + system, all its processes) of one ``python -m demix`` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "demix", *map(str, args)], env=ENV, check=True, capture_output=True)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def two_halves(inputs: list[Path], root: Path) -> float:
    """Control: two independent ``-j 1`` processes at once, each on half the files (linked into
    two folders). What two cores give two processes; ``-j 2`` cannot do better."""
    commands = []
    for half, files in (("a", inputs[0::2]), ("b", inputs[1::2])):
        folder = root / f"half_{half}"
        folder.mkdir()
        for path in files:
            (folder / path.name).symlink_to(path)
        commands.append([sys.executable, "-m", "demix", "ica", folder, "-o", root / f"out_{half}", "-q"])
    tic = time.perf_counter()
    running = [subprocess.Popen(list(map(str, c)), env=ENV, stdout=subprocess.DEVNULL) for c in commands]
    if any(process.wait() for process in running):
        raise RuntimeError("a half failed")
    return time.perf_counter() - tic


def stage_times(out: Path) -> dict[str, np.ndarray]:
    """Each stage's time in every run folder's manifest (seconds)."""
    times: dict[str, list[float]] = {}
    for path in out.glob("*/demix.json"):
        for stage, value in json.loads(path.read_text())["timings"].items():
            times.setdefault(stage, []).append(value)
    return {stage: np.array(values) for stage, values in times.items()}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="demix-bench-batch-") as tmp:
        root = Path(tmp)
        inputs = make_inputs(root / "in", FILES)
        startup = min(demix("--version")[0] for _ in range(3))
        wall, cpu = {}, {}
        for jobs in (1, 2):
            wall[jobs], cpu[jobs] = demix("ica", root / "in", "-o", root / f"j{jobs}", "-j", jobs, "-q")
        halves = two_halves(inputs, root)
        loop = sum(
            demix("ica", path, "-o", root / "loop" / path.stem, "-q")[0] for path in inputs[:LOOP_FILES]
        )
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        stages = stage_times(root / "j1")
        same = all(
            (root / "j1" / p.stem / f).read_bytes() == (root / "j2" / p.stem / f).read_bytes()
            for p in inputs
            for f in ("source_1.wav", "source_2.wav")
        )

    per_file = {jobs: 1000 * wall[jobs] / FILES for jobs in wall}
    cpu_file = {jobs: 1000 * cpu[jobs] / FILES for jobs in cpu}  # -j 1 only: see below
    # The median: the first file also pays the one-time import of librosa's STFT, an overhead.
    separate_ms, read_ms, write_ms = (
        1000 * float(np.median(stages[k])) for k in ("separate_s", "load_s", "write_s")
    )
    overhead_ms = per_file[1] - separate_ms
    startup_ms = 1000 * startup / FILES
    speedup = wall[1] / wall[2]
    loop_ms = 1000 * loop / LOOP_FILES
    print(f"{FILES} files of {SECONDS:g} s stereo at {RATE} Hz, demix ica, 1 BLAS thread per worker")
    print(f"{'run':<28}{'wall s':>9}{'ms/file':>10}{'CPU ms/file':>13}")
    print(f"{'-j 1 (one process)':<28}{wall[1]:>9.2f}{per_file[1]:>10.1f}{cpu_file[1]:>13.1f}")
    # -j 2's workers are the forkserver's children, not ours: their CPU time is not counted here.
    print(f"{'-j 2 (two workers)':<28}{wall[2]:>9.2f}{per_file[2]:>10.1f}{'':>13}")
    print(f"{'control: 2 processes, 1/2 each':<28}{halves:>9.2f}{1000 * halves / FILES:>10.1f}")
    print(
        f"{'peer: one process per file':<28}{loop_ms * FILES / 1000:>9.2f}{loop_ms:>10.1f}"
        f"  (from {LOOP_FILES} files)"
    )
    print(
        f"-j 2 vs -j 1: {speedup:.2f}x faster (target ≥ {TARGET_SPEEDUP}x on 2 free cores); "
        f"outputs byte-identical: {same}"
    )
    print(
        f"two independent processes vs -j 1: {wall[1] / halves:.2f}x "
        "(what the machine gives two processes now)"
    )
    print(f"-j 1 vs one process per file: {loop_ms / per_file[1]:.1f}x faster")
    print(
        f"-j 1 per file (medians): separation {separate_ms:.1f} ms, read {read_ms:.1f} ms, "
        f"write {write_ms:.1f} ms"
    )
    print(
        f"overhead beyond the separation: {overhead_ms:.1f} ms/file (target ≤ {TARGET_OVERHEAD_MS:g} ms): "
        f"read + write {read_ms + write_ms:.1f}, start-up {startup_ms:.1f} ({1000 * startup:.0f} ms once), "
        f"the rest {overhead_ms - read_ms - write_ms - startup_ms:.1f} "
        "(imports, checks, locks, manifest, tables)"
    )
    # CPU time is what a loaded machine does not inflate: -j 1's CPU per file less the separation
    # (wall, so at least its CPU) bounds demix's own CPU per file from below.
    print(
        f"CPU beyond the separation in -j 1: ≥ {cpu_file[1] - separate_ms:.1f} ms/file "
        "(start-up and imports included)"
    )
    print(f"peak resident memory of a child process: {peak_mib:.0f} MiB")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
