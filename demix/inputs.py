"""Turn what the user typed (files, folders, globs, URLs) into a list of inputs and their run folders."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from demix import checks
from demix.audio import AUDIO_EXTENSIONS
from demix.errors import ParameterError
from demix.fetch import check_url, looks_like_url, url_stem
from demix.outputs import safe_name

Input = Path | str
"""A local audio file, an http(s) URL (kept as ``str``) that the pipeline fetches at load time,
or :data:`STDIN`."""

STDIN = "-"
"""The input spec for audio piped on standard input (any format :func:`demix.audio.read_audio` reads)."""


class Named(Protocol):
    """Anything with a file-name stem: a Path, or a fetched URL's media (title and id)."""

    @property
    def stem(self) -> str: ...


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """Expand files, folders (recursively, audio extensions only) and glob patterns, in order.

    A spec that names nothing is an error, so a typo never silently shrinks a batch. URLs are
    refused here: the callers of this function read local files only.
    """
    found: list[Path] = []
    for spec in specs:
        if _is_url(spec):
            raise ParameterError(f"input {spec}: this command reads local files; use `demix fetch` first")
        found.extend(m for m in _expand(spec) if m not in found)
    if not found:
        raise ParameterError("no input given")
    return found


def expand_sources(specs: Sequence[str]) -> list[Input]:
    """Like :func:`expand_inputs`, but an http(s) URL passes through as a ``str`` input.

    Other schemes (``file:``, ``ftp:`` …) are refused, so a URL never reads a local file by
    another road and never reaches anything but the one network module.
    """
    found: list[Input] = []
    for spec in specs:
        if spec == STDIN:
            if STDIN in found:
                raise ParameterError("standard input (-) can be read only once")
            found.append(STDIN)
            continue
        matches: list[Input] = [check_url(spec)] if _is_url(spec) else list(_expand(spec))
        found.extend(m for m in matches if m not in found)
    if not found:
        raise ParameterError("no input given")
    return found


def label(item: Input) -> str:
    """How an input is shown in progress bars: a file's name, or the URL."""
    return item.name if isinstance(item, Path) else item


def input_stem(item: Input) -> str:
    """The ``{input}`` of naming templates: a file's stem, ``stdin``, or a URL's safe name."""
    if isinstance(item, Path):
        return safe_name(item.stem)
    return "stdin" if item == STDIN else url_stem(item)


def stdin_file() -> Path:
    """Standard input, read once into a private temporary file (removed at exit); its path."""
    global _stdin_path
    if _stdin_path is None:
        import atexit
        import shutil
        import sys
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="demix-stdin-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "stdin"
        with path.open("wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
        if path.stat().st_size == 0:
            raise ParameterError("standard input (-) is empty: pipe an audio file into demix")
        _stdin_path = path
    return _stdin_path


_stdin_path: Path | None = None


def _expand(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        matches = sorted(p for p in path.rglob("*") if p.is_file() and _is_audio(p))
        if not matches:
            raise ParameterError(f"folder {spec} holds no audio files ({_extensions()})")
        return matches
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if _is_audio(Path(p)))
        if not matches:
            raise ParameterError(f"pattern {spec!r} matches no audio files")
        return matches
    raise ParameterError(f"input {spec}: no such file or folder")


def _is_url(spec: str) -> bool:
    return looks_like_url(spec) and not Path(spec).exists()


DEFAULT_FOLDER_TEMPLATE = "{input}"


def check_folder_template(template: str) -> None:
    """Refuse a run-folder template with unknown fields, or one that puts every run in one folder."""
    fields = checks.template_fields("--folder", template)
    if fields - {"input", "index"}:
        raise ParameterError(f"--folder {template!r}: expected the fields {{input}} and {{index}} only")
    if not fields:
        raise ParameterError(
            f"--folder {template!r} would put every run in one folder; use {{input}} or {{index}}"
        )


def run_folders(inputs: Sequence[Named], out: Path, template: str = DEFAULT_FOLDER_TEMPLATE) -> list[Path]:
    """One input: ``out`` itself. Several: ``out/<template>/`` (``{input}``: the stem; ``{index}``:
    1-based position), with ``_2``, ``_3`` … on a clash.

    A URL's stem is its title and id (:attr:`demix.fetch.Media.stem`), known once it is fetched.
    """
    if len(inputs) == 1:
        return [out]
    check_folder_template(template)
    taken: set[str] = set()
    folders = []
    for index, item in enumerate(inputs, start=1):
        stem = safe_name(template.format(input=item.stem, index=index))
        name, k = stem, 1
        while name.lower() in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name.lower())
        folders.append(out / name)
    return folders


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _extensions() -> str:
    return ", ".join(sorted(AUDIO_EXTENSIONS))
