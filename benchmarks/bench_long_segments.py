"""Hour-long stereo for every other separating command: Picard, JADE, iva, duet, repet, nmf --bases.

Run with ``.venv/bin/python benchmarks/bench_long_segments.py [--minutes 60] [--compare-minutes 10]
[--only iva,duet]`` (issue 15; ``bench_long.py`` covers ``ica``/``decorr``/``nmf``).

1. **The hour.** A stereo 44.1 kHz recording of ``--minutes`` is synthesised to disk block by
   block (``bench_long.synthesise``: two super-Gaussian, differently coloured, amplitude-modulated
   sources, mixed instantaneously), and each command runs on it at its defaults (``--max-memory``
   400 MB) in its own process under ``/usr/bin/time``: peak RSS (everything: interpreter,
   libraries), wall time, × real time, and how it streamed (passes, or segments). The target is
   a peak RSS of at most 1.5 GB each (the content does not change the memory; Picard and JADE
   print their Amari index). ``nmf --bases`` uses bases learnt on 30 s of the song's stems.
2. **Quality against the in-memory path** on ``--compare-minutes`` (long enough that every
   subsample is a real one and that there are tens of segments), each path in its own process:
   Picard and JADE: Amari index of ``W A`` on the synthetic stereo (44.1 kHz); ``iva`` and
   ``duet``: SI-SDR at microphone 0 of two real talkers (LibriSpeech, looped) reaching the two
   microphones with different gains and delays, at 16 kHz; ``repet`` and ``nmf --bases``: SDR at
   channel 0 of the stems: for ``nmf --bases`` the synthetic song's drums and notes
   (``songs.py``, stereo, 44.1 kHz), for ``repet`` a looped 8 s bar of it under real speech that
   never repeats (pitch-shifted passes).

The machine is shared: wall times are noisy, memory is not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_long import DEMIX, PYTHON, ROOT, amari, synthesise, timed, write_song

from demix.metrics import si_sdr

DATA = ROOT.parent / "shared" / "data"
COMMANDS = {
    "picard": ["ica", "--method", "picard"],
    "jade": ["ica", "--method", "jade"],
    "nmf-bases": ["nmf"],
    "repet": ["repet"],
    "duet": ["duet"],
    "iva": ["iva"],
}
IN_MEMORY = """
import json, sys
from pathlib import Path
from demix.bases import SupervisedParams
from demix.jobs import Job, WriteOptions
from demix.pipeline import run_job
from demix.registry import method_spec
spec = method_spec(sys.argv[1])
params = SupervisedParams(bases=json.loads(sys.argv[4])) if sys.argv[4] != "{}" else spec.params()
job = Job(spec.command, spec.name, params, Path(sys.argv[2]), Path(sys.argv[3]), WriteOptions(force=True))
print(json.dumps(run_job(job, stream=False)))
"""
METHOD = {"picard": "picard", "jade": "jade", "nmf-bases": "nmf-supervised", "repet": "repet", "duet": "duet",
          "iva": "iva"}  # fmt: skip


def run_streamed(name: str, mix: Path, out: Path, bases: dict[str, str]) -> tuple[float, float, dict]:
    extra = [arg for label, file in bases.items() for arg in ("--bases", f"{label}={file}")]
    cmd = [*DEMIX, *COMMANDS[name], str(mix), "-o", str(out), "--force", "--json", "-q", *extra]
    rss, wall, done = timed(cmd)
    return rss, wall, json.loads(done.stdout)["runs"][0]


def run_in_memory(name: str, mix: Path, out: Path, bases: dict[str, str]) -> tuple[float, float, dict]:
    rss, wall, done = timed([PYTHON, "-c", IN_MEMORY, METHOD[name], str(mix), str(out), json.dumps(bases)])
    return rss, wall, json.loads(done.stdout)


def how(manifest: dict) -> str:
    stream = manifest.get("streaming") or {}
    if "segments" in stream:
        rate = manifest["inputs"][0]["sample_rate"]
        return f"{stream['segments']} segments of {stream['segment_samples'] / rate:.1f} s"
    return f"{stream.get('passes', '-')} passes" if stream else "in memory"


def learn_bases(work: Path, stems: np.ndarray, rate: int) -> dict[str, str]:
    """Bases of each stem (channel 0), learnt by `demix bases learn` on its first 30 s."""
    bases = {}
    for label, stem in zip(("drums", "notes"), stems, strict=True):
        example = work / f"{label}_example.wav"
        sf.write(example, stem[: 30 * rate], rate, subtype="FLOAT")
        bases[label] = str(work / f"{label}.npz")
        timed([*DEMIX, "bases", "learn", str(example), "-o", bases[label], "-q", "--force"])
    return bases


def hour_section(work: Path, minutes: float, names: list[str]) -> None:
    print(f"stereo 44.1 kHz, {minutes:g} min, defaults (--max-memory 400 MB); target peak RSS <= 1.5 GB")
    mix = work / "hour.wav"
    A = synthesise(mix, minutes, 2, 44100, seed=2)
    song = work / "song_short.wav"
    bases = learn_bases(work, write_song(song, 0.6), 44100) if "nmf-bases" in names else {}
    for name in names:
        rss, wall, manifest = run_streamed(name, mix, work / name, bases if name == "nmf-bases" else {})
        quality = f"Amari {amari(manifest, A):.2e}" if name in ("picard", "jade") else ""
        print(f"  {name:10} {rss:7.0f} MB {wall:8.1f} s {minutes * 60 / wall:7.1f}x real time  "
              f"{how(manifest):28} {quality}", flush=True)  # fmt: skip
        shutil.rmtree(work / name)
    mix.unlink()


def talkers(path: Path, minutes: float, rate: int = 16000) -> np.ndarray:
    """Two LibriSpeech talkers looped to ``minutes``, mixed with gains and delays; their images at mic 0."""
    voices = []
    for name in ("libri1_5703-47212-0000_male_16k.wav", "libri3_198-209-0000_female_16k.wav"):
        y = sf.read(DATA / "librosa_data" / name)[0]
        y = np.tile(y, int(minutes * 60 * rate) // len(y) + 1)[: int(minutes * 60 * rate)]
        voices.append(y / np.std(y))
    a, b = voices
    b0 = 0.7 * np.concatenate([np.zeros(3), b[:-3]])
    a1 = 0.6 * np.concatenate([np.zeros(2), a[:-2]])
    mix = np.stack([a + b0, a1 + b])
    scale = 0.5 / np.abs(mix).max()
    sf.write(path, (scale * mix).T, rate, subtype="FLOAT")
    return scale * np.stack([a, b0])


def best_si_sdr(folder: Path, manifest: dict, truth: np.ndarray) -> list[float]:
    estimates = [sf.read(folder / o["file"])[0][:, 0] for o in manifest["outputs"]]
    return [max(float(si_sdr(t, e)) for e in estimates) for t in truth]


def song_scores(folder: Path, manifest: dict, stems: np.ndarray) -> list[float]:
    """SDR (BSS Eval v3, channel 0) of each stem against the output that matches it best."""
    from demix.metrics import bss_eval_pairwise

    estimates = np.stack([sf.read(folder / o["file"])[0][:, 0] for o in manifest["outputs"]])
    sdr = bss_eval_pairwise(stems, estimates).sdr
    return [float(row.max()) for row in sdr]


def varied_voice(samples: int, rate: int, seed: int = 0) -> np.ndarray:
    """Speech that never repeats: the three LibriSpeech readings in turn, each pass pitch-shifted
    by its own random amount (±4 semitones), so no passage of the voice recurs — a voice looped
    as-is repeats every ~14 s and REPET rightly takes it for accompaniment."""
    import librosa

    rng = np.random.default_rng(seed)
    readings = [sf.read(DATA / "librosa_data" / name)[0] for name in
                ("libri3_198-209-0000_female_16k.wav", "libri1_5703-47212-0000_male_16k.wav",
                 "libri2_3436-172162-0000_male_16k.wav")]  # fmt: skip
    passes, total = [], 0
    while total * rate < samples * 16000:
        shifted = librosa.effects.pitch_shift(readings[len(passes) % 3], sr=16000, n_steps=rng.uniform(-4, 4))
        passes.append(shifted / np.std(shifted))
        total += len(shifted)
    return librosa.resample(np.concatenate(passes), orig_sr=16000, target_sr=rate)[:samples]


def loop_song(path: Path, minutes: float, rate: int = 44100) -> np.ndarray:
    """REPET's case: an accompaniment that repeats (an 8 s bar of ``songs.py``'s drums and notes,
    looped) under a voice that does not (:func:`varied_voice`), stereo with the voice in the
    middle; the channel-0 stems ``(voice, accompaniment)``."""
    from songs import make_song

    n = int(minutes * 60 * rate)
    bar = make_song(8.0, rate, seed=6).mixture
    music = np.tile(bar, n // len(bar) + 1)[:n]
    voice = varied_voice(n, rate)
    voice *= np.std(music) / np.std(voice)
    scale = 0.45 / (np.abs(music).max() + np.abs(voice).max())
    sf.write(path, scale * np.stack([voice + music, voice + 0.7 * music]).T, rate, subtype="FLOAT")
    return scale * np.stack([voice, music])


def quality(name: str, out: Path, manifest: dict, truth: dict[str, np.ndarray]) -> str:
    if name in ("picard", "jade"):
        return f"Amari {amari(manifest, truth['mixing']):.2e}"
    if name in ("iva", "duet"):
        return (
            "SI-SDR " + " / ".join(f"{v:.2f}" for v in best_si_sdr(out, manifest, truth["talkers"])) + " dB"
        )
    stems, labels = (truth["song"], "drums/notes") if name == "nmf-bases" else (truth["loop"], "voice/music")
    return f"SDR {labels} " + " / ".join(f"{v:.2f}" for v in song_scores(out, manifest, stems)) + " dB"


def compare_section(work: Path, minutes: float, names: list[str]) -> None:
    print(f"\nstreamed (defaults) against in memory, {minutes:g} min:")
    mixes = {name: work / f"{name}.wav" for name in ("synthetic", "talkers", "song", "loop")}
    truth = {
        "mixing": synthesise(mixes["synthetic"], minutes, 2, 44100, seed=3),
        "talkers": talkers(mixes["talkers"], minutes),
        "song": write_song(mixes["song"], minutes),
        "loop": loop_song(mixes["loop"], minutes),
    }
    bases = learn_bases(work, truth["song"], 44100) if "nmf-bases" in names else {}
    source = {"picard": "synthetic", "jade": "synthetic", "iva": "talkers", "duet": "talkers",
              "nmf-bases": "song", "repet": "loop"}  # fmt: skip
    for name in names:
        given = bases if name == "nmf-bases" else {}
        rows = []
        for label, runner in (("streamed", run_streamed), ("in memory", run_in_memory)):
            out = work / f"{name}_{label.replace(' ', '_')}"
            rss, wall, manifest = runner(name, mixes[source[name]], out, given)
            rows.append(
                f"{label} {rss:6.0f} MB {wall:7.1f} s {quality(name, out, manifest, truth)} ({how(manifest)})"
            )
            shutil.rmtree(out)
        print(f"  {name:10} " + " | ".join(rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="0 skips the hour")
    parser.add_argument("--compare-minutes", type=float, default=10.0, help="0 skips the comparison")
    parser.add_argument("--only", default=",".join(COMMANDS), help="comma-separated: " + ",".join(COMMANDS))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="demix-bench-segments-", dir="/tmp"))
    try:
        rss0, _, _ = timed([*DEMIX, "--version"])
        print(f"interpreter baseline (demix --version): {rss0:.0f} MB; machine loaded, 2 cores shared")
        if args.minutes > 0:
            hour_section(work, args.minutes, names)
        if args.compare_minutes > 0:
            compare_section(work, args.compare_minutes, names)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
