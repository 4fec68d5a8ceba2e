"""``demix eval`` through the CLI: museval's v4 numbers, mixture baseline, stem groups, scores on disk.

Inputs are the sample voices (16 kHz, 6 s) made into imperfect estimates in numpy, and the MUSDB
excerpt of ../shared/data for museval's own regression (skipped where that folder is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from demix.cli import app
from demix.metrics import CEILING_DB
from tests.conftest import ROOT, SAMPLE_AUDIO, shared, write_wav

runner = CliRunner()
SCHEMA = json.loads((ROOT / "demix" / "schemas" / "scores.schema.json").read_text())
RATE = 16000
TOL_DB = 0.01  # the tolerance against museval's JSON (rounded to 1e-5 dB)


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str | Path) -> dict:
    code, out, err = run("eval", *args, "--json")
    assert code == 0, err
    document: dict = json.loads(out)
    jsonschema.validate(document, SCHEMA)
    return document


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """One BLAS thread: on a shared machine OpenBLAS threads spin-wait; these sizes gain little."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def voices() -> list[np.ndarray]:
    return [sf.read(SAMPLE_AUDIO / f"voice_{i}.wav")[0] for i in (1, 2, 3)]


@pytest.fixture
def trio(tmp_path: Path, voices: list[np.ndarray]) -> dict[str, Path]:
    """Three voices as references, a mixture, and imperfect estimates, each in its own folder."""
    v1, v2, v3 = voices
    refs, ests = tmp_path / "refs", tmp_path / "ests"
    refs.mkdir()
    ests.mkdir()
    files = {f"r{i}": write_wav(refs / f"voice_{i}.wav", v) for i, v in enumerate(voices, 1)}
    files["mix"] = write_wav(tmp_path / "mixture.wav", 0.5 * v1 + 0.3 * v2 + 0.2 * v3)
    files["e1"] = write_wav(ests / "e1.wav", v1 + 0.2 * v2 + 0.05 * v3)
    files["e2"] = write_wav(ests / "e2.wav", v2 + 0.1 * v1 + 0.1 * v3)
    files["e3"] = write_wav(ests / "e3.wav", v3 + 0.3 * v1)
    return files


def test_museval_regression_through_the_cli(tmp_path: Path) -> None:
    """museval's test_track_scores: v4, stem group summed in memory, every frame within 0.01 dB."""
    folder = shared("museval_musdb18_sample")
    expected = json.loads((folder / "expected_museval_v4_random_estimates.json").read_text())
    n = sf.info(folder / "vocals.flac").frames
    np.random.seed(0)  # the data README's recipe (museval's test): legacy global seeding, in this order
    voc, acc = np.random.random((n, 2)), np.random.random((n, 2))
    est = tmp_path / "est"
    est.mkdir()
    for name, data in (("voc", voc), ("acc", acc)):
        sf.write(est / f"{name}.wav", data, 44100, subtype="DOUBLE")  # exact float64 in the file
    accompaniment = "+".join(str(folder / f"{s}.flac") for s in ("drums", "bass", "other"))
    document = run_json(
        "-r", f"vocals={folder / 'vocals.flac'}", "-r", f"accompaniment={accompaniment}",
        "-e", f"vocals={est / 'voc.wav'}", "-e", f"accompaniment={est / 'acc.wav'}", "--mode", "v4",
    )  # fmt: skip
    assert document["matching"] == "name" and document["channels"] == 2
    rows = {row["reference_name"]: row for row in document["scores"]}
    for target in expected["targets"]:
        frames = rows[target["name"]]["frames"]
        assert frames["time_s"] == [f["time"] for f in target["frames"]]
        for metric in ("SDR", "ISR", "SIR", "SAR"):
            want = np.array([f["metrics"][metric] for f in target["frames"]])
            got = np.array(frames[metric.lower()], dtype=float)
            np.testing.assert_allclose(got, want, atol=TOL_DB, err_msg=f"{target['name']} {metric}")
            assert rows[target["name"]][metric.lower()] == pytest.approx(np.median(want), abs=TOL_DB)
    on_disk = json.loads((est / "scores.json").read_text())
    jsonschema.validate(on_disk, SCHEMA)
    assert on_disk["scores"] == document["scores"]


@pytest.mark.parametrize("mode", ["v3", "v4"])
def test_mixture_sdri_is_sdr_minus_the_mixtures(trio: dict[str, Path], mode: str) -> None:
    refs = ["-r", trio["r1"], "-r", trio["r2"], "-r", trio["r3"]]
    ests = ["-e", trio["e1"], "-e", trio["e2"], "-e", trio["e3"]]
    scored = run_json(*refs, *ests, "--mixture", trio["mix"], "--mode", mode, "--no-scores")
    assert scored["mixture"]["files"] == [str(trio["mix"])]
    # The mixture scored as every estimate, pinned to each reference by name.
    as_estimate = [a for i in (1, 2, 3) for a in ("-e", f"voice_{i}={trio['mix']}")]
    mixture = run_json(*refs, *as_estimate, "--mode", mode, "--no-scores")
    mix_sdr = {row["reference_name"]: row["sdr"] for row in mixture["scores"]}
    keys = ["sdri", "si_sdri"] if mode == "v3" else ["sdri"]
    for row in scored["scores"]:
        assert row["sdri"] == pytest.approx(row["sdr"] - mix_sdr[row["reference_name"]], abs=1e-9)
        assert all(key in row for key in keys)
        # SIR matching found the right voice; the estimates are far better than the mixture.
        assert row["estimate_name"][1] == row["reference_name"][-1]
        assert row["sdri"] > 5


@pytest.mark.parametrize("mode", ["v3", "v4"])
def test_stem_groups_equal_summing_the_files_first(
    trio: dict[str, Path], tmp_path: Path, voices: list[np.ndarray], mode: str
) -> None:
    summed = write_wav(tmp_path / "rest.wav", voices[1] + voices[2], subtype="DOUBLE")
    est_summed = write_wav(
        tmp_path / "est_rest.wav", sum(sf.read(trio[k])[0] for k in ("e2", "e3")), subtype="DOUBLE"
    )
    common = ["-r", f"lead={trio['r1']}", "-e", f"lead={trio['e1']}", "--mode", mode, "--no-scores"]
    grouped = run_json(
        *common, "-r", f"rest={trio['r2']}+{trio['r3']}", "-e", f"rest={trio['e2']}+{trio['e3']}"
    )
    first = run_json(*common, "-r", f"rest={summed}", "-e", f"rest={est_summed}")
    assert grouped["references"][1]["files"] == [str(trio["r2"]), str(trio["r3"])]
    metrics = ["sdr", "sir", "sar"] + (["si_sdr"] if mode == "v3" else ["isr"])
    for a, b in zip(grouped["scores"], first["scores"], strict=True):
        assert a["reference_name"] == b["reference_name"]
        for key in metrics:
            assert a[key] == pytest.approx(b[key], abs=1e-6)
    # A group's scores are not an accident of summing: rest is well above 10 dB here.
    assert grouped["scores"][1]["sdr"] > 10


def test_a_folder_with_its_mixture_is_scored_without_it(trio: dict[str, Path]) -> None:
    folder = trio["r1"].parent
    (folder / "mixture.wav").write_bytes(trio["mix"].read_bytes())
    code, out, err = run("eval", "-r", folder, "-e", trio["e1"].parent)
    assert code == 0, err
    assert "left out mixture.wav" in err and "voice_1.wav, voice_2.wav, voice_3.wav" in err
    document = json.loads((trio["e1"].parent / "scores.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert [r["name"] for r in document["references"]] == ["voice_1", "voice_2", "voice_3"]
    assert len(document["scores"]) == 3 and not document["missing_references"]
    assert "SDR" in out and "mixture" not in out


@pytest.mark.parametrize("mode", ["v3", "v4"])
def test_perfect_estimates_score_the_ceiling(trio: dict[str, Path], mode: str) -> None:
    document = run_json(
        "-r", trio["r1"], "-r", trio["r2"], "-e", trio["r2"], "-e", trio["r1"], "--mode", mode, "--no-scores"
    )
    assert document["ceiling_db"] == CEILING_DB == 130.0
    for row in document["scores"]:
        assert row["reference"] == row["estimate"] and "reasons" not in row
        values = [row[k] for k in ("sdr", "sir", "sar", "si_sdr" if mode == "v3" else "isr")]
        # A perfect estimate is round-off only: the documented finite ceiling, never null.
        assert all(CEILING_DB - 1 < v <= CEILING_DB for v in values), values


@pytest.mark.parametrize("mode", ["v3", "v4"])
def test_single_reference_sir_is_null_with_its_reason(trio: dict[str, Path], mode: str) -> None:
    code, out, err = run("eval", "-r", trio["r1"], "-e", trio["e1"], "--mode", mode, "--no-scores")
    assert code == 0, err
    assert "SIR is nan" in out and "nothing can interfere" in out
    document = run_json("-r", trio["r1"], "-e", trio["e1"], "--mode", mode, "--no-scores")
    row = document["scores"][0]
    assert row["sir"] is None and "nothing can interfere" in row["reasons"]["sir"]
    assert row["sdr"] is not None and row["sdr"] > 5


def test_silent_estimate_is_null_with_its_reason(trio: dict[str, Path], tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(RATE * 6))
    document = run_json("-r", trio["r1"], "-r", trio["r2"], "-e", silent, "--no-scores")
    row = document["scores"][0]
    assert row["sdr"] is None and row["reasons"]["sdr"] == "the estimate is silent (all zero)"


def test_start_and_duration_cut_every_file(trio: dict[str, Path], tmp_path: Path) -> None:
    cut = {}
    for key in ("r1", "r2", "e1", "e2", "mix"):
        data = sf.read(trio[key])[0][int(1.5 * RATE) : int(4.0 * RATE)]
        cut[key] = write_wav(tmp_path / f"cut_{key}.wav", data)
    section = run_json(
        "-r", trio["r1"], "-r", trio["r2"], "-e", trio["e1"], "-e", trio["e2"], "--mixture", trio["mix"],
        "--start", "0:01.5", "--duration", "2.5", "--no-scores",
    )  # fmt: skip
    whole = run_json(
        "-r",
        cut["r1"],
        "-r",
        cut["r2"],
        "-e",
        cut["e1"],
        "-e",
        cut["e2"],
        "--mixture",
        cut["mix"],
        "--no-scores",
    )
    assert section["n_samples"] == whole["n_samples"] == int(2.5 * RATE)
    assert section["start_s"] == 1.5 and section["duration_s"] == 2.5
    for a, b in zip(section["scores"], whole["scores"], strict=True):
        for key in ("sdr", "sir", "sar", "si_sdr", "sdri"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_scores_in_a_run_folder_are_the_runs_own(tmp_path: Path) -> None:
    voices = [SAMPLE_AUDIO / f"voice_{i}.wav" for i in (1, 2)]
    mixdir, icadir = tmp_path / "mix", tmp_path / "ica"
    assert run("mix", *voices, "-o", mixdir, "--seed", "1", "--duration", "3", "-q")[0] == 0
    assert run("ica", mixdir / "mixture.wav", "-o", icadir, "-q")[0] == 0
    code, out, err = run("eval", "-r", mixdir, "-e", icadir)
    assert code == 0, err
    assert "SDRi" in out and "listed in the run's manifest" in err
    manifest = json.loads((icadir / "demix.json").read_text())
    assert manifest["outputs"][-1] == {"file": "scores.json", "role": "scores", "mode": "v3"}
    document = json.loads((icadir / "scores.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["scores_file"] == str(icadir / "scores.json")
    assert min(row["sdri"] for row in document["scores"]) > 10  # ICA on an instantaneous mix
    # Again: one entry, replaced; then --force on the run folder removes the run's scores too.
    assert run("eval", "-r", mixdir, "-e", icadir, "--mode", "v4", "-q")[0] == 0
    outputs = json.loads((icadir / "demix.json").read_text())["outputs"]
    assert [o["role"] for o in outputs].count("scores") == 1 and outputs[-1]["mode"] == "v4"
    assert run("ica", mixdir / "mixture.wav", "-o", icadir, "--force", "-q")[0] == 0
    assert not (icadir / "scores.json").exists()


def test_where_scores_go_and_what_is_refused(trio: dict[str, Path], tmp_path: Path) -> None:
    # Scored all the same, but where the scores would go is unclear or not ours: not written.
    code, out, err = run("eval", "-r", trio["r1"], "-e", trio["e1"], "-e", trio["r2"])
    assert code == 0 and "SDR" in out and "scores not written" in err and "--scores FILE" in err
    assert (
        not (trio["e1"].parent / "scores.json").exists() and not (trio["r1"].parent / "scores.json").exists()
    )
    mine = trio["e1"].parent / "scores.json"
    mine.write_text('{"mine": true}')
    code, _, err = run("eval", "-r", trio["r1"], "-e", trio["e1"])
    assert code == 0 and "not a demix scores file" in err and mine.read_text() == '{"mine": true}'
    readonly = tmp_path / "ro"
    readonly.mkdir()
    estimate = write_wav(readonly / "e1.wav", sf.read(trio["e1"])[0])
    readonly.chmod(0o555)  # as root too: permission bits are respected
    try:
        code, _, err = run("eval", "-r", trio["r1"], "-e", estimate)
        assert code == 0 and "read-only" in err and not (readonly / "scores.json").exists()
    finally:
        readonly.chmod(0o755)
    # An explicit --scores that cannot be used is an error before any scoring.
    code, _, err = run("eval", "-r", trio["r1"], "-e", trio["e1"], "--scores", mine)
    assert code == 2 and "not a demix scores file" in err and "Traceback" not in err
    assert mine.read_text() == '{"mine": true}'
    target = tmp_path / "out" / "s.json"
    code, _, err = run("eval", "-r", trio["r1"], "-e", trio["e1"], "--scores", target, "-q")
    assert code == 0, err
    jsonschema.validate(json.loads(target.read_text()), SCHEMA)
    code, _, err = run("eval", "-r", trio["r1"], "-e", trio["e1"], "--mode", "v5", "--no-scores")
    assert code == 2 and "--mode" in err


def test_v4_mono_estimate_against_stereo_references(tmp_path: Path, voices: list[np.ndarray]) -> None:
    """A mono estimate is played on every channel; a longer one is cut to the references' length."""
    v1, v2 = voices[0], voices[1]
    r1 = write_wav(tmp_path / "r1.wav", np.stack([v1, 0.5 * v1]))
    r2 = write_wav(tmp_path / "r2.wav", np.stack([0.5 * v2, v2]))
    e1 = write_wav(tmp_path / "e1.wav", np.concatenate([v1 + 0.1 * v2, np.zeros(RATE)]))
    e2 = write_wav(tmp_path / "e2.wav", np.stack([0.5 * v2, v2]) + 0.05 * v1)
    document = run_json("-r", r1, "-r", r2, "-e", e1, "-e", e2, "--mode", "v4", "--no-scores")
    notes = " ".join(document["notes"])
    assert "e1 is mono: scored as the same signal on all 2 channels" in notes and "cut to" in notes
    rows = {row["estimate_name"]: row for row in document["scores"]}
    assert rows["e1"]["reference_name"] == "r1" and rows["e2"]["reference_name"] == "r2"
    # The mono copy misses r1's 6 dB level difference between channels: well below e2's score.
    assert rows["e2"]["sdr"] > 20 and rows["e1"]["sdr"] < rows["e2"]["sdr"] - 5


def test_v4_silent_frames_are_null_and_said(
    trio: dict[str, Path], tmp_path: Path, voices: list[np.ndarray]
) -> None:
    """museval leaves out every frame in which any reference or estimate is silent; so does demix."""
    quiet_start = voices[0] + 0.2 * voices[1]
    quiet_start[: 2 * RATE] = 0.0
    e1 = write_wav(tmp_path / "e1.wav", quiet_start)
    document = run_json(
        "-r", trio["r1"], "-r", trio["r2"], "-e", e1, "-e", trio["e2"], "--mode", "v4", "--no-scores"
    )
    for row in document["scores"]:
        assert row["frames"]["sdr"][:2] == [None, None] and None not in row["frames"]["sdr"][2:]
        assert row["reasons"]["frames"].startswith("2 of 6 frames have a silent reference or estimate")
        assert row["sdr"] == pytest.approx(np.median(row["frames"]["sdr"][2:]))
