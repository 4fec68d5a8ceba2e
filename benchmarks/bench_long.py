"""Hour-long recordings in bounded memory: `demix ica`, `decorr` and `nmf` end to end (issue 15).

Run with ``.venv/bin/python benchmarks/bench_long.py [--minutes 60] [--compare-minutes 10]
[--nmf-minutes 60] [--skip-linear]``.
Two recordings are synthesised to disk block by block (never whole) in a temporary folder under
/tmp, removed at the end:

* stereo, 44.1 kHz, ``--minutes`` long (2 sources);
* 8 channels, 16 kHz, ``--minutes`` long (8 sources).

Sources are seeded, continuous across blocks: Laplacian noise under a slow amplitude envelope
(super-Gaussian, for ICA) through an AR(1) filter whose pole differs per source (different
spectra, for SOBI); the mixing matrix is seeded. Each command runs as its own process under
``/usr/bin/time``, which reports its peak resident memory (RSS: everything, the interpreter and
libraries included) and wall time; × real time is the recording's length over the wall time.

Quality against the in-memory path is measured on a ``--compare-minutes`` version of the stereo
recording (long enough that FastICA's 65 536-sample warm start is a real subsample): the CLI
(which streams it) and ``run_job(..., stream=False)`` in its own process; both Amari indices of
``W A_true`` and the largest difference between their written samples.
``nmf`` (defaults) runs on a synthetic stereo song (``benchmarks/songs.py``: drums and notes,
the drums at 0.6 on the right channel) of ``--nmf-minutes``, and of ``--compare-minutes`` both
streamed and in memory: SDR of the percussive and harmonic files at channel 0 against the stems.
The machine is shared and loaded: wall times are noisy, memory is not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from demix.metrics import amari_index

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DEMIX = [PYTHON, "-m", "demix"]
BLOCK = 1 << 18
ENV_HZ = (0.37, 0.53, 0.71, 0.89, 1.13, 1.37, 1.61, 1.97)


def mixing(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 1.0, (n, n)) + np.eye(n)


def synthesise(path: Path, minutes: float, channels: int, rate: int, seed: int) -> np.ndarray:
    """Write the mixture block by block (FLOAT WAV); return the true mixing matrix."""
    A = mixing(channels, seed)
    rng = np.random.default_rng(seed + 1)
    poles = np.linspace(0.1, 0.85, channels)
    state = [np.zeros(1) for _ in range(channels)]
    total = int(minutes * 60 * rate)
    scale = 0.5 / (np.abs(A).sum(axis=1).max() * 12.0)
    with sf.SoundFile(path, "w", rate, channels, "FLOAT", format="WAV") as out:
        for a in range(0, total, BLOCK):
            k = min(BLOCK, total - a)
            t = (a + np.arange(k)) / rate
            S = np.empty((channels, k))
            for i in range(channels):
                env = 0.1 + np.maximum(np.sin(2 * np.pi * ENV_HZ[i] * t + i), 0.0)
                S[i], state[i] = lfilter([1.0], [1.0, -poles[i]], rng.laplace(size=k) * env, zi=state[i])
            out.write(np.clip(scale * (A @ S), -1, 1).T)
    return A


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Peak RSS (MB) and wall time (s) of ``cmd`` run under /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        tic = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd], capture_output=True, text=True, cwd=ROOT
        )
        wall = time.perf_counter() - tic
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        rss_kb = int(report.read().split()[-1])
    return rss_kb / 1024, wall, done


def run_cli(command: str, mix: Path, out: Path) -> tuple[float, float, dict]:
    rss, wall, done = timed([*DEMIX, command, str(mix), "-o", str(out), "--force", "--json", "-q"])
    return rss, wall, json.loads(done.stdout)["runs"][0]


IN_MEMORY = """
import json, sys
from pathlib import Path
from demix.jobs import Job, WriteOptions
from demix.pipeline import run_job
from demix.registry import method_spec
spec = method_spec(sys.argv[1])
out = Path(sys.argv[3])
job = Job(spec.command, spec.name, spec.params(), Path(sys.argv[2]), out, WriteOptions(force=True))
print(json.dumps(run_job(job, stream=False)))
"""


def max_difference(a: Path, b: Path, files: list[str]) -> float:
    worst = 0.0
    for name in files:
        with sf.SoundFile(a / name) as fa, sf.SoundFile(b / name) as fb:
            for xa, xb in zip(fa.blocks(BLOCK), fb.blocks(BLOCK), strict=True):
                worst = max(worst, float(np.max(np.abs(xa - xb))))
    return worst


def amari(manifest: dict, A: np.ndarray) -> float:
    return amari_index(np.asarray(manifest["model"]["unmixing"]) @ A)


def linear_section(work: Path, minutes: float, compare_minutes: float) -> None:
    """`demix ica` and `demix decorr` on both long recordings, and against in memory."""
    print(f"{'recording':34} {'command':7} {'peak RSS':>9} {'wall':>8} {'x real time':>11} passes  Amari")
    for label, channels, rate in (("stereo 44.1 kHz", 2, 44100), ("8 channels 16 kHz", 8, 16000)):
        mix = work / f"mix{channels}.wav"
        tic = time.perf_counter()
        A = synthesise(mix, minutes, channels, rate, seed=channels)
        made = time.perf_counter() - tic
        name = f"{label}, {minutes:g} min ({mix.stat().st_size / 2**30:.2f} GB)"
        print(f"  (synthesised {name} in {made:.0f} s)", flush=True)
        for command in ("ica", "decorr"):
            rss, wall, manifest = run_cli(command, mix, work / f"{command}{channels}")
            shutil.rmtree(work / f"{command}{channels}")
            stream = manifest.get("streaming") or {}
            print(
                f"{name:34} {command:7} {rss:7.0f} MB {wall:7.1f} s {minutes * 60 / wall:10.1f}x "
                f"{stream.get('passes', '-'):>6}  {amari(manifest, A):.2e}",
                flush=True,
            )
        mix.unlink()

    print(f"\nstreamed against in memory, stereo 44.1 kHz, {compare_minutes:g} min:")
    mix = work / "compare.wav"
    A = synthesise(mix, compare_minutes, 2, 44100, seed=2)
    for command, method in (("ica", "fastica"), ("decorr", "decorr")):
        streamed, memory = work / f"s_{command}", work / f"m_{command}"
        rss_s, wall_s, m_s = run_cli(command, mix, streamed)
        rss_m, wall_m, done = timed([PYTHON, "-c", IN_MEMORY, method, str(mix), str(memory)])
        m_m = json.loads(done.stdout)
        diff = max_difference(streamed, memory, [o["file"] for o in m_s["outputs"]])
        print(
            f"  {command:7} streamed {rss_s:5.0f} MB {wall_s:6.1f} s Amari {amari(m_s, A):.3e} | "
            f"in memory {rss_m:5.0f} MB {wall_m:6.1f} s Amari {amari(m_m, A):.3e} | "
            f"largest sample difference {diff:.2e} (PCM_24 step 1.2e-07)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--compare-minutes", type=float, default=10.0)
    parser.add_argument("--nmf-minutes", type=float, default=60.0, help="0 skips nmf")
    parser.add_argument("--skip-linear", action="store_true", help="only the nmf part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demix-bench-long-", dir="/tmp"))
    try:
        rss0, _, _ = timed([*DEMIX, "--version"])
        print(f"interpreter baseline (demix --version): {rss0:.0f} MB; machine loaded, 2 cores shared")
        if not args.skip_linear:
            linear_section(work, args.minutes, args.compare_minutes)
        if args.nmf_minutes > 0:
            nmf_section(work, args.nmf_minutes, args.compare_minutes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_song(path: Path, minutes: float) -> np.ndarray:
    """A stereo 44.1 kHz song (benchmarks/songs.py: drums and notes; right channel has the drums
    at 0.6): written, and its channel-0 stems ``(percussive, harmonic)`` returned."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from songs import make_song

    song = make_song(minutes * 60, 44100, seed=4)
    scale = 0.9 / max(np.abs(song.mixture).max(), np.abs(0.6 * song.percussive + song.harmonic).max())
    with sf.SoundFile(path, "w", 44100, 2, "FLOAT", format="WAV") as out:
        for a in range(0, len(song.mixture), BLOCK):
            p, h = song.percussive[a : a + BLOCK], song.harmonic[a : a + BLOCK]
            out.write(scale * np.stack([p + h, 0.6 * p + h]).T)
    return scale * np.stack([song.percussive, song.harmonic])


def song_sdr(folder: Path, manifest: dict, stems: np.ndarray) -> np.ndarray:
    """SDR at channel 0 of the percussive and harmonic files, read block by block (BSS Eval v3
    statistics accumulated with :class:`demix.metrics.StreamedBSSEval`)."""
    from demix.metrics import StreamedBSSEval

    names = [o["name"] for o in manifest["outputs"]]
    files = [folder / manifest["outputs"][names.index(n)]["file"] for n in ("percussive", "harmonic")]
    acc = StreamedBSSEval(2, 2)
    with sf.SoundFile(files[0]) as fp, sf.SoundFile(files[1]) as fh:
        a = 0
        for p, h in zip(fp.blocks(BLOCK, always_2d=True), fh.blocks(BLOCK, always_2d=True), strict=True):
            acc.add(stems[:, a : a + len(p)], np.stack([p[:, 0], h[:, 0]]))
            a += len(p)
    return np.asarray(acc.pairwise().sdr.diagonal())


def nmf_section(work: Path, minutes: float, compare_minutes: float) -> None:
    """`demix nmf` streamed on a long song (RSS, time), and against in memory on a shorter one (SDR)."""
    print("\nnmf (defaults), stereo 44.1 kHz song, percussive / harmonic SDR at channel 0:")
    for length, compare in ((compare_minutes, True), (minutes, False)):
        mix = work / f"song{length:g}.wav"
        stems = write_song(mix, length)
        rss, wall, m = run_cli("nmf", mix, work / "nmf_s")
        sdr = song_sdr(work / "nmf_s", m, stems)
        line = (
            f"  {length:g} min: streamed {rss:5.0f} MB {wall:7.1f} s ({length * 60 / wall:.1f}x real time) "
            f"SDR {sdr[0]:.2f} / {sdr[1]:.2f} dB"
        )
        if compare:
            rss_m, wall_m, done = timed([PYTHON, "-c", IN_MEMORY, "nmf", str(mix), str(work / "nmf_m")])
            sdr_m = song_sdr(work / "nmf_m", json.loads(done.stdout), stems)
            line += f" | in memory {rss_m:5.0f} MB {wall_m:7.1f} s SDR {sdr_m[0]:.2f} / {sdr_m[1]:.2f} dB"
            shutil.rmtree(work / "nmf_m")
        shutil.rmtree(work / "nmf_s")
        mix.unlink()
        del stems
        print(line, flush=True)


if __name__ == "__main__":
    main()
