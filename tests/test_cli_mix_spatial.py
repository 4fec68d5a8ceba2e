"""``demix mix --room`` and ``--pan``: image references that sum to the mixture, the manifest's
geometry, and what reverberation does to time-domain ICA, all through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from demix.cli import app
from tests.conftest import shared

runner = CliRunner()
SPEECH = (
    "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
)


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def read(path: Path) -> np.ndarray:
    return sf.read(path, always_2d=True)[0].T


@pytest.fixture(scope="module")
def speech() -> list[Path]:
    return [shared(name) for name in SPEECH]


@pytest.fixture(scope="module")
def roomdir(speech: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spatial") / "room"
    code, _, err = run(
        "mix", *speech, "-o", out, "--room", "6,5,3", "--rt60", "0.3", "--duration", "4",
        "--subtype", "FLOAT", "--seed", "2",
    )  # fmt: skip
    assert code == 0, err
    return out


def _eval(mixdir: Path, name: str) -> dict:
    code, _, err = run("ica", mixdir / "mixture.wav", "-o", mixdir.parent / name, "-q")
    assert code == 0, err
    code, out, err = run("eval", "-r", mixdir, "-e", mixdir.parent / name, "--json")
    assert code == 0, err
    result: dict = json.loads(out)
    assert len(result["scores"]) == 3 and all("sdri" in row for row in result["scores"])
    return result


def test_room_references_are_images_that_sum_to_the_mixture(roomdir: Path) -> None:
    manifest = json.loads((roomdir / "demix.json").read_text())
    truth = manifest["truth"]
    assert truth["kind"] == "room" and truth["references_are"] == "source images"
    assert "mixing" not in truth and truth["channels"] == 3
    X = read(roomdir / "mixture.wav")
    images = np.stack([read(roomdir / ref) for ref in truth["references"]])
    assert X.shape == (3, 64000) and images.shape == (3, 3, 64000)
    error_db = 10 * np.log10(np.sum((images.sum(0) - X) ** 2) / np.sum(X**2))
    assert error_db <= -80, error_db
    # each image is a different signal at every microphone (delays and reflections differ)
    assert np.corrcoef(images[0])[0, 2] < 0.999
    room = truth["room"]
    assert room["size"] == [6.0, 5.0, 3.0] and room["rt60_requested"] == 0.3
    assert abs(room["rt60_measured"] / 0.3 - 1) <= 0.25
    assert truth["placement"] == "seeded" and len(truth["array"]["microphones"]) == 3
    centre = np.array(truth["array"]["centre"])
    for source in truth["per_source"]:
        assert 1.0 <= np.linalg.norm(np.array(source["position"]) - centre) <= 2.0
        assert 0.0 <= source["azimuth_deg"] <= 180.0 and len(source["direct_delay_samples"]) == 3


def test_ica_loses_at_least_15_db_in_a_room(roomdir: Path, speech: list[Path]) -> None:
    # Time-domain ICA models one gain per source and microphone: right for an instantaneous mix
    # (35-40 dB SDR on these voices), wrong for room responses thousands of taps long (about 0 dB).
    instant_dir = roomdir.parent / "instant"
    code, _, err = run(
        "mix", *speech, "-o", instant_dir, "--duration", "4", "--subtype", "FLOAT", "--seed", "2"
    )
    assert code == 0, err
    instant, room = _eval(instant_dir, "ica_instant"), _eval(roomdir, "ica_room")
    assert instant["amari_index"] < 0.05 and room["amari_index"] is None  # no mixing matrix in a room
    instant_sdr = [row["sdr"] for row in instant["scores"]]
    room_sdr = [row["sdr"] for row in room["scores"]]
    assert np.mean(room_sdr) <= np.mean(instant_sdr) - 15, (instant_sdr, room_sdr)
    assert min(instant_sdr) > 20  # the instantaneous side is a real separation, not a shared failure


def test_pan_and_delays_follow_the_formula(speech: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "pan"
    code, stdout, err = run(
        "mix", *speech[:2], "-o", out, "--pan", "20,75", "--delays", "5,-3", "--duration", "2",
        "--subtype", "FLOAT",
    )  # fmt: skip
    assert code == 0, err
    assert "pan 75°, delay -3 samples" in stdout
    manifest = json.loads((out / "demix.json").read_text())
    assert manifest["truth"]["per_source"] == [
        {"pan_deg": 20.0, "delay_samples": 5},
        {"pan_deg": 75.0, "delay_samples": -3},
    ]
    gain, n = manifest["gain"], 32000
    s = [read(path)[0, :n] for path in speech[:2]]
    t1, t2 = np.deg2rad(20.0), np.deg2rad(75.0)
    pad = np.zeros
    expected = [
        np.stack([np.cos(t1) * s[0], np.sin(t1) * np.concatenate([pad(5), s[0][:-5]])]),
        np.stack([np.cos(t2) * np.concatenate([pad(3), s[1][:-3]]), np.sin(t2) * s[1]]),
    ]
    for k in range(2):
        np.testing.assert_allclose(
            read(out / f"references/source_{k + 1}.wav"), gain * expected[k], atol=1e-7
        )
    np.testing.assert_allclose(read(out / "mixture.wav"), gain * (expected[0] + expected[1]), atol=1e-7)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--room", "6,5,3", "--pan", "10,20"], "give one"),
        (["--room", "6,5,3"], "--rt60"),
        (["--rt60", "0.3"], "needs --room"),
        (["--delays", "1,2"], "needs --pan"),
        (["--pan", "10,20", "--channels", "3"], "stereo"),
        (["--pan", "10"], "one angle per source"),
        (["--pan", "10,20", "--delays", "1.5,0"], "whole numbers"),
        (["--room", "6,5", "--rt60", "0.3"], "--room must be three"),
        (["--room", "6,5,3", "--rt60", "0.3", "--positions", "1,1,1"], "--positions needs 2"),
        (["--room", "6,5,3", "--rt60", "0.3", "--positions", "1,1,1;9,1,1"], "inside"),
        (["--room", "6,5,3", "--rt60", "0.3", "--azimuths", "10,80"], "--distances and --azimuths"),
        (["--room", "6,5,3", "--rt60", "0.3", "--matrix", "1,0;0,1"], "--matrix"),
    ],
)
def test_bad_spatial_options_are_one_line_errors(
    extra: list[str], fragment: str, speech: list[Path], tmp_path: Path
) -> None:
    code, _, err = run("mix", *speech[:2], "-o", tmp_path / "bad", "--duration", "1", *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in err, err
    assert not (tmp_path / "bad").exists()


def test_missing_extra_is_named(speech: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)
    code, _, err = run("mix", *speech[:2], "-o", tmp_path / "r", "--room", "6,5,3", "--rt60", "0.3")
    assert code == 2 and "pip install 'demix[room]'" in err, err
    assert len(err.strip().splitlines()) == 1
