"""Turn what the user typed (files, folders, globs) into a list of inputs and their run folders."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

from demix.audio import AUDIO_EXTENSIONS
from demix.errors import ParameterError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """Expand files, folders (recursively, audio extensions only) and glob patterns, in order.

    A spec that names nothing is an error, so a typo never silently shrinks a batch.
    """
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and _is_audio(p))
            if not matches:
                raise ParameterError(f"folder {spec} holds no audio files ({_extensions()})")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if _is_audio(Path(p)))
            if not matches:
                raise ParameterError(f"pattern {spec!r} matches no audio files")
        else:
            raise ParameterError(f"input {spec}: no such file or folder")
        found.extend(m for m in matches if m not in found)
    if not found:
        raise ParameterError("no input given")
    return found


def run_folders(inputs: Sequence[Path], out: Path) -> list[Path]:
    """One input: ``out`` itself. Several: ``out/<stem>/``, with ``_2``, ``_3`` … on a clash."""
    if len(inputs) == 1:
        return [out]
    taken: set[str] = set()
    folders = []
    for item in inputs:
        stem = safe_name(item.stem)
        name, k = stem, 1
        while name.lower() in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name.lower())
        folders.append(out / name)
    return folders


def safe_name(text: str) -> str:
    """A file-system-safe name: letters, digits, dot, dash and underscore."""
    return _UNSAFE.sub("_", text).strip("._") or "input"


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _extensions() -> str:
    return ", ".join(sorted(AUDIO_EXTENSIONS))
