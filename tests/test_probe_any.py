"""``audio.probe_any``: rate, channels and frames of files only ffmpeg decodes, without decoding them.

The frames come from the container's duration, so they are compared with what ``read_audio``
decodes within :func:`_tolerance`: ffmpeg prints the duration in centiseconds (up to 10 ms off),
and the container may count the codec's priming and padding (AAC: 1024 priming samples and up to
one 1024-sample frame of padding; Opus: 312 pre-skip samples at 48 kHz), so up to two AAC frames.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demix import audio
from demix.errors import AudioError, DemixError
from demix.ffmpeg import Ffmpeg, _layout_channels, find_ffmpeg, probe

SECONDS = 3.7


def _tolerance(rate: int) -> int:
    """Frames by which a duration-based count may miss the decoded one (see the module docstring)."""
    return round(0.01 * rate) + 2 * 1024


@pytest.fixture(scope="module")
def ffmpeg() -> Ffmpeg:
    try:
        return find_ffmpeg()
    except DemixError:
        pytest.skip("no ffmpeg: neither on PATH nor from the imageio-ffmpeg wheel")


def _encode(ffmpeg: Ffmpeg, dest: Path, rate: int, channels: int, *codec: str) -> Path:
    """A tone of :data:`SECONDS` encoded by ffmpeg with ``codec`` options; skip if it lacks the encoder."""
    cmd = [ffmpeg.path, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    cmd += ["-i", f"sine=frequency=440:sample_rate={rate}:duration={SECONDS}", "-ac", str(channels)]
    done = subprocess.run([*cmd, *codec, str(dest)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode {' '.join(codec)}: {done.stderr.strip()[-200:]}")
    return dest


def _check(shape: tuple[int, int, int], path: Path) -> None:
    decoded = audio.read_audio(path)
    rate, channels, frames = shape
    assert (rate, channels) == (decoded.sample_rate, decoded.data.shape[0])
    assert abs(frames - decoded.data.shape[1]) <= _tolerance(rate)
    assert abs(frames - SECONDS * rate) <= _tolerance(rate)


@pytest.mark.parametrize(
    ("name", "rate", "channels", "codec"),
    [
        ("aac.m4a", 44100, 2, ("-c:a", "aac")),
        ("surround.m4a", 48000, 6, ("-c:a", "aac")),
        ("opus.webm", 48000, 2, ("-c:a", "libopus")),
    ],
)
def test_probe_any_reads_files_only_ffmpeg_decodes(
    ffmpeg: Ffmpeg, tmp_path: Path, name: str, rate: int, channels: int, codec: tuple[str, ...]
) -> None:
    path = _encode(ffmpeg, tmp_path / name, rate, channels, *codec)
    with pytest.raises(AudioError):
        audio.probe(path)  # soundfile cannot: this is the fallback's case
    _check(audio.probe_any(path), path)


def test_mp3_through_ffmpeg_agrees_with_soundfile(ffmpeg: Ffmpeg, tmp_path: Path) -> None:
    """libsndfile may lack mp3 support; ffmpeg's reading of an mp3 matches the decoded length."""
    path = _encode(ffmpeg, tmp_path / "tone.mp3", 22050, 1, "-c:a", "libmp3lame")
    _check(probe(ffmpeg, path, path.name, error=AudioError), path)


def test_a_webm_without_duration_is_measured_by_decoding(ffmpeg: Ffmpeg, tmp_path: Path) -> None:
    """A webm written to a pipe (as a live recording is) records no duration."""
    path = _encode(ffmpeg, tmp_path / "live.webm", 48000, 1, "-c:a", "libopus", "-f", "webm", "-live", "1")
    _check(audio.probe_any(path), path)


def _video(ffmpeg: Ffmpeg, dest: Path, *sound: str) -> Path:
    """A 2 s test-pattern video, with the ``sound`` input and options if any."""
    cmd = [
        ffmpeg.path,
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=64x48",
    ]
    subprocess.run([*cmd, *sound, "-c:v", "mpeg4", str(dest)], check=True, capture_output=True)
    return dest


def test_the_audio_track_of_a_video(ffmpeg: Ffmpeg, tmp_path: Path) -> None:
    sound = ("-f", "lavfi", "-i", "sine=sample_rate=16000:duration=2", "-c:a", "aac")
    path = _video(ffmpeg, tmp_path / "clip.mp4", *sound)
    rate, channels, frames = audio.probe_any(path)
    assert (rate, channels) == (16000, 1)
    assert abs(frames - audio.read_audio(path).data.shape[1]) <= _tolerance(rate)


def test_soundfile_files_keep_their_header(tmp_path: Path) -> None:
    path = tmp_path / "x.flac"
    sf.write(path, np.zeros((1234, 3)), 8000)
    assert audio.probe_any(path) == (8000, 3, 1234)


def test_unreadable_files_are_audio_errors(ffmpeg: Ffmpeg, tmp_path: Path) -> None:
    text = tmp_path / "notes.m4a"
    text.write_text("not audio\n")
    with pytest.raises(AudioError, match="not audio or video that ffmpeg can read"):
        audio.probe_any(text)
    with pytest.raises(AudioError, match="no such file"):
        audio.probe_any(tmp_path / "missing.m4a")
    with pytest.raises(AudioError, match="holds no audio stream"):
        audio.probe_any(_video(ffmpeg, tmp_path / "silent.mp4"))


@pytest.mark.parametrize(
    ("layout", "channels"),
    [
        ("mono", 1),
        ("stereo", 2),
        ("2.1", 3),
        ("quad(side)", 4),
        ("5.1(side)", 6),
        ("7.1.4", 12),
        ("22.2", 24),
        ("hexadecagonal", 16),
        ("7 channels", 7),
        ("6 channels (FL+FR+FC+LFE+BL+BR)", 6),
        ("FL+FR+LFE", 3),
    ],
)
def test_layouts_as_ffmpeg_prints_them(layout: str, channels: int) -> None:
    assert _layout_channels(layout) == channels
