"""demix identify: enrol real voices, then name the sources `demix ica` separates from a mixture.

Five real voices from ../shared/data: three LibriSpeech readers (libri1 and libri2 male, libri3
female) and two CMU ARCTIC speakers (aew, axb). Enrolment sees the first 8 s of each reading (as
four 2 s clips) and two sentences per ARCTIC speaker; everything the tests label comes from the
later part of the readings and the third sentence, which enrolment never saw.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demix.speakers.features import FeatureSettings, clip_windows
from demix.speakers.label import assign
from demix.speakers.model import load_model
from tests.conftest import ROOT, SAMPLE_AUDIO, shared, write_wav
from tests.test_cli import assert_one_line_error, run

LIBRI = {
    "libri1": "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "libri2": "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "libri3": "librosa_data/libri3_198-209-0000_female_16k.wav",
}
ARCTIC = {"aew": (1, 2, 3), "axb": (4, 5, 6)}  # sentence numbers: the first two enrol, the third is held out
ENROL_S = 8.0
RATE = 16000


def _read(relative: str) -> np.ndarray:
    data, rate = sf.read(shared(relative))
    assert rate == RATE
    return data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``labelled/<speaker>/*.wav`` for enrolment and ``held/<speaker>.wav`` that enrolment never sees."""
    root = tmp_path_factory.mktemp("identify")
    for name, relative in LIBRI.items():
        x = _read(relative)
        clip, split = 2 * RATE, int(ENROL_S * RATE)
        (root / "labelled" / name).mkdir(parents=True)
        for i in range(split // clip):
            write_wav(root / "labelled" / name / f"{name}_{i}.wav", x[i * clip : (i + 1) * clip])
        (root / "held").mkdir(exist_ok=True)
        write_wav(root / "held" / f"{name}.wav", x[split:])
    for name, numbers in ARCTIC.items():
        (root / "labelled" / name).mkdir()
        files = [f"pyroomacoustics_samples/cmu_arctic_us_{name}_a{n:04d}.wav" for n in numbers]
        for relative in files[:2]:
            shutil.copy(shared(relative), root / "labelled" / name / Path(relative).name)
        shutil.copy(shared(files[2]), root / "held" / f"{name}.wav")
    return root


@pytest.fixture(scope="module")
def enrolment(data: Path) -> dict:
    code, out, err = run("identify", "enroll", data / "labelled", "-o", data / "model.npz", "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def separated(data: Path, enrolment: dict) -> tuple[Path, Path]:
    """All five held-out voices mixed on five microphones, then separated by ICA."""
    held = [data / "held" / f"{name}.wav" for name in (*LIBRI, *ARCTIC)]
    code, _, err = run("mix", *held, "-o", data / "mix", "--seed", "3")
    assert code == 0, err
    code, _, err = run("ica", data / "mix" / "mixture.wav", "-o", data / "ica")
    assert code == 0, err
    return data / "mix", data / "ica"


def _truth(mixdir: Path, icadir: Path) -> dict[str, str]:
    """Estimate file name → speaker, through eval's SIR matching and the mix's list of sources."""
    code, out, err = run("eval", "-r", mixdir, "-e", icadir, "--json", "--no-scores")
    assert code == 0, err
    truth = json.loads((mixdir / "demix.json").read_text())["truth"]
    speaker = {ref: Path(src).stem for ref, src in zip(truth["references"], truth["sources"], strict=True)}
    return {
        Path(s["estimate"]).name: speaker[str(Path(s["reference"]).relative_to(mixdir))]
        for s in json.loads(out)["scores"]
    }


def test_enrolment_reports_held_out_accuracy(data: Path, enrolment: dict) -> None:
    assert enrolment["labels"] == ["aew", "axb", "libri1", "libri2", "libri3"]
    cv = enrolment["cross_validation"]
    # Folds hold out whole example files; 16 clips of 1.6–4 s. Measured: 100 % of the clips.
    assert cv["grouped_by"] == "file" and cv["clips"] == 16
    assert cv["clip_accuracy"] >= 0.9
    assert 0.5 <= enrolment["threshold"] <= 0.9
    meta = enrolment["features"]
    assert meta["sample_rate"] == RATE and meta["n_mfcc"] == 20 and meta["features"] == "mfcc"
    with np.load(data / "model.npz", allow_pickle=False) as npz:  # plain data, no pickle anywhere
        assert json.loads(str(npz["metadata"]))["format"] == "demix-identify-model"
        assert all(npz[key].dtype.kind in "fU" for key in npz.files)


def test_every_separated_voice_gets_its_speaker(data: Path, separated: tuple[Path, Path]) -> None:
    mixdir, icadir = separated
    truth = _truth(mixdir, icadir)
    code, out, err = run("identify", "label", data / "model.npz", icadir, "--json")
    assert code == 0, err
    files = _files(out)
    assert {Path(f["file"]).name: f["label"] for f in files} == truth
    # Measured 0.84–0.98; a wrong or guessed label would sit far lower (five labels: 0.2 by chance).
    assert min(f["probability"] for f in files) > 0.7
    assert all(f["runner_up"] not in (None, f["label"]) for f in files)


def test_rename_names_files_and_updates_the_manifest(data: Path, separated: tuple[Path, Path]) -> None:
    mixdir, icadir = separated
    run_dir = data / "renamed"
    shutil.copytree(icadir, run_dir)
    truth = _truth(mixdir, run_dir)
    code, out, err = run("identify", "label", data / "model.npz", run_dir, "--rename", "--json")
    assert code == 0, err
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["demix.json", *(f"{name}.wav" for name in (*LIBRI, *ARCTIC))]
    )
    manifest = json.loads((run_dir / "demix.json").read_text())
    for entry in manifest["outputs"]:
        assert entry["file"] == f"{entry['label']}.wav"
        assert truth[entry["renamed_from"]] == entry["label"] and entry["label_probability"] > 0.7
    assert manifest["identify"]["labels"] == ["aew", "axb", "libri1", "libri2", "libri3"]
    assert all("renamed_to" in f for f in _files(out))
    # eval reads the renamed folder through its manifest, and each file now says who it is.
    assert all(name == f"{speaker}.wav" for name, speaker in _truth(mixdir, run_dir).items())
    # Again: every name is already right, so nothing moves.
    code, _, err = run("identify", "label", data / "model.npz", run_dir, "--rename", "-q")
    assert code == 0, err
    assert json.loads((run_dir / "demix.json").read_text())["outputs"] == manifest["outputs"]


def test_rename_refuses_a_taken_name_and_touches_nothing(data: Path, separated: tuple[Path, Path]) -> None:
    run_dir = data / "clash"
    shutil.copytree(separated[1], run_dir)
    (run_dir / "libri1.wav").write_bytes(b"the user's own file")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    code, _, err = run("identify", "label", data / "model.npz", run_dir, "--rename")
    assert_one_line_error(code, err, 2, "libri1.wav", "nothing was renamed")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    code, _, err = run("identify", "label", data / "model.npz", data / "held" / "aew.wav", "--rename")
    assert_one_line_error(code, err, 2, "--rename", "demix.json")


def test_unseen_clips_of_enrolled_speakers(data: Path, tmp_path: Path) -> None:
    clips = []
    for name in (*LIBRI, *ARCTIC):
        x = sf.read(data / "held" / f"{name}.wav")[0]
        for i in range(max(1, len(x) // (2 * RATE))):
            clips.append(write_wav(tmp_path / f"{name}__{i}.wav", x[i * 2 * RATE : (i + 1) * 2 * RATE]))
    code, out, err = run("identify", "label", data / "model.npz", tmp_path, "--allow-repeats", "--json")
    assert code == 0, err
    files = _files(out)
    correct = [f["label"] == Path(f["file"]).name.split("__")[0] for f in files]
    # 11 clips of about 2 s; measured 11/11. The issue asks for at least 90 %.
    assert len(files) == len(clips) == 11 and np.mean(correct) >= 0.9


def test_voices_nobody_enrolled_get_a_low_probability(data: Path, enrolment: dict) -> None:
    voices = [SAMPLE_AUDIO / f"voice_{i}.wav" for i in (1, 2, 3, 4)]
    code, out, err = run("identify", "label", data / "model.npz", *voices, "--json")
    assert code == 0, err
    for f in _files(out):
        # espeak voices: measured at most 0.46 (voice_2), most below 0.06; the threshold is ≥ 0.5.
        assert f["label"] is None and f["probability"] < enrolment["threshold"], f
        assert f["candidate"] is not None


def test_a_speaker_left_out_of_enrolment_stays_unknown(data: Path, tmp_path: Path) -> None:
    labelled = tmp_path / "labelled"
    shutil.copytree(data / "labelled", labelled, ignore=shutil.ignore_patterns("libri3"))
    code, _, err = run("identify", "enroll", labelled, "-o", tmp_path / "four.npz", "-q")
    assert code == 0, err
    held = [data / "held" / f"{name}.wav" for name in LIBRI]
    assert run("mix", *held, "-o", tmp_path / "mix", "--seed", "1", "-q")[0] == 0
    assert run("ica", tmp_path / "mix" / "mixture.wav", "-o", tmp_path / "ica", "-q")[0] == 0
    truth = _truth(tmp_path / "mix", tmp_path / "ica")
    code, out, err = run("identify", "label", tmp_path / "four.npz", tmp_path / "ica", "--json")
    assert code == 0, err
    labels = {Path(f["file"]).name: f["label"] for f in _files(out)}
    # libri3 (the only female reader) is not enrolled: measured 0.46 against a threshold of 0.74.
    assert labels == {name: (None if who == "libri3" else who) for name, who in truth.items()}


def test_assignment_is_joint_unless_repeats_are_allowed() -> None:
    P = np.array([[0.6, 0.4], [0.7, 0.3]])
    # Both prefer label 0; jointly, 0.4 + 0.7 beats 0.6 + 0.3, so the first source gets label 1.
    assert assign(P) == [1, 0]
    assert assign(P, allow_repeats=True) == [0, 0]
    assert assign(np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])) == [0, 1, None]
    assert assign(np.zeros((0, 3))) == []
    # A source that matches nobody (near-zero everywhere) does not take a clear match's label.
    assert assign(np.array([[0.02, 0.46], [1e-6, 0.03]])) == [1, 0]


def test_features_ignore_silence_and_gain() -> None:
    x = _read(LIBRI["libri3"])[: 3 * RATE]
    settings = FeatureSettings()
    speech = clip_windows(x, settings)
    hum = 1e-4 * np.random.default_rng(0).standard_normal(3 * RATE)  # far below the speech
    padded = clip_windows(np.concatenate([x, hum]), settings)
    # Only windows straddling the boundary are added; none from the quiet half alone.
    assert speech.shape[0] <= padded.shape[0] <= speech.shape[0] + 3
    assert np.allclose(clip_windows(0.05 * x, settings), speech, atol=1e-6)
    assert clip_windows(np.zeros(RATE), settings).shape == (0, settings.dim)


def test_a_silent_file_is_unknown_with_a_warning(data: Path, tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(2 * RATE))
    code, out, err = run("identify", "label", data / "model.npz", silent, data / "held" / "aew.wav", "--json")
    assert code == 0, err
    assert "warning" in err and "silent.wav" in err
    first, second = _files(out)
    assert first["label"] is None and first["windows"] == 0
    assert second["label"] == "aew"


def test_foreign_and_malformed_model_files_are_refused(data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    bad = {
        "pickle.npz": pickle.dumps(Evil()),
        "garbage.npz": b"\x00garbage" * 40,
    }
    for name, payload in bad.items():
        (tmp_path / name).write_bytes(payload)
    np.savez(tmp_path / "objects.npz", metadata=np.array([{"format": "x"}], dtype=object))
    np.savez(tmp_path / "nometa.npz", W=np.ones((3, 2)))
    np.savez(
        tmp_path / "bases.npz",
        W=np.ones((3, 2)),
        metadata=np.array(json.dumps({"format": "demix-nmf-bases"})),
    )
    with np.load(data / "model.npz") as npz:
        damaged = {k: npz[k] for k in npz.files if k != "precision"}
    np.savez(tmp_path / "damaged.npz", **damaged)
    voice = data / "held" / "aew.wav"
    for name in ("pickle.npz", "garbage.npz", "objects.npz", "nometa.npz", "bases.npz", "damaged.npz"):
        code, _, err = run("identify", "label", tmp_path / name, voice)
        assert_one_line_error(code, err, 2, name, "model")
    assert not marker.exists()
    code, _, err = run("identify", "label", tmp_path / "absent.npz", voice)
    assert_one_line_error(code, err, 2, "no such file")
    assert load_model(data / "model.npz").labels == ("aew", "axb", "libri1", "libri2", "libri3")


def test_enrolment_errors(data: Path, tmp_path: Path) -> None:
    code, _, err = run("identify", "enroll", data / "labelled", "-o", data / "model.npz")
    assert_one_line_error(code, err, 2, "--force")
    clip = data / "labelled" / "aew" / "cmu_arctic_us_aew_a0001.wav"
    code, _, err = run("identify", "enroll", data / "labelled", "-o", clip, "--force")
    assert_one_line_error(code, err, 2, ".npz")
    one = tmp_path / "one"
    shutil.copytree(data / "labelled" / "aew", one / "aew")
    code, _, err = run("identify", "enroll", one, "-o", tmp_path / "m.npz")
    assert_one_line_error(code, err, 2, "at least two labels")
    shutil.copytree(data / "labelled" / "axb", one / "axb")
    (one / "axb" / "cmu_arctic_us_axb_a0004.wav").unlink()
    code, _, err = run("identify", "enroll", one, "-o", tmp_path / "m.npz")
    assert_one_line_error(code, err, 2, "'axb'", "two")
    shutil.copytree(data / "labelled" / "libri1", one / "bad name")
    code, _, err = run("identify", "enroll", one, "-o", tmp_path / "m.npz")
    assert_one_line_error(code, err, 2, "bad name")
    code, _, err = run("identify", "enroll", tmp_path / "absent", "-o", tmp_path / "m.npz")
    assert_one_line_error(code, err, 2, "no such folder")
    code, _, err = run("identify", "enroll", data / "labelled", "-o", tmp_path / "m.npz", "--n-mfcc", "80")
    assert_one_line_error(code, err, 2, "--n-mfcc")
    assert not (tmp_path / "m.npz").exists()


def test_cli_import_stays_light() -> None:
    probe = "import sys, demix.cli; print(sorted(m for m in ('librosa', 'sklearn') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr


def test_readme_example(tmp_path: Path) -> None:
    """The README's synthetic example: two enrolled voices named, the unenrolled one left unknown."""
    for number, name in ((1, "alan"), (2, "beth"), (3, "callum")):
        (tmp_path / "voices" / name).mkdir(parents=True)
        shutil.copy(SAMPLE_AUDIO / f"voice_{number}.wav", tmp_path / "voices" / name)
    assert run("identify", "enroll", tmp_path / "voices", "-o", tmp_path / "voices.npz", "-q")[0] == 0
    voices = [SAMPLE_AUDIO / f"voice_{i}.wav" for i in (1, 2, 4)]
    assert run("mix", *voices, "-o", tmp_path / "mix", "--seed", "1", "-q")[0] == 0
    assert run("ica", tmp_path / "mix" / "mixture.wav", "-o", tmp_path / "who", "-q")[0] == 0
    code, out, err = run("identify", "label", tmp_path / "voices.npz", tmp_path / "who", "--rename", "--json")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "who").iterdir()) == [
        "alan.wav",
        "beth.wav",
        "demix.json",
        "source_2.wav",
    ]
    unknown = next(f for f in _files(out) if f["label"] is None)
    # voice_4 resembles beth (another female espeak voice: 0.76, above the 0.69 threshold), but
    # beth is source_1 at 0.996, so the joint assignment keeps her name off source_2.
    assert unknown["runner_up"] == "beth" and unknown["probability"] < 0.1


def _files(out: str) -> list[dict]:
    """Every labelled file of ``identify label --json`` (one run record per folder)."""
    return [f for run in json.loads(out)["runs"] for f in run["files"]]
