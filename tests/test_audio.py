"""Audio IO: (channels, samples) in, clear errors, resampling, no silent clipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demix.audio import read_audio, validate_output_format, write_audio
from demix.errors import AudioError, ParameterError
from tests.conftest import write_wav


def test_read_is_channels_first(tmp_path: Path) -> None:
    data = np.stack([np.linspace(-0.5, 0.5, 1000), np.zeros(1000)])
    sig = read_audio(write_wav(tmp_path / "s.wav", data))
    assert sig.data.shape == (2, 1000)
    np.testing.assert_allclose(sig.data, data, atol=1e-7)


def test_resample_changes_length_and_rate(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    sig = read_audio(write_wav(tmp_path / "s.wav", np.sin(2 * np.pi * 440 * t)), sample_rate=8000)
    assert sig.sample_rate == 8000
    assert sig.n_samples == 8000


def test_missing_empty_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "absent.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(empty)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="not audio or video that ffmpeg can read"):
        read_audio(garbage)


def test_write_refuses_to_clip_pcm(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="refusing to clip"):
        write_audio(tmp_path / "x.wav", np.array([[0.5, 1.5]]), 8000, subtype="PCM_16")
    write_audio(tmp_path / "x.wav", np.array([[0.5, 1.5]]), 8000, subtype="FLOAT")
    assert sf.read(tmp_path / "x.wav")[0].max() == 1.5


def test_flac_and_subtypes(tmp_path: Path) -> None:
    write_audio(tmp_path / "x.flac", np.array([[0.25, -0.25]]), 8000, fmt="flac", subtype="PCM_24")
    assert sf.info(tmp_path / "x.flac").subtype == "PCM_24"
    with pytest.raises(ParameterError):
        validate_output_format("flac", "FLOAT")
    with pytest.raises(ParameterError):
        validate_output_format("aiff", "PCM_16")
