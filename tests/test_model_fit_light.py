"""The model-fit check without librosa: its numpy mel bands equal librosa's, and a streamed ``ica``
run never imports librosa (about 150 MB of a streamed run's memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demix.model_fit import _N_MELS, _band_power, _mel_filters, envelope_correlation
from tests.conftest import ROOT

_STREAMED_ICA = """
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from demix.jobs import Job, WriteOptions
from demix.methods.fastica import FastICAParams
from demix.pipeline import run_job

folder = Path(sys.argv[1])
sources = np.random.default_rng(0).laplace(size=(2, 80000))
sf.write(folder / "mix.wav", 0.1 * (np.array([[1.0, 0.6], [0.45, 1.0]]) @ sources).T, 8000)
job = Job("ica", "fastica", FastICAParams(), folder / "mix.wav", folder / "out", WriteOptions())
manifest = run_job(job, stream=True)
assert "streaming" in manifest and "model_fit" in manifest["diagnostics"], manifest
print("librosa" in sys.modules)
"""


def test_a_streamed_ica_run_does_not_import_librosa(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _STREAMED_ICA, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def _librosa_bands(x: np.ndarray, rate: int, n_fft: int, hop: int) -> np.ndarray:
    """The mel band power the check computed with librosa before."""
    librosa = pytest.importorskip("librosa")
    power = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop)) ** 2
    return np.asarray(librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=_N_MELS) @ power)


@pytest.mark.parametrize(("rate", "n_fft", "hop"), [(8000, 512, 128), (22050, 2048, 353), (48000, 4096, 768)])
def test_mel_bands_equal_librosas(rate: int, n_fft: int, hop: int) -> None:
    """To librosa's float32 filter weights (relative 1e-6), on a signal of odd length."""
    x = np.random.default_rng(rate).standard_normal(3 * rate + 17)
    mine = _band_power(x, _mel_filters(rate, n_fft), n_fft, hop)
    np.testing.assert_allclose(mine, _librosa_bands(x, rate, n_fft, hop), rtol=1e-6)


def test_the_measure_is_unchanged() -> None:
    """The correlation the warning compares with its threshold, computed the old way (librosa)."""
    rng = np.random.default_rng(1)
    rate, n = 16000, 16000 * 8
    sources = rng.laplace(size=(2, n)) * np.abs(np.sin(np.arange(n) / rate * np.array([[1.0], [2.3]])))
    for signals in (sources, np.array([[1.0, 0.5], [0.4, 1.0]]) @ sources):
        bands = _librosa_bands(signals, rate, 1024, 256)  # 16 ms hops, 4 hops rounded up to 2^k
        env = np.log(bands + 1e-4 * bands.mean(axis=(1, 2), keepdims=True) + np.finfo(float).tiny)
        env -= env.mean(axis=2, keepdims=True)
        env /= np.linalg.norm(env, axis=2, keepdims=True)
        expected = float(np.mean(np.sum(env[0] * env[1], axis=1)))
        assert envelope_correlation(signals, rate) == pytest.approx(expected, abs=1e-8)
