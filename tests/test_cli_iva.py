"""``demix iva`` end to end: two real voices in a simulated room, out come their images at both
microphones with per-source facts in the manifest; bad option values are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import shared, write_wav
from tests.test_cli import assert_one_line_error, run

LIBRI = [
    "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
]


@pytest.fixture(scope="module")
def mixdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pyroomacoustics")
    out = tmp_path_factory.mktemp("iva") / "mix"
    voices = [shared(path) for path in LIBRI]
    code, _, err = run(
        "mix", *voices, "-o", out, "--room", "6,5,3", "--rt60", "0.3", "--duration", "4", "--seed", "1"
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def separated(mixdir: Path) -> Path:
    out = mixdir.parent / "sep"
    code, _, err = run("iva", mixdir / "mixture.wav", "-o", out)
    assert code == 0, err
    return out


def test_two_voices_come_out_as_images_with_facts(separated: Path, mixdir: Path) -> None:
    manifest = json.loads((separated / "demix.json").read_text())
    assert manifest["command"] == "iva" and manifest["layout"] == "images"
    assert manifest["params"]["model"] == "nmf" and manifest["params"]["update"] == "ip2"
    diagnostics = manifest["diagnostics"]
    assert diagnostics["n_fft"] == 4096 and diagnostics["hop"] == 1024 and diagnostics["max_iter"] == 40
    assert diagnostics["objective_last"] < diagnostics["objective_first"]
    outputs = [o for o in manifest["outputs"] if o["role"] == "source"]
    assert [o["file"] for o in outputs] == ["source_1.wav", "source_2.wav"]
    shares = [o["power_share"] for o in outputs]
    assert shares[0] >= shares[1] and abs(sum(shares) - 1.0) < 1e-4
    total = 0.0
    for entry in outputs:
        data, rate = sf.read(separated / entry["file"])
        assert rate == 16000 and data.shape == (64000, 2)
        total = total + data
    mixture, _ = sf.read(mixdir / "mixture.wav")
    # The images sum back to the mixture (one shared gain, PCM_24 rounding).
    np.testing.assert_allclose(total, mixture * manifest["gain"], atol=1e-4)


def test_eval_scores_the_separation(mixdir: Path, separated: Path) -> None:
    code, report, err = run("eval", "-r", mixdir, "-e", separated, "--json", "--no-scores")
    assert code == 0, err
    sdr = [s["sdr"] for s in json.loads(report)["scores"]]
    # Measured 14.7 and 6.4 dB at microphone 0 (time-domain ICA: about 0 dB in this room).
    assert len(sdr) == 2 and np.mean(sdr) >= 7.0 and min(sdr) >= 4.0, sdr


def test_laplace_model_and_fewer_iterations(mixdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "laplace"
    code, _, err = run(
        "iva", mixdir / "mixture.wav", "-o", out, "--model", "laplace", "--max-iter", "3", "--n-fft", "1024"
    )
    assert code == 0, err
    manifest = json.loads((out / "demix.json").read_text())
    assert manifest["params"]["model"] == "laplace" and manifest["convergence"]["n_iter"] == 3
    assert manifest["diagnostics"]["n_fft"] == 1024 and "n_basis" not in manifest["diagnostics"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-n", "3"], ("-n/--sources", "demix duet")),
        (["-n", "0"], ("--sources",)),
        (["--model", "cauchy"], ("--model",)),
        (["--n-fft", "8"], ("--n-fft",)),
        (["--hop", "4096"], ("--hop",)),
        (["--max-iter", "0"], ("--max-iter",)),
        (["--n-fft", "131072"], ("--n-fft",)),
    ],
)
def test_bad_options_are_one_line(
    mixdir: Path, tmp_path: Path, args: list[str], fragments: tuple[str, ...]
) -> None:
    out = tmp_path / "bad"
    code, _, err = run("iva", mixdir / "mixture.wav", "-o", out, *args)
    assert_one_line_error(code, err, 2, *fragments)
    assert not out.exists()


def test_mono_input_is_refused(tmp_path: Path) -> None:
    mono = write_wav(tmp_path / "mono.wav", np.random.default_rng(0).standard_normal(16000) * 0.1)
    code, _, err = run("iva", mono, "-o", tmp_path / "out")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
