"""Deterministic synthetic songs with known stems, for benchmarks and tests.

:func:`make_song` returns a percussive/harmonic mono song synthesised with numpy and a seeded
generator: a melody and a bass line of harmonic notes (decaying partials, ADSR envelopes, a
slight vibrato) over a drum pattern (pitch-dropping sine kick, band-passed noise snare with a
tonal body, high-passed noise hi-hat), with random velocities. The same arguments always give
the same samples, so a benchmark or a test can compare methods on identical input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

__all__ = ["Song", "make_song"]

# A natural minor, as MIDI numbers: melody two octaves, bass one octave below.
_SCALE = np.array([57, 59, 60, 62, 64, 65, 67, 69, 71, 72, 74, 76])
_BASS = np.array([33, 36, 38, 40, 41, 43])


@dataclass(frozen=True)
class Song:
    """A mixture and its two stems, all ``(n_samples,)`` float64; ``mixture = harmonic + percussive``."""

    mixture: np.ndarray
    harmonic: np.ndarray
    percussive: np.ndarray
    sample_rate: int


def _adsr(n: int, sr: int, a: float, d: float, s: float, r: float) -> np.ndarray:
    na, nd, nr = int(a * sr), int(d * sr), int(r * sr)
    ns = max(n - na - nd - nr, 0)
    env = np.concatenate(
        [
            np.linspace(0.0, 1.0, na, endpoint=False),
            np.linspace(1.0, s, nd, endpoint=False),
            np.full(ns, s),
            np.linspace(s, 0.0, nr),
        ]
    )
    return np.pad(env, (0, max(n - env.size, 0)))[:n]


def _note(midi: float, dur: float, sr: int, n_partials: int, decay: float) -> np.ndarray:
    n = int(dur * sr)
    t = np.arange(n) / sr
    f0 = 440.0 * 2.0 ** ((midi - 69) / 12)
    phase = 2 * np.pi * f0 * np.cumsum(1.0 + 0.003 * np.sin(2 * np.pi * 5.0 * t)) / sr
    tone = np.zeros(n)
    for k in range(1, n_partials + 1):
        if k * f0 < 0.45 * sr:
            tone += np.exp(-t * decay * k) * np.sin(k * phase) / k
    return tone * _adsr(n, sr, 0.02, 0.1, 0.7, min(0.08, dur / 4))


def _place(out: np.ndarray, x: np.ndarray, pos: int, gain: float) -> None:
    m = min(x.size, out.size - pos)
    if m > 0:
        out[pos : pos + m] += gain * x[:m]


def _harmonic(n: int, sr: int, beat: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    pos = 0.0
    while pos * sr < n:  # melody: eighth, quarter, half notes from the scale
        dur = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
        midi = float(rng.choice(_SCALE))
        _place(out, _note(midi, dur, sr, 8, 1.2), int(pos * sr), float(rng.uniform(0.6, 1.0)))
        pos += dur
    pos = 0.0
    while pos * sr < n:  # bass: one note per bar
        dur = 4 * beat
        _place(out, _note(float(rng.choice(_BASS)), dur, sr, 6, 0.8), int(pos * sr), 0.8)
        pos += dur
    return out


def _percussive(n: int, sr: int, beat: float, rng: np.random.Generator) -> np.ndarray:
    band = butter(2, [1000, min(5000, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    high = butter(2, min(6000, 0.4 * sr), btype="highpass", fs=sr, output="sos")
    t_k, t_s, t_h = (np.arange(int(d * sr)) / sr for d in (0.25, 0.2, 0.06))
    kick = np.sin(2 * np.pi * np.cumsum(45 + 105 * np.exp(-t_k / 0.04)) / sr) * np.exp(-t_k / 0.08)
    out = np.zeros(n)
    eighth = beat / 2
    for step in range(int(n / sr / eighth) + 1):
        pos = int(step * eighth * sr)
        hat = sosfilt(high, rng.standard_normal(t_h.size)) * np.exp(-t_h / 0.012)
        _place(out, hat, pos, 0.35 * float(rng.uniform(0.6, 1.0)))
        if step % 8 in (0, 3, 5):
            _place(out, kick, pos, float(rng.uniform(0.8, 1.0)))
        if step % 8 in (2, 6):
            noise = sosfilt(band, rng.standard_normal(t_s.size)) * np.exp(-t_s / 0.05)
            body = 0.5 * np.sin(2 * np.pi * 185 * t_s) * np.exp(-t_s / 0.03)
            _place(out, 2.0 * noise + body, pos, float(rng.uniform(0.8, 1.0)))
    return out


def make_song(
    duration: float = 60.0,
    sample_rate: int = 22050,
    *,
    seed: int = 0,
    tempo: float = 120.0,
    percussive_gain_db: float = 0.0,
) -> Song:
    """Synthesise a deterministic percussive/harmonic mono song and its stems.

    Parameters
    ----------
    duration : float
        Length in seconds.
    sample_rate : int
        Sampling rate in Hz.
    seed : int
        Seed of the one ``numpy.random.Generator`` used for notes, velocities and noise.
    tempo : float
        Beats per minute; drums play a rock pattern on eighth notes.
    percussive_gain_db : float
        Level of the drums relative to an equal-RMS mix of the two stems.

    Returns
    -------
    Song
        ``mixture = harmonic + percussive``, peak-normalised to 0.9 (stems share the gain).
    """
    rng = np.random.default_rng(seed)
    n = round(duration * sample_rate)
    beat = 60.0 / tempo
    harmonic = _harmonic(n, sample_rate, beat, rng)
    percussive = _percussive(n, sample_rate, beat, rng)
    rms_h, rms_p = np.sqrt(np.mean(harmonic**2)), np.sqrt(np.mean(percussive**2))
    percussive *= (rms_h / rms_p) * 10 ** (percussive_gain_db / 20)
    gain = 0.9 / np.max(np.abs(harmonic + percussive))
    harmonic, percussive = harmonic * gain, percussive * gain
    return Song(harmonic + percussive, harmonic, percussive, sample_rate)
