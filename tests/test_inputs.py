"""Input expansion (files, folders, globs) and the batch layout of run folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from demix.errors import ParameterError
from demix.inputs import expand_inputs, run_folders
from demix.outputs import safe_name


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folders_recursive_and_globs(tmp_path: Path) -> None:
    a = _touch(tmp_path / "d" / "a.wav")
    b = _touch(tmp_path / "d" / "sub" / "b.FLAC")
    _touch(tmp_path / "d" / "notes.txt")
    c = _touch(tmp_path / "c.mp3")
    assert expand_inputs([str(tmp_path / "d")]) == [a, b]
    assert expand_inputs([str(tmp_path / "*.mp3"), str(c)]) == [c]


@pytest.mark.parametrize("spec", ["missing.wav", "*.nothing"])
def test_nothing_found_is_an_error(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ParameterError):
        expand_inputs([str(tmp_path / spec)])


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="no audio files"):
        expand_inputs([str(tmp_path)])


def test_run_folders_single_and_clashes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_folders([Path("x/song.wav")], out) == [out]
    names = [p.name for p in run_folders([Path("a/song.wav"), Path("b/song.flac"), Path("c/Song.wav")], out)]
    assert names == ["song", "song_2", "Song_3"]


def test_safe_name() -> None:
    assert safe_name("My Song: live/2024?") == "My_Song_live_2024"
    assert safe_name("...") == "input"
    assert safe_name("Café Müller") == "Cafe_Muller"
