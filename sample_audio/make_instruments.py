"""Synthesise the two non-speech sample sources: ``instrument.wav`` and ``drums.wav``.

Both are 6.0 s, 16 kHz, mono, 16-bit PCM, peak-normalised to -3 dBFS. The output is
deterministic (fixed seed, no dither): running ``python sample_audio/make_instruments.py``
rewrites the two files bit-for-bit. Needs only numpy and soundfile.

* instrument: a melody of harmonic notes (6 partials, amplitudes 1/k, higher partials
  decaying faster), each with an ADSR envelope and a slight 5.5 Hz vibrato.
* drums: a 120 BPM rock pattern of kick (pitch-dropping sine burst), snare (band-passed
  noise burst + 185 Hz tone) and closed hi-hat (high-passed short noise burst) on eighths.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
DUR = 6.0
N = int(SR * DUR)
PEAK_DBFS = -3.0
OUT_DIR = Path(__file__).resolve().parent
rng = np.random.default_rng(20240601)


def adsr(n: int, a: float, d: float, s: float, r: float) -> np.ndarray:
    """ADSR envelope of n samples: attack a s, decay d s to sustain level s, release r s."""
    na, nd, nr = int(a * SR), int(d * SR), int(r * SR)
    ns = max(n - na - nd - nr, 0)
    env = np.concatenate(
        [
            np.linspace(0.0, 1.0, na, endpoint=False),
            np.linspace(1.0, s, nd, endpoint=False),
            np.full(ns, s),
            np.linspace(s, 0.0, nr),
        ]
    )
    return env[:n]


def note(freq: float, dur: float) -> np.ndarray:
    """One harmonic note with vibrato and an ADSR envelope."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    vib = 1.0 + 0.004 * np.sin(2 * np.pi * 5.5 * t)  # ~7 cents vibrato
    phase = 2 * np.pi * freq * np.cumsum(vib) / SR
    tone = sum((1.0 / k) * np.exp(-t * 1.5 * k) * np.sin(k * phase) for k in range(1, 7))
    return tone * adsr(n, 0.02, 0.10, 0.7, 0.08)


def make_instrument() -> np.ndarray:
    # (MIDI note, beats) at 100 BPM; 10 beats = 6.0 s
    melody = [(69, 1), (72, 0.5), (76, 0.5), (74, 1), (72, 1),
              (71, 0.5), (72, 0.5), (74, 1), (67, 1), (69, 3)]  # fmt: skip
    beat = 60.0 / 100.0
    out = np.zeros(N)
    pos = 0
    for midi, beats in melody:
        x = note(440.0 * 2 ** ((midi - 69) / 12), beats * beat)
        m = min(len(x), N - pos)
        out[pos : pos + m] += x[:m]
        pos += int(beats * beat * SR)
    return out


def one_pole_lowpass(x: np.ndarray, fc: float) -> np.ndarray:
    """First-order IIR low-pass (cut-off fc Hz)."""
    a = np.exp(-2 * np.pi * fc / SR)
    y = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x):
        acc = (1 - a) * v + a * acc
        y[i] = acc
    return y


def kick() -> np.ndarray:
    t = np.arange(int(0.25 * SR)) / SR
    freq = 45 + 105 * np.exp(-t / 0.04)  # 150 Hz -> 45 Hz
    return np.sin(2 * np.pi * np.cumsum(freq) / SR) * np.exp(-t / 0.08)


def snare() -> np.ndarray:
    t = np.arange(int(0.2 * SR)) / SR
    noise = rng.standard_normal(t.size)
    band = one_pole_lowpass(noise, 5000) - one_pole_lowpass(noise, 1000)  # ~1-5 kHz band
    body = 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.03)
    return 1.5 * band * np.exp(-t / 0.05) + body


def hihat() -> np.ndarray:
    t = np.arange(int(0.05 * SR)) / SR
    noise = rng.standard_normal(t.size)
    return 0.3 * (noise - one_pole_lowpass(noise, 6000)) * np.exp(-t / 0.012)


def make_drums() -> np.ndarray:
    eighth = int(60.0 / 120.0 / 2 * SR)  # 120 BPM
    out = np.zeros(N + SR)  # room for the last hit's tail
    for step in range(N // eighth):  # 24 eighth notes = 3 bars of 4/4
        pos = step * eighth
        hits = [hihat()]
        if step % 8 in (0, 3, 5):  # kick on 1, the "and" of 2, and 3
            hits.append(kick())
        if step % 8 in (2, 6):  # snare on 2 and 4
            hits.append(snare())
        for h in hits:
            out[pos : pos + h.size] += h
    return out[:N]


def write(name: str, x: np.ndarray) -> None:
    x = x * (10 ** (PEAK_DBFS / 20) / np.max(np.abs(x)))
    fade = int(0.01 * SR)  # 10 ms fade-out so the clip ends at zero
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    sf.write(OUT_DIR / name, x, SR, subtype="PCM_16")
    print(f"wrote {name}: {x.size / SR:.2f} s, peak {20 * np.log10(np.max(np.abs(x))):.1f} dBFS")


if __name__ == "__main__":
    write("instrument.wav", make_instrument())
    write("drums.wav", make_drums())
