"""Run folders: nothing half-written, nothing overwritten without --force, inputs never touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demix.errors import OutputError
from demix.outputs import MANIFEST, RunFolder, check_run_folder


def _write(text: str):
    return lambda tmp: Path(tmp).write_text(text)


def test_commit_writes_files_then_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "run"
    with RunFolder(folder) as run:
        run.stage("a.txt", _write("a"))
        assert not (folder / "a.txt").exists()
        run.commit({"outputs": [{"file": "a.txt"}]})
    assert (folder / "a.txt").read_text() == "a"
    assert json.loads((folder / MANIFEST).read_text())["outputs"][0]["file"] == "a.txt"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", MANIFEST]


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError), RunFolder(folder) as run:
        run.stage("a.txt", _write("a"))
        raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()


def test_failure_in_existing_folder_keeps_old_results(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), RunFolder(tmp_path) as run:
        run.stage("old.txt", _write("new"))
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]
    assert (tmp_path / "old.txt").read_text() == "old"


def test_force_replaces_stale_outputs_only(tmp_path: Path) -> None:
    with RunFolder(tmp_path) as run:
        run.stage("source_3.wav", _write("x"))
        run.commit({"outputs": [{"file": "source_3.wav"}]})
    (tmp_path / "notes.txt").write_text("mine")
    with RunFolder(tmp_path) as run:
        run.stage("source_1.wav", _write("y"))
        run.commit({"outputs": [{"file": "source_1.wav"}]})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "notes.txt", "source_1.wav"]


def test_check_refuses_non_empty_folder_without_force(tmp_path: Path) -> None:
    check_run_folder(tmp_path / "absent", force=False, inputs=[])
    check_run_folder(tmp_path, force=False, inputs=[])
    (tmp_path / "x.wav").write_text("")
    with pytest.raises(OutputError, match="--force"):
        check_run_folder(tmp_path, force=False, inputs=[])
    check_run_folder(tmp_path, force=True, inputs=[])


def test_check_refuses_folder_holding_an_input(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    song.write_text("")
    with pytest.raises(OutputError, match="never writes over an input"):
        check_run_folder(tmp_path, force=True, inputs=[song])


def test_check_refuses_a_file_as_folder(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(OutputError, match="not a folder"):
        check_run_folder(target, force=True, inputs=[])


def test_write_atomically_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from demix.outputs import write_atomically

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "new" / "deep" / "model.npz", broken)
    assert list(tmp_path.iterdir()) == []
    write_atomically(tmp_path / "ok.txt", _write("done"))
    assert [p.name for p in tmp_path.iterdir()] == ["ok.txt"]
