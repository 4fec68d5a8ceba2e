"""``demix duet`` end to end: three real voices panned and delayed into stereo, out come three
stereo sources with their pans and delays in the manifest; bad option values are one line."""

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
    "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
]


@pytest.fixture(scope="module")
def mixdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("duet") / "mix"
    voices = [shared(path) for path in LIBRI]
    code, _, err = run(
        "mix", *voices, "-o", out, "--pan", "25,45,65", "--delays", "2,0,-3", "--duration", "4"
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def separated(mixdir: Path) -> Path:
    out = mixdir.parent / "sep"
    code, _, err = run("duet", mixdir / "mixture.wav", "-o", out)
    assert code == 0, err
    return out


def test_three_voices_come_out_stereo_with_their_pans(separated: Path) -> None:
    manifest = json.loads((separated / "demix.json").read_text())
    assert manifest["command"] == "duet"
    assert manifest["params"]["sources"] == "auto" and manifest["params"]["mask"] == "wiener"
    outputs = manifest["outputs"]
    assert [o["file"] for o in outputs] == ["source_1.wav", "source_2.wav", "source_3.wav"]
    for entry in outputs:
        data, rate = sf.read(separated / entry["file"])
        assert rate == 16000 and data.ndim == 2 and data.shape[1] == 2
    # The voices are at their native levels (the female reader 9 dB down): auto still finds three.
    pans = sorted(o["pan_deg"] for o in outputs)
    delays = [o["delay_samples"] for o in sorted(outputs, key=lambda o: o["pan_deg"])]
    # The quiet voice's bins overlap most with the others': its pan comes out 2° towards them.
    np.testing.assert_allclose(pans, [25, 45, 65], atol=2.5)
    np.testing.assert_allclose(delays, [2, 0, -3], atol=0.25)
    assert "auto" in manifest["diagnostics"]["n_sources_rule"]
    assert manifest["convergence"]["converged"] is True


def test_eval_scores_the_separation(mixdir: Path, separated: Path) -> None:
    code, report, err = run("eval", "-r", mixdir, "-e", separated, "--json")
    assert code == 0, err
    sdr = [s["sdr"] for s in json.loads(report)["scores"]]
    # Channel-0 SDR, the floors (measured 19 / 12 / 9 dB on these 4 s).
    assert len(sdr) == 3 and np.mean(sdr) >= 6.0 and min(sdr) >= 3.0, sdr


def test_explicit_count_and_soft_masks(mixdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    code, _, err = run(
        "duet", mixdir / "mixture.wav", "-o", out, "-n", "2", "--mask", "soft", "--max-iter", "3"
    )
    assert code == 0, err
    manifest = json.loads((out / "demix.json").read_text())
    assert manifest["params"]["sources"] == 2 and len(manifest["outputs"]) == 2
    total = sum(sf.read(out / o["file"])[0] for o in manifest["outputs"])
    mixture, _ = sf.read(mixdir / "mixture.wav")
    # Soft masks sum to the mixture; the files share one gain and PCM_24 rounding.
    np.testing.assert_allclose(total, mixture * manifest["gain"], atol=1e-5)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-n", "zero"], ("-n/--sources",)),
        (["-n", "0"], ("-n/--sources",)),
        (["--mask", "hard"], ("--mask",)),
        (["--n-fft", "8"], ("--n-fft",)),
        (["--hop", "4096"], ("--hop",)),
        (["--max-delay", "0"], ("--max-delay",)),
    ],
)
def test_bad_options_are_one_line(
    mixdir: Path, tmp_path: Path, args: list[str], fragments: tuple[str, ...]
) -> None:
    out = tmp_path / "bad"
    code, _, err = run("duet", mixdir / "mixture.wav", "-o", out, *args)
    assert_one_line_error(code, err, 2, *fragments)
    assert not out.exists()


def test_mono_input_is_refused(tmp_path: Path) -> None:
    mono = write_wav(tmp_path / "mono.wav", np.random.default_rng(0).standard_normal(16000) * 0.1)
    code, _, err = run("duet", mono, "-o", tmp_path / "out")
    assert_one_line_error(code, err, 2, "stereo")
