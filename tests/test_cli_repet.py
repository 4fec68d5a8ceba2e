"""``demix repet`` end to end: the MUSDB excerpt comes out as stereo vocals and accompaniment that
sum to the input and score above the floors; speech alone warns; bad option values are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demix.metrics import bss_eval_sources
from tests.conftest import shared
from tests.test_cli import assert_one_line_error, run

MUSDB = "museval_musdb18_sample"
SPEECH = "librosa_data/libri3_198-209-0000_female_16k.wav"


@pytest.fixture(scope="module")
def separated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("repet") / "song"
    code, _, err = run("repet", shared(f"{MUSDB}/mixture.flac"), "-o", out)
    assert code == 0, err
    return out


def _read(path: Path) -> np.ndarray:
    data, _ = sf.read(path, always_2d=True)
    return data.T


def test_stems_are_written_stereo_with_their_facts(separated: Path) -> None:
    manifest = json.loads((separated / "demix.json").read_text())
    assert manifest["command"] == "repet"
    params = manifest["params"]
    assert params["similar_frames"] == 20 and params["mask"] == "soft" and params["refine"] == "none"
    outputs = manifest["outputs"]
    assert [o["file"] for o in outputs] == ["vocals.wav", "accompaniment.wav"]
    for entry in outputs:
        data, rate = sf.read(separated / entry["file"])
        assert rate == 44100 and data.shape[1] == 2
        assert 0.0 < entry["mask_mean"] < 1.0
    accompaniment = outputs[1]
    assert accompaniment["repetition_structure"] > 0.25 and accompaniment["median_similarity"] > 0.3
    assert manifest["diagnostics"]["fits"] is True
    convergence = {k: manifest["convergence"][k] for k in ("n_iter", "converged", "final_change")}
    assert convergence == {"n_iter": 0, "converged": True, "final_change": 0.0}


def test_stems_sum_to_the_mixture_and_score_above_the_floors(separated: Path) -> None:
    manifest = json.loads((separated / "demix.json").read_text())
    vocals, accompaniment = (_read(separated / f) for f in ("vocals.wav", "accompaniment.wav"))
    mixture = _read(shared(f"{MUSDB}/mixture.flac"))
    # One gain for both stems, PCM_24 rounding: the files still sum to the input.
    np.testing.assert_allclose(vocals + accompaniment, mixture * manifest["gain"], atol=1e-5)
    refs = [_read(shared(f"{MUSDB}/{s}.flac")) for s in ("vocals", "drums", "bass", "other")]
    reference = np.stack([refs[0].mean(axis=0), sum(refs[1:]).mean(axis=0)])
    sdr = bss_eval_sources(reference, np.stack([vocals.mean(axis=0), accompaniment.mean(axis=0)])).sdr
    # Measured 6.4 / 8.7 dB; the mixture as both stems scores -1.5 / +1.6 dB.
    assert sdr[0] >= 5.0 and sdr[1] >= 6.0, sdr


def test_speech_alone_is_written_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "speech"
    code, _, err = run("repet", shared(SPEECH), "-o", out, "-q")
    assert code == 0, err
    assert "repetition model does not fit" in err and len(err.strip().splitlines()) == 1
    manifest = json.loads((out / "demix.json").read_text())
    assert manifest["diagnostics"]["fits"] is False
    assert any("does not fit" in w for w in manifest["warnings"])


def test_binary_mask_and_nmf_refinement(tmp_path: Path) -> None:
    out = tmp_path / "refined"
    code, _, err = run(
        "repet", shared(f"{MUSDB}/mixture.flac"), "-o", out, "--mask", "binary", "--refine", "nmf",
        "--duration", "3", "--max-iter", "10", "--tol", "0", "--similar-frames", "10",
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "demix.json").read_text())
    assert manifest["params"]["mask"] == "binary" and manifest["params"]["refine"] == "nmf"
    assert manifest["convergence"]["n_iter"] == 30  # three NMF fits of exactly --max-iter


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--similar-frames", "0"], "--similar-frames"),
        (["--mask", "hard"], "--mask"),
        (["--refine", "pca"], "--refine"),
        (["--high-pass", "-1"], "--high-pass"),
        (["--high-pass", "9000"], "--high-pass"),  # above the 16 kHz input's Nyquist frequency
        (["--min-distance", "nan"], "--min-distance"),
        (["--hop", "4096"], "--hop"),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    out = tmp_path / "bad"
    code, _, err = run("repet", shared(SPEECH), "-o", out, *args)
    assert_one_line_error(code, err, 2, fragment)
    assert not out.exists()
