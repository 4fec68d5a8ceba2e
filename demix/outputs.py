"""Run folders that are either finished or absent: staged writes, manifest last, no leftovers.

Every output of a run is first written under a hidden staged name inside the run folder. Only
when all of them are written are they renamed into place, and the manifest goes last, so a
folder with a ``demix.json`` is a finished run. If anything fails, the staged files are removed
and a folder demix created is removed again; existing files are touched only with ``--force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from demix.errors import OutputError

MANIFEST = "demix.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, default: str = "input") -> str:
    """A file-system-safe ASCII name: accents folded (é → e), anything but letters, digits,
    ``.``, ``-`` and ``_`` to ``_``; ``default`` when nothing is left."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _UNSAFE.sub("_", folded).strip("._") or default


def check_run_folder(folder: Path, *, force: bool, inputs: Iterable[Path]) -> None:
    """Refuse, before any work, a run folder that would replace results or inputs.

    Without ``force`` the folder must be absent or empty; with it, an existing folder is reused,
    but never when an input file lies inside it (its old outputs are deleted when replaced).
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder")
    if not folder.exists() or not any(folder.iterdir()):
        return
    if not force:
        raise OutputError(
            f"output folder {folder} already exists and is not empty; use --force to replace it"
        )
    root = folder.resolve()
    for item in inputs:
        if root in item.resolve().parents:
            raise OutputError(
                f"input {item} lies inside output folder {folder}; demix never writes over an input"
            )


class RunFolder:
    """Context manager that stages a run's files and commits them together, manifest last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._staged: list[tuple[Path, Path]] = []
        self._created: Path | None = None

    def __enter__(self) -> RunFolder:
        self._created = make_folder(self.folder)
        return self

    def stage(self, name: str, writer: Callable[[Path], None]) -> Path:
        """Call ``writer(tmp)`` for the output ``name`` (a path relative to the folder)."""
        final = self.folder / name
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.part")
        self._staged.append((tmp, final))
        writer(tmp)
        return final

    def commit(self, manifest: dict[str, Any]) -> None:
        """Replace the previous run's outputs by the staged ones, then write the manifest."""
        old_manifest = self.folder / MANIFEST
        stale = _outputs_of(old_manifest)
        with contextlib.suppress(FileNotFoundError):
            old_manifest.unlink()
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
        for tmp, final in self._staged:
            os.replace(tmp, final)
        self._staged.clear()
        write_manifest(self.folder, manifest)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            return
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)


def make_folder(folder: Path) -> Path | None:
    """Create ``folder`` (and missing parents); return the topmost folder created, if any."""
    if folder.exists():
        return None
    created = folder
    while not created.parent.exists():
        created = created.parent
    folder.mkdir(parents=True)
    return created


def write_atomically(path: Path, writer: Callable[[Path], object]) -> None:
    """Write one file: ``writer(tmp)`` beside ``path``, then rename. On failure nothing is left,
    neither the temporary file nor the folders this call created."""
    created = make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.part")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Replace ``folder``'s ``demix.json`` atomically (strict JSON: no NaN)."""
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    write_atomically(folder / MANIFEST, lambda tmp: tmp.write_text(text))


def _outputs_of(manifest_path: Path) -> list[str]:
    """Files a previous run recorded (outputs and references), so ``--force`` removes stale ones."""
    try:
        old = json.loads(manifest_path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    names = [entry["file"] for entry in old.get("outputs", []) if isinstance(entry, dict)]
    return [name for name in names if isinstance(name, str) and ".." not in Path(name).parts]
