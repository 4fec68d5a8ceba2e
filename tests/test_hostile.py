"""Hostile and careless inputs: every refusal is one line, nothing is lost, nothing escapes.

Each case asserts the exit code, exactly one ``error:`` line on stderr and no traceback, that no
staging or partial file is left anywhere, that the inputs are byte-identical and that every file
outside the outputs is untouched. Concurrency, SIGTERM and a full disk run real ``demix``
subprocesses (``sys.executable -m demix``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from demix.cli import app
from demix.outputs import STAGING_PREFIX, lock_path
from tests.conftest import ROOT, SAMPLE_AUDIO, write_wav

runner = CliRunner()
VOICES = [SAMPLE_AUDIO / f"voice_{i}.wav" for i in (1, 2)]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file contents' hash, link targets, folders."""
    seen = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            seen[key] = "link:" + os.readlink(path)
        elif path.is_file():
            seen[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            seen[key] = "folder"
    return seen


def leftovers(root: Path) -> list[str]:
    """Staging folders, partial files and probes left anywhere under ``root``."""
    return [
        str(p)
        for p in root.rglob("*")
        if p.name.startswith((STAGING_PREFIX, ".demix-probe-")) or p.name.endswith((".part", ".rename-part"))
    ]


def assert_refused(code: int, err: str, expected: int, *fragments: str) -> None:
    assert code == expected, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def space(tmp_path: Path) -> Path:
    """A work folder holding a 2-channel mixture, a mono song and a user's file."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    S = np.stack(
        [np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)), rng.laplace(size=t.size) * 0.1]
    )
    write_wav(tmp_path / "mixture.wav", 0.4 * np.array([[1.0, 0.5], [0.3, 1.0]]) @ S)
    write_wav(tmp_path / "song.wav", 0.3 * S.sum(axis=0))
    (tmp_path / "notes.txt").write_text("the user's own file")
    return tmp_path


def check(space: Path, out: Path, before: dict[str, str], *, out_may_exist: bool = False) -> None:
    """Nothing outside ``out`` changed, and nothing was half-written anywhere."""
    after = snapshot(space)
    outside = {k: v for k, v in after.items() if not (space / k).is_relative_to(out)}
    assert outside == {k: v for k, v in before.items() if not (space / k).is_relative_to(out)}
    assert leftovers(space) == []
    if not out_may_exist:
        assert not os.path.lexists(out)


# ---------------------------------------------------------------------------------------------
# Options: refused before any work, one line, exit 2

OPTION_CASES: list[tuple[str, Callable[[Path, Path], list[str | Path]], str]] = [
    ("-n 0", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "-n", "0"], "-n"),
    ("--bogus", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "--bogus"], "--bogus"),
    ("unknown command", lambda s, o: ["separate", s / "mixture.wav"], "separate"),
    ("unknown subcommand", lambda s, o: ["identify", "bogus"], "bogus"),
    ("--max-iter 0", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "--max-iter", "0"], "--max-iter"),
    ("--sr 2e9", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "--sr", "2000000000"], "768000"),
    ("--tol nan", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "--tol", "nan"], "--tol"),
    ("--format bogus", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "--format", "mp4"], "--format"),
    ("--subtype bogus", lambda s, o: ["ica", s / "mixture.wav", "-o", o, "--subtype", "pcm_12"], "--subtype"),
    ("nmf -k 1e7", lambda s, o: ["nmf", s / "song.wav", "-o", o, "-k", "10000000"], "-k"),
    ("nmf --seed -1", lambda s, o: ["nmf", s / "song.wav", "-o", o, "--seed", "-1"], "--seed"),
    ("nmf --beta inf", lambda s, o: ["nmf", s / "song.wav", "-o", o, "--beta", "inf"], "--beta"),
    (
        "decorr --lags 1-2e9",
        lambda s, o: ["decorr", s / "mixture.wav", "-o", o, "--lags", "1-2000000000"],
        "10000",
    ),
    ("decorr --lags ''", lambda s, o: ["decorr", s / "mixture.wav", "-o", o, "--lags", ""], "empty"),
    ("decorr --lags 0", lambda s, o: ["decorr", s / "mixture.wav", "-o", o, "--lags", "0-5"], "--lags"),
    ("mix --channels 1e5", lambda s, o: ["mix", *VOICES, "-o", o, "--channels", "100000"], "64"),
    ("mix --duration nan", lambda s, o: ["mix", *VOICES, "-o", o, "--duration", "nan"], "--duration"),
    ("mix --duration inf", lambda s, o: ["mix", *VOICES, "-o", o, "--duration", "inf"], "--duration"),
    ("mix --duration 1e-9", lambda s, o: ["mix", *VOICES, "-o", o, "--duration", "1e-9"], "one sample"),
    ("mix --seed -1", lambda s, o: ["mix", *VOICES, "-o", o, "--seed", "-1"], "--seed"),
    ("mix --snr -300", lambda s, o: ["mix", *VOICES, "-o", o, "--snr", "-300"], "--snr"),
    ("mix --snr nan", lambda s, o: ["mix", *VOICES, "-o", o, "--snr", "nan"], "--snr"),
    (
        "mix flac 9 ch",
        lambda s, o: ["mix", *VOICES, "-o", o, "--channels", "9", "--format", "flac"],
        "at most 8 channel",
    ),
    ("mix --rt60 nan", lambda s, o: ["mix", *VOICES, "-o", o, "--room", "5,4,3", "--rt60", "nan"], "--rt60"),
]


@pytest.mark.parametrize(("name", "args", "fragment"), OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_options_are_one_line_before_any_work(space: Path, name: str, args, fragment: str) -> None:
    out = space / "out"
    before = snapshot(space)
    code, stdout, err = run(*args(space, out))
    assert_refused(code, err, 2, fragment)
    assert "╭" not in err and stdout == ""
    check(space, out, before)


# ---------------------------------------------------------------------------------------------
# Output paths that cannot be written: found before the work


def test_unwritable_outputs_are_refused_up_front(space: Path) -> None:
    before = snapshot(space)
    mixture = space / "mixture.wav"
    for out, fragment in [
        (Path("/proc/demix-cannot-be-here"), "/proc/demix-cannot-be-here"),
        (space / "notes.txt" / "out", "not a folder"),
        (space / ("a" * 300), "long"),
    ]:
        code, _, err = run("ica", mixture, "-o", out)
        assert_refused(code, err, 2, fragment)
        assert err.count(str(out)[:60]) == 1  # the path said once
        check(space, out, before)
    folder = space / "bases_here"
    folder.mkdir()
    code, _, err = run(
        "bases", "learn", space / "song.wav", "-o", folder, "--force", "-k", "2", "--max-iter", "2"
    )
    assert_refused(code, err, 2, "folder")
    assert folder.is_dir() and not any(folder.iterdir())


def test_bases_never_replace_an_example(space: Path) -> None:
    before = snapshot(space)
    song = space / "song.wav"
    code, _, err = run("bases", "learn", song, "-o", song, "--force", "-k", "2")
    assert_refused(code, err, 2, "one of the examples")
    check(space, space / "none", before)


# ---------------------------------------------------------------------------------------------
# Files demix reads but did not just write: bases, models, manifests


def _npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _huge_header() -> bytes:
    """An .npy header claiming 10^12 float64 values (8 TB), followed by 16 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    return buffer.getvalue() + bytes(16)


BASES_META = json.dumps(
    {"format": "demix-nmf-bases", "n_fft": 2048, "hop": 512, "sample_rate": 16000, "beta": 1.0}
)

BAD_BASES: list[tuple[str, Callable[[Path], object]]] = [
    ("npy named npz", lambda p: p.write_bytes(_npy(np.ones((5, 2))))),
    ("empty file", lambda p: p.write_bytes(b"")),
    ("pickle", lambda p: p.write_bytes(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00.")),
    (
        "object array",
        lambda p: _npz(
            p, {"W.npy": _npy(np.array([{}], dtype=object)), "metadata.npy": _npy(np.array(BASES_META))}
        ),
    ),
    (
        "terabyte header",
        lambda p: _npz(p, {"W.npy": _huge_header(), "metadata.npy": _npy(np.array(BASES_META))}),
    ),
    (
        "truncated array",
        lambda p: _npz(
            p, {"W.npy": _npy(np.ones((50, 4)))[:-64], "metadata.npy": _npy(np.array(BASES_META))}
        ),
    ),
    (
        "metadata not JSON",
        lambda p: _npz(p, {"W.npy": _npy(np.ones((1025, 2))), "metadata.npy": _npy(np.array("{"))}),
    ),
    ("a folder", lambda p: p.mkdir()),
]


@pytest.mark.parametrize(("name", "write"), BAD_BASES, ids=[c[0] for c in BAD_BASES])
def test_bad_bases_files_are_refused_before_any_work(space: Path, name: str, write) -> None:
    bases = space / "x.npz"
    write(bases)
    before = snapshot(space)
    code, _, err = run("nmf", space / "song.wav", "-o", space / "out", "--bases", f"x={bases}")
    assert_refused(code, err, 2, "--bases")
    check(space, space / "out", before)


def _model(path: Path, labels: list[str], *, huge: bool = False) -> Path:
    """A small identify model with the given labels (or a terabyte-claiming array)."""
    from demix.speakers.features import FeatureSettings

    settings = FeatureSettings()
    dim, k = settings.dim, len(labels)
    meta = {
        "format": "demix-identify-model",
        "format_version": 1,
        "labels": labels,
        "features": settings.as_dict(),
        "classifier": {"layers": 1},
        "gate": {"tau": 10.0},
        "threshold": 0.5,
    }
    arrays = {
        "mean.npy": _huge_header() if huge else _npy(np.zeros(dim)),
        "scale.npy": _npy(np.ones(dim)),
        "class_means.npy": _npy(np.zeros((k, dim))),
        "precision.npy": _npy(np.eye(dim)),
        "layer_0_weights.npy": _npy(np.zeros((dim, k))),
        "layer_0_bias.npy": _npy(np.zeros(k)),
        "metadata.npy": _npy(np.array(json.dumps(meta))),
    }
    return _npz(path, arrays)


@pytest.mark.parametrize(
    ("labels", "huge", "fragment"),
    [
        (["../escaped", "beth"], False, "safe file name"),
        (["/tmp/absolute", "beth"], False, "safe file name"),
        ([".hidden", "beth"], False, "safe file name"),
        (["alan", "beth"], True, "limit"),
    ],
    ids=["dotdot", "absolute", "hidden", "terabytes"],
)
def test_hostile_models_are_refused_at_load(
    space: Path, labels: list[str], huge: bool, fragment: str
) -> None:
    model = _model(space / "model.npz", labels, huge=huge)
    before = snapshot(space)
    code, _, err = run("identify", "label", model, space / "song.wav", "--rename")
    assert_refused(code, err, 2, fragment)
    check(space, space / "nothing", before)


# ---------------------------------------------------------------------------------------------
# The run folder: --force removes only what it provably wrote, after the new outputs are in place


@pytest.fixture
def previous(space: Path) -> Path:
    out = space / "run"
    code, _, err = run("ica", space / "mixture.wav", "-o", out)
    assert code == 0, err
    return out


def test_force_never_deletes_through_a_planted_manifest(space: Path, previous: Path) -> None:
    victim = space / "victim"
    victim.mkdir()
    (victim / "precious.wav").write_text("keep me")
    (previous / "linked").symlink_to(victim)
    (previous / "link.wav").symlink_to(space / "notes.txt")
    manifest = json.loads((previous / "demix.json").read_text())
    manifest["outputs"] += [
        {"file": str(victim / "precious.wav")},
        {"file": "linked/precious.wav"},
        {"file": "../notes.txt"},
        {"file": "link.wav"},
        {"file": 5},
        "not even a dict",
    ]
    (previous / "demix.json").write_text(json.dumps(manifest))
    before = snapshot(space)
    code, _, err = run("ica", space / "mixture.wav", "-o", previous, "--force")
    assert code == 0, err
    assert (victim / "precious.wav").read_text() == "keep me"
    assert (space / "notes.txt").read_text() == "the user's own file"
    assert (previous / "link.wav").is_symlink()  # a link is left alone, never followed
    check(space, previous, before, out_may_exist=True)


@pytest.mark.parametrize(
    "damage", ['{"outputs": {}}', '{"truth": {}}', "[1, 2", '{"outputs": [{"file": 5}]}']
)
def test_force_over_a_damaged_manifest_removes_nothing_it_cannot_prove(
    space: Path, previous: Path, damage: str
) -> None:
    (previous / "demix.json").write_text(damage)
    code, _, err = run("ica", space / "mixture.wav", "-o", previous, "--force")
    assert code == 0, err
    assert json.loads((previous / "demix.json").read_text())["command"] == "ica"
    assert leftovers(space) == []


def test_failing_force_keeps_the_previous_run(space: Path, previous: Path) -> None:
    """A user's folder named like an output: refused before the previous run is touched."""
    manifest = json.loads((previous / "demix.json").read_text())
    (previous / "source_2.wav").unlink()
    (previous / "source_2.wav").mkdir()
    (previous / "source_2.wav" / "mine.txt").write_text("mine")
    before = snapshot(space)
    code, _, err = run("ica", space / "mixture.wav", "-o", previous, "--force")
    assert_refused(code, err, 2, "is a folder")
    assert snapshot(space) == before
    assert json.loads((previous / "demix.json").read_text()) == manifest
    assert leftovers(space) == []


def test_links_planted_at_staging_or_output_names_are_never_written_through(
    space: Path, previous: Path
) -> None:
    mixture = space / "mixture.wav"
    planted = [previous / name for name in (".source_1.wav.part", ".demix.json.part", f"{STAGING_PREFIX}x")]
    for link in planted:
        link.symlink_to(mixture)
    (previous / "source_1.wav").unlink()
    (previous / "source_1.wav").symlink_to(space / "notes.txt")
    before = snapshot(space)
    code, _, err = run("ica", mixture, "-o", previous, "--force")
    assert code == 0, err
    assert not (previous / "source_1.wav").is_symlink()  # the link was replaced, not followed
    assert (space / "notes.txt").read_text() == "the user's own file"
    assert sorted(leftovers(space)) == sorted(map(str, planted))  # the planted links, nothing else
    assert snapshot(space)["mixture.wav"] == before["mixture.wav"]


def test_mix_refuses_a_linked_references_folder(space: Path) -> None:
    elsewhere = space / "elsewhere"
    elsewhere.mkdir()
    out = space / "mix"
    out.mkdir()
    (out / "references").symlink_to(elsewhere)
    before = snapshot(space)
    code, _, err = run("mix", *VOICES, "-o", out, "--force", "--duration", "1")
    assert_refused(code, err, 2, "symbolic link")
    assert snapshot(space) == before and list(elsewhere.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# What gets written: never non-finite, never silently silent; quiet and verbose


@pytest.mark.parametrize("matrix", ["1e-300,1e-300;1e-300,2e-300", "1e308,0;0,1e308"])
def test_silent_outputs_warn_with_the_numbers_even_when_quiet(space: Path, matrix: str) -> None:
    code, stdout, err = run("mix", *VOICES, "-o", space / "mix", "--matrix", matrix, "-q", "--duration", "1")
    assert code == 0 and "mixed 2 sources" in stdout  # -q keeps the result
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings and "silent as written" in warnings[0] and "PCM_24" in warnings[0]
    assert all(len(line) > 80 for line in warnings)  # one line each, never wrapped at 80 columns


def test_choices_ignore_case_and_verbose_times_the_stages(space: Path) -> None:
    code, _, err = run(
        "mix", *VOICES, "-o", space / "mix", "--subtype", "pcm_16", "--format", "WAV", "-v", "--duration", "1"
    )
    assert code == 0, err
    assert json.loads((space / "mix" / "demix.json").read_text())["params"]["subtype"] == "PCM_16"
    assert "timings: load" in err


# ---------------------------------------------------------------------------------------------
# Real processes: two writers, SIGTERM, a full disk


def _demix(*args: str | Path, ready: bool = False, **kwargs: object) -> subprocess.Popen[str]:
    """``python -m demix ARGS``; with ``ready``, imported and waiting for a line on stdin first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NO_COLOR": "1"}
    waiting = "import sys; from demix.cli import main; sys.stdin.readline(); main()"
    return subprocess.Popen(
        [sys.executable, *(["-c", waiting] if ready else ["-m", "demix"]), *map(str, args)],
        stdin=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("the run never took its lock")
        time.sleep(0.005)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Exit code and stderr of ``proc``, killed (and the test failed) if it outlives ``timeout``."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"demix still running after {timeout} s")
    return proc.returncode, err


@pytest.fixture
def noise(tmp_path: Path) -> Path:
    """Ten seconds of 4-channel Gaussian noise: FastICA never converges on it, so it runs until
    --max-iter (about a second for 100 iterations), long enough to interfere."""
    rng = np.random.default_rng(1)
    return write_wav(tmp_path / "noise.wav", 0.1 * rng.standard_normal((4, 5 * 16000)))


def ica_for(iterations: int) -> tuple[str, ...]:
    return ("--max-iter", str(iterations), "--tol", "1e-12")


def test_a_second_writer_fails_fast_and_the_first_finishes(space: Path, noise: Path) -> None:
    out = space / "shared"
    second = _demix("ica", space / "mixture.wav", "-o", out, "--force", ready=True)
    first = _demix("ica", noise, "-o", out, *ica_for(60), "--force")
    _wait_for(lock_path(out), first)
    assert second.stdin is not None
    second.stdin.write("go\n")
    second.stdin.flush()
    code2, err2 = _finish(second)
    code1, err1 = _finish(first)
    assert code1 == 0, err1
    assert_refused(code2, err2, 2, "being written by another demix run")
    manifest = json.loads((out / "demix.json").read_text())
    assert manifest["command"] == "ica" and manifest["inputs"][0]["path"].endswith("noise.wav")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["demix.json"] + [o["file"] for o in manifest["outputs"]]
    )
    assert leftovers(space) == [] and not lock_path(out).exists()


def test_sigterm_cleans_up_like_ctrl_c(space: Path, noise: Path) -> None:
    signum = signal.SIGTERM  # SIGHUP takes the same path (console.signals_as_interrupts)
    out = space / "killed"
    before = snapshot(space)
    proc = _demix("ica", noise, "-o", out, *ica_for(1_000_000))  # runs until stopped
    _wait_for(lock_path(out), proc)
    time.sleep(0.3)
    proc.send_signal(signum)
    code, err = _finish(proc)
    assert_refused(code, err, 128 + signum, "terminated")
    assert not out.exists() and not lock_path(out).exists()
    assert snapshot(space) == before and leftovers(space) == []


def test_a_full_disk_is_exit_5_with_the_reason(space: Path) -> None:
    def limit_file_size() -> None:  # any write beyond 64 kB fails as a full disk would
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    out = space / "full"
    before = snapshot(space)
    proc = _demix("mix", *VOICES, "-o", out, preexec_fn=limit_file_size)
    code, err = _finish(proc)
    assert_refused(code, err, 5, "cannot write", str(out))
    assert "please report" not in err
    assert not out.exists() and snapshot(space) == before and leftovers(space) == []


@pytest.mark.parametrize(
    "outputs",
    [{}, [{"file": 5, "role": "source"}], [{"file": "../../notes.txt", "role": "source"}], ["source_1.wav"]],
    ids=["dict", "number", "dotdot", "not-a-dict"],
)
def test_label_refuses_a_malformed_run_manifest(space: Path, previous: Path, outputs: object) -> None:
    manifest = json.loads((previous / "demix.json").read_text())
    (previous / "demix.json").write_text(json.dumps({**manifest, "outputs": outputs}))
    model = _model(space / "model.npz", ["alan", "beth"])
    before = snapshot(space)
    code, _, err = run("identify", "label", model, previous, "--rename")
    assert_refused(code, err, 2, "demix.json")
    assert snapshot(space) == before


def test_enroll_refuses_a_folder_as_model_before_the_work(space: Path) -> None:
    model = space / "model.npz"
    model.mkdir()
    before = snapshot(space)
    code, _, err = run("identify", "enroll", space, "-o", model, "--force")
    assert_refused(code, err, 2, "is a folder")
    assert snapshot(space) == before


def test_a_separation_that_would_be_written_as_silence_warns(space: Path) -> None:
    rng = np.random.default_rng(2)
    tiny = write_wav(space / "tiny.wav", 1e-30 * rng.laplace(size=(2, 16000)) * np.array([[1.0], [0.5]]))
    code, _, err = run("ica", tiny, "-o", space / "out", "-q")
    assert code == 0, err
    assert "silent as written" in err
