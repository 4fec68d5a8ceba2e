"""``--rename``: name a run folder's sources after their labels and record it in the manifest.

Everything is checked before anything moves: every folder must be a finished demix run whose
manifest lists the files as sources, and no new name may be taken by a file that stays. Then, per
folder, the files move to hidden temporary names, from there to their labels (so two sources can
swap names), and the manifest is rewritten through a temporary file and ``os.replace``. A failure
part-way moves the files back. Unknown sources keep their names.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demix.audio import sha256
from demix.errors import OutputError, ParameterError
from demix.manifest import read_manifest
from demix.outputs import MANIFEST, is_safe_label, write_manifest
from demix.speakers.label import Labelled


@dataclass
class _Plan:
    folder: Path
    manifest: dict[str, Any]
    moves: list[tuple[str, str]]  # (old name, new name), only the names that change


def rename_runs(
    results: list[Labelled], labels: tuple[str, ...], model_path: Path, settings: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """Rename labelled sources in their run folders; return ``{folder: {old: new}}``."""
    by_folder: dict[Path, list[Labelled]] = {}
    for item in results:
        by_folder.setdefault(item.path.parent, []).append(item)
    record = {
        "model": str(model_path),
        "model_sha256": sha256(model_path),
        "labels": list(labels),
        **settings,
    }
    plans = [_plan(folder, items, record) for folder, items in by_folder.items()]
    for plan in plans:
        _execute(plan)
    return {str(p.folder): dict(p.moves) for p in plans}


def _plan(folder: Path, items: list[Labelled], record: dict[str, Any]) -> _Plan:
    if not (folder / MANIFEST).is_file():
        raise ParameterError(f"--rename needs demix run folders; {folder} has no {MANIFEST}")
    manifest = read_manifest(folder)
    outputs = {o.get("file"): o for o in manifest.get("outputs", []) if isinstance(o, dict)}
    taken: set[str] = set()
    new_names: dict[str, str] = {}
    for item in sorted(items, key=lambda it: -_probability(it)):
        old = item.path.name
        entry = outputs.get(old)
        if entry is None or entry.get("role") != "source":
            raise ParameterError(f"--rename: {item.path} is not a source listed in {folder / MANIFEST}")
        name = old
        if item.label is not None and not is_safe_label(item.label):  # a model read elsewhere
            raise ParameterError(
                f"--rename: label {item.label[:60]!r} is not a safe file name; nothing was renamed"
            )
        if item.label is not None:
            name, k = f"{item.label}{item.path.suffix}", 1
            while name in taken:
                k += 1
                name = f"{item.label}_{k}{item.path.suffix}"
        taken.add(name)
        new_names[old] = name
        entry.update(
            label=item.label,
            label_probability=None if item.candidate is None else round(_probability(item), 4),
        )
        if name != old:
            entry.update(file=name, renamed_from=entry.get("renamed_from", old))
    leaving = {old for old, new in new_names.items() if new != old}
    others = set(outputs) - set(new_names)  # outputs of the run that are not being labelled
    for old, new in new_names.items():
        if new != old and (new in others or ((folder / new).exists() and new not in leaving)):
            raise OutputError(
                f"--rename: {folder / new} already exists and is not one of the sources being renamed; "
                "nothing was renamed"
            )
    manifest["identify"] = record
    return _Plan(folder, manifest, [(o, n) for o, n in new_names.items() if n != o])


def _probability(item: Labelled) -> float:
    return 0.0 if item.candidate is None else float(item.probabilities[item.candidate])


def _execute(plan: _Plan) -> None:
    folder = plan.folder
    done: list[tuple[Path, Path]] = []  # (from, to), undone in reverse on failure
    try:
        staged = []
        for old, new in plan.moves:
            tmp = folder / f".{old}.rename-part"
            os.replace(folder / old, tmp)
            done.append((folder / old, tmp))
            staged.append((tmp, folder / new))
        for tmp, final in staged:
            os.replace(tmp, final)
            done.append((tmp, final))
        write_manifest(folder, plan.manifest)
    except BaseException:
        for src, dst in reversed(done):
            with contextlib.suppress(OSError):
                os.replace(dst, src)
        raise
