"""The CLI end to end: mix → ica → eval, exit codes, one-line errors, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from demix.cli import app
from tests.conftest import ROOT, SAMPLE_AUDIO, write_wav

runner = CliRunner()
VOICES = [str(SAMPLE_AUDIO / f"voice_{i}.wav") for i in (1, 2, 3)]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, err: str, expected_code: int, *fragments: str) -> None:
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def mixdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "mix"
    code, _, err = run("mix", *VOICES, "-o", out, "--seed", "1", "--duration", "4")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def icadir(mixdir: Path) -> Path:
    out = mixdir.parent / "ica"
    code, _, err = run("ica", mixdir / "mixture.wav", "-o", out)
    assert code == 0, err
    return out


def test_mix_writes_layout_and_exact_model(mixdir: Path) -> None:
    manifest = json.loads((mixdir / "demix.json").read_text())
    assert manifest["command"] == "mix"
    assert set(manifest) >= {"demix_version", "params", "inputs", "outputs", "gain", "truth", "timings"}
    A = np.array(manifest["truth"]["mixing"])
    X = sf.read(mixdir / "mixture.wav", always_2d=True)[0].T
    S = np.stack([sf.read(mixdir / ref)[0] for ref in manifest["truth"]["references"]])
    assert X.shape == (3, 64000) and S.shape == (3, 64000)
    # PCM_24 quantisation is 2**-24 per sample: the model holds to that precision in the files.
    assert np.max(np.abs(X - A @ S)) < 1e-6
    assert np.max(np.abs(X)) <= 0.99 + 1e-6


def test_ica_then_eval_recovers_the_voices(mixdir: Path, icadir: Path) -> None:
    manifest = json.loads((icadir / "demix.json").read_text())
    assert [o["file"] for o in manifest["outputs"]] == ["source_1.wav", "source_2.wav", "source_3.wav"]
    assert manifest["convergence"]["converged"] is True
    assert manifest["params"]["algorithm"] == "parallel" and manifest["params"]["ref_channel"] == 0
    code, out, err = run("eval", "--reference", mixdir, "--estimate", icadir, "--json", "--no-scores")
    assert code == 0, err
    scores = json.loads(out)
    # Three synthetic voices, instantaneous mixture, no noise: ICA separates them almost
    # perfectly; a broken unmixing (or a wrong match) falls far below these.
    assert min(s["sir"] for s in scores["scores"]) > 30
    assert min(s["sdri"] for s in scores["scores"]) > 10
    assert scores["amari_index"] < 0.02
    assert sorted(s["reference"] for s in scores["scores"]) == sorted(
        str(mixdir / f"references/source_{i}.wav") for i in (1, 2, 3)
    )


def test_back_projected_sources_sum_to_the_reference_microphone(mixdir: Path, icadir: Path) -> None:
    manifest = json.loads((icadir / "demix.json").read_text())
    x0 = sf.read(mixdir / "mixture.wav", always_2d=True)[0][:, 0]
    total = sum(sf.read(icadir / o["file"])[0] for o in manifest["outputs"]) / manifest["gain"]
    residual = (x0 - x0.mean()) - total
    assert 10 * np.log10(np.sum(residual**2) / np.sum(x0**2)) < -60


def test_eval_table_and_file_lists(mixdir: Path, icadir: Path) -> None:
    refs = [a for i in (1, 2, 3) for a in ("-r", mixdir / f"references/source_{i}.wav")]
    ests = ["-e", icadir / "source_2.wav", "-e", icadir / "source_1.wav"]
    code, out, err = run("eval", *refs, *ests, "--no-scores")
    assert code == 0, err
    assert "SIR" in out and "no estimate for reference" in out
    rows = [line.split("│") for line in out.splitlines() if line.count("│") == 5]
    assert sorted(row[1].strip() for row in rows) == ["ica/source_1.wav", "ica/source_2.wav"]
    scores = np.array([[float(cell) for cell in row[2:]] for row in rows])  # SDR SIR SAR SI-SDR
    # Two well-separated voices: every score is a finite number far above 0 dB (a NaN table fails).
    assert np.all(np.isfinite(scores)) and scores[:, 1].min() > 30 and scores.min() > 15


def test_json_mode_prints_only_json(mixdir: Path, tmp_path: Path) -> None:
    code, out, _ = run("ica", mixdir / "mixture.wav", "-o", tmp_path / "j", "--json", "--seed", "3")
    assert code == 0
    document = json.loads(out)
    assert [run["command"] for run in document["runs"]] == ["ica"]
    assert document["runs"][0]["folder"] == str(tmp_path / "j")
    assert document["summary"] == {"succeeded": [str(mixdir / "mixture.wav")], "failed": [], "skipped": []}


def test_existing_output_needs_force(mixdir: Path, icadir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in icadir.iterdir()}
    code, _, err = run("ica", mixdir / "mixture.wav", "-o", icadir)
    assert_one_line_error(code, err, 2, "--force")
    assert {p.name: p.stat().st_mtime_ns for p in icadir.iterdir()} == before


def test_force_replaces_stale_outputs(mixdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run("ica", mixdir / "mixture.wav", "-o", out)[0] == 0
    code, _, err = run("ica", mixdir / "mixture.wav", "-o", out, "-n", "2", "--force")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["demix.json", "source_1.wav", "source_2.wav"]


def test_mono_input_suggests_nmf(tmp_path: Path) -> None:
    code, _, err = run("ica", VOICES[0], "-o", tmp_path / "o", "-n", "2")
    assert_one_line_error(code, err, 2, "nmf")
    assert not (tmp_path / "o").exists()


def test_duplicated_channel_is_reduced_with_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s = rng.laplace(size=(2, 16000))
    path = write_wav(
        tmp_path / "dup.wav", np.stack([s[0] + 0.5 * s[1], s[1] - 0.3 * s[0], s[0] + 0.5 * s[1]]) / 8
    )
    code, _, err = run("ica", path, "-o", tmp_path / "o")
    assert code == 0, err
    assert "warning" in err
    assert len(json.loads((tmp_path / "o" / "demix.json").read_text())["outputs"]) == 2
    code, _, err = run("ica", path, "-o", tmp_path / "o2", "-n", "3")
    assert_one_line_error(code, err, 2, "rank")
    assert not (tmp_path / "o2").exists()


def test_silent_input_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silent.wav", np.zeros((2, 8000)))
    code, _, err = run("ica", path, "-o", tmp_path / "o")
    assert_one_line_error(code, err, 2)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--matrix", "1,0.5;0.2,1"], "--matrix"),
        (["--channels", "2", "--matrix", "1,0.5,0.1;0.2,1,0.3;0.4,0.1,1"], "--channels"),
        (["--duration", "60"], "--duration"),
        (["--format", "mp3"], "--format"),
        (["--subtype", "PCM_8"], "--subtype"),
    ],
)
def test_mix_bad_options(tmp_path: Path, args: list[str], fragment: str) -> None:
    code, _, err = run("mix", *VOICES, "-o", tmp_path / "m", *args)
    assert_one_line_error(code, err, 2, fragment)
    assert not (tmp_path / "m").exists()


def test_mix_refuses_a_silent_source(tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000))
    code, _, err = run("mix", VOICES[0], silent, "-o", tmp_path / "m")
    assert_one_line_error(code, err, 2, "silent")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--scale", "unit"], "FLOAT"),
        (["--ref-channel", "5"], "--ref-channel"),
        (["-n", "4"], "-n/--sources"),
    ],
)
def test_ica_bad_options(mixdir: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    code, _, err = run("ica", mixdir / "mixture.wav", "-o", tmp_path / "o", *args)
    assert_one_line_error(code, err, 2, fragment)
    assert not (tmp_path / "o").exists()


def test_unreadable_and_missing_inputs(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"\x00garbage" * 50)
    code, _, err = run("ica", garbage, "-o", tmp_path / "o")
    assert_one_line_error(code, err, 2, "garbage.wav")
    code, _, err = run("ica", tmp_path / "absent.wav", "-o", tmp_path / "o")
    assert_one_line_error(code, err, 2, "no such file")
    assert not (tmp_path / "o").exists()


def test_batch_goes_on_after_a_bad_input(mixdir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.wav").write_bytes((mixdir / "mixture.wav").read_bytes())
    (inputs / "b.wav").write_bytes(b"broken")
    code, out, err = run("ica", inputs, "-o", tmp_path / "out", "--json")
    assert code == 4, err
    payload = json.loads(out)
    assert [Path(p).name for p in payload["summary"]["succeeded"]] == ["a.wav"]
    assert [Path(f["path"]).name for f in payload["summary"]["failed"]] == ["b.wav"]
    assert (tmp_path / "out" / "a" / "demix.json").exists()
    assert not (tmp_path / "out" / "b").exists()


def test_strict_exit_code_when_not_converged(mixdir: Path, tmp_path: Path) -> None:
    code, _, err = run("ica", mixdir / "mixture.wav", "-o", tmp_path / "o", "--max-iter", "1", "--strict")
    assert code == 3, err
    manifest = json.loads((tmp_path / "o" / "demix.json").read_text())
    assert manifest["convergence"]["converged"] is False
    code, _, _ = run("ica", mixdir / "mixture.wav", "-o", tmp_path / "o2", "--max-iter", "1")
    assert code == 0


def test_eval_errors(mixdir: Path, icadir: Path, tmp_path: Path) -> None:
    other_rate = write_wav(tmp_path / "r.wav", np.random.default_rng(0).standard_normal(8000) / 10, rate=8000)
    code, _, err = run("eval", "-r", other_rate, "-e", icadir / "source_1.wav")
    assert_one_line_error(code, err, 2, "sample rate")
    code, _, err = run("eval", "-r", icadir, "-e", icadir)
    assert_one_line_error(code, err, 2, "demix mix")
    code, _, err = run("eval", "-r", tmp_path, "-e", icadir)
    assert_one_line_error(code, err, 2)


def test_eval_silent_estimate_is_nan_not_a_crash(mixdir: Path, tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(64000))
    ref = mixdir / "references" / "source_1.wav"
    code, out, err = run("eval", "-r", ref, "-e", silent, "--json")
    assert code == 0, err
    assert json.loads(out)["scores"][0]["sdr"] is None


def test_version_and_help() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.strip().startswith("demix ")
    code, out, _ = run("--help")
    assert code == 0 and all(cmd in out for cmd in ("mix", "ica", "eval"))


def test_installed_console_script(mixdir: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("demix")
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([script, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "ica" in done.stdout
    heavy = "('librosa', 'scipy.optimize', 'yt_dlp')"
    probe = f"import sys, demix.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "[]"
    done = subprocess.run(
        [script, "ica", mixdir / "mixture.wav", "-o", tmp_path / "o", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    # -q silences progress and notes, not results: the table stays on stdout, stderr is empty
    assert done.returncode == 0 and "source_1.wav" in done.stdout and done.stderr == ""
    done = subprocess.run(
        [sys.executable, "-m", "demix", "ica", "nope.wav", "-o", tmp_path / "x"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2 and done.stderr.startswith("error:")


def test_eval_framewise(mixdir: Path, icadir: Path) -> None:
    code, out, err = run(
        "eval", "-r", mixdir, "-e", icadir, "--window", "1", "--hop", "0.5", "--json", "--no-scores"
    )
    assert code == 0, err
    for row in json.loads(out)["scores"]:
        # 4 s at 1 s frames every 0.5 s: 7 frames; each clean ICA frame is far above 15 dB.
        assert len(row["frames"]["sdr"]) == 7
        assert np.nanmedian(np.array(row["frames"]["sdr"], dtype=float)) > 15
    code, _, err = run("eval", "-r", mixdir, "-e", icadir, "--hop", "0.5")
    assert_one_line_error(code, err, 2, "--window")
    code, _, err = run("eval", "-r", mixdir, "-e", icadir, "--window", "60")
    assert_one_line_error(code, err, 2, "--window")
