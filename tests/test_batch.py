"""Batches: -j worker processes give the files one process gives, bad inputs do not stop the
others, a killed batch resumes where it stopped, and a Dask cluster gives the same files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from demix.batch import blas_threads
from demix.cli import app
from demix.outputs import MANIFEST, STAGING_PREFIX, lock_path
from tests.conftest import ROOT, write_wav

runner = CliRunner()


def run(*args: str | Path, one_thread: bool = False) -> tuple[int, str, str]:
    """The CLI in this process; ``one_thread``: BLAS on one thread, as each of two workers has."""
    with threadpool_limits(limits=1 if one_thread else None):
        result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def make_inputs(folder: Path, count: int, seconds: float = 1.0, seed: int = 0) -> list[Path]:
    """``count`` stereo mixtures of two Laplacian sources with random mixing matrices."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        sources = rng.laplace(size=(2, int(16000 * seconds)))
        mixing = rng.uniform(0.2, 1.0, size=(2, 2))
        paths.append(write_wav(folder / f"in_{i:03d}.wav", mixing @ sources / 12))
    return paths


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the manifests, by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def manifests(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob(f"*/{MANIFEST}"))}


def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without what may differ between two runs of the same job: how long it took,
    where (the batch block) and the run folder it was written to."""
    return {k: v for k, v in manifest.items() if k not in ("timings", "batch", "folder")}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six inputs separated one after another (one BLAS thread) into ``serial/``."""
    root = tmp_path_factory.mktemp("batch")
    make_inputs(root / "in", 6)
    code, _, err = run("ica", root / "in", "-o", root / "serial", one_thread=True)
    assert code == 0, err
    return root


def test_two_workers_write_the_same_files_as_one_process(batch: Path) -> None:
    code, out, err = run("ica", batch / "in", "-o", batch / "parallel", "-j", "2", "--json")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert len(summary["succeeded"]) == 6 and summary["failed"] == [] and summary["skipped"] == []
    serial, parallel = files(batch / "serial"), files(batch / "parallel")
    assert len(serial) == 12 and serial == parallel  # byte for byte
    one, two = manifests(batch / "serial"), manifests(batch / "parallel")
    assert {k: comparable(m) for k, m in one.items()} == {k: comparable(m) for k, m in two.items()}
    # Really two worker processes, neither of them this one, each on cores // 2 BLAS threads.
    pids = {m["batch"]["pid"] for m in two.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {m["batch"]["executor"] for m in two.values()} == {"processes"}
    assert {m["batch"]["blas_threads"] for m in two.values()} == {blas_threads(2)}
    assert {m["batch"]["pid"] for m in one.values()} == {os.getpid()}


def test_a_corrupt_input_fails_alone_with_exit_4(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 3)
    broken = tmp_path / "in" / "in_001.wav"
    broken.write_bytes(b"RIFF\x00\x01 not a wave file at all")
    code, out, err = run("ica", tmp_path / "in", "-o", tmp_path / "out", "-j", "2", "--json")
    assert code == 4, err
    summary = json.loads(out)["summary"]
    assert [f["path"] for f in summary["failed"]] == [str(broken)]
    assert sorted(summary["succeeded"]) == [str(tmp_path / "in" / f"in_00{i}.wav") for i in (0, 2)]
    assert f"error: {broken}" in err
    assert sorted(manifests(tmp_path / "out")) == ["in_000", "in_002"]
    assert not (tmp_path / "out" / "in_001").exists()


def test_a_batch_killed_midway_resumes_with_only_the_unfinished_inputs(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in", 24, seconds=0.5)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "demix", "ica", str(tmp_path / "in"), "-o", str(out), "-j", "2", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(out.glob(f"*/{MANIFEST}"))) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    assert "terminated (SIGTERM)" in err.decode() and "Traceback" not in err.decode()

    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob(f"*/{MANIFEST}")}
    assert 4 <= len(finished) < len(inputs)
    # The runs in flight were cleaned up by their workers: no half-written folder is left.
    assert sorted(p.name for p in out.iterdir()) == sorted(finished)

    code, stdout, err = run("ica", tmp_path / "in", "-o", out, "--resume", "--json")
    assert code == 0, err
    summary = json.loads(stdout)["summary"]
    assert sorted(Path(p).stem for p in summary["skipped"]) == sorted(finished)
    assert len(summary["succeeded"]) == len(inputs) - len(finished) and summary["failed"] == []
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob(f"*/{MANIFEST}")}
    assert len(after) == len(inputs)
    assert {name: after[name] for name in finished} == finished  # finished runs untouched


def test_workers_of_a_batch_killed_with_sigkill_clean_up_and_end(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 16, seconds=0.5)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "demix", "ica", str(tmp_path / "in"), "-o", str(out), "-j", "2", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(out.glob(f"*/{MANIFEST}"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()  # no chance to stop its workers: they see it die
    process.wait()
    deadline = time.monotonic() + 20
    while _session_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _session_alive(process.pid), "worker processes outlived their batch"
    assert all((folder / MANIFEST).exists() for folder in out.iterdir())  # nothing half-written


def _session_alive(session: int) -> bool:
    """Whether any process of the session ``session`` (the killed batch's workers) still runs."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                return True
    return False


def test_resume_after_a_hard_kill_sweeps_staging_and_ignores_the_dead_lock(batch: Path) -> None:
    out = batch / "killed"
    (out / "in_000" / f"{STAGING_PREFIX}x").mkdir(parents=True)
    (out / "in_000" / f"{STAGING_PREFIX}x" / "source_1.wav").write_bytes(b"half")
    # A process that took the folder's lock and died without giving it back.
    script = "import os, pathlib, demix.outputs as o; o.claim(pathlib.Path(os.sys.argv[1])); os._exit(9)"
    subprocess.run([sys.executable, "-c", script, str(out / "in_000")], check=False)
    assert lock_path(out / "in_000").exists()
    code, stdout, err = run("ica", batch / "in", "-o", out, "--resume", "--json", one_thread=True)
    assert code == 0, err
    assert len(json.loads(stdout)["summary"]["succeeded"]) == 6
    assert files(out) == files(batch / "serial")


def test_resume_redoes_nothing_that_is_finished_and_refuses_what_differs(batch: Path) -> None:
    one = batch / "in" / "in_000.wav"
    code, stdout, err = run("ica", one, "-o", batch / "serial" / "in_000", "--resume", "--json")
    assert code == 0, err
    assert json.loads(stdout)["summary"] == {"succeeded": [], "failed": [], "skipped": [str(one)]}
    for inputs, out in ((batch / "in", batch / "serial"), (one, batch / "serial" / "in_000")):
        code, _, err = run("ica", inputs, "-o", out)
        assert code == 2 and "in_000 already holds this run" in err and "--resume skips it" in err
    # Other parameters are another run: resuming does not take it for this one.
    code, _, err = run("ica", one, "-o", batch / "serial" / "in_000", "--resume", "--max-iter", "50")
    assert code == 2 and "--force" in err


def test_a_dask_cluster_writes_the_same_files(batch: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        code, _, err = run("ica", batch / "in", "-o", batch / "dask", "--scheduler", address)
    assert code == 0, err
    assert files(batch / "dask") == files(batch / "serial")
    runs = manifests(batch / "dask")
    assert {m["batch"]["executor"] for m in runs.values()} == {"dask"}
    assert {m["batch"]["scheduler"] for m in runs.values()} == {address}
    assert os.getpid() not in {m["batch"]["pid"] for m in runs.values()}


def test_an_unreachable_scheduler_is_one_line(batch: Path) -> None:
    code, _, err = run("ica", batch / "in", "-o", batch / "nowhere", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and err.startswith("error: --scheduler tcp://127.0.0.1:9: cannot reach"), err
    assert not (batch / "nowhere").exists()
