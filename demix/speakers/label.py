"""Labelling: files → per-label probabilities → one label per source, assigned per run.

The files of one folder are taken as the sources of one separation run: two sources of a run
cannot both be the same speaker, so labels are assigned jointly by the Hungarian algorithm,
maximising the sum of the chosen probabilities — the expected number of right labels
(``scipy.optimize.linear_sum_assignment``). The sum, not the sum of logs: in log space a source
matching nobody (all probabilities near 0) would weigh more than a clear match and could take its
label. With more sources than labels some stay unassigned. ``allow_repeats`` labels each file on
its own.

A source whose assigned label has a probability below ``threshold`` (by default the model's,
calibrated at enrolment, between 0.5 and 0.9) is reported as unknown, ``label: null``, with the
candidate label and its probability kept for inspection. The runner-up is the most probable
other label; it can be more probable than the candidate when the joint assignment gave it to
another source of the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demix.audio import read_audio
from demix.errors import ParameterError
from demix.inputs import expand_inputs
from demix.manifest import read_manifest
from demix.outputs import MANIFEST
from demix.speakers.features import clip_windows
from demix.speakers.model import SpeakerModel


@dataclass(frozen=True)
class Labelled:
    """One file's outcome: probabilities per label, the candidate and whether it passed."""

    path: Path
    probabilities: np.ndarray  # (n_labels,)
    windows: int
    candidate: int | None  # index of the assigned (or best) label; None: no label left or silent
    label: str | None  # the candidate's name when its probability reaches the threshold

    def record(self, labels: Sequence[str]) -> dict[str, Any]:
        p = self.probabilities
        order = [int(k) for k in np.argsort(-p, kind="stable") if k != self.candidate]
        runner = order[0] if order and self.windows else None
        return {
            "file": str(self.path),
            "label": self.label,
            "probability": None if self.candidate is None else round(float(p[self.candidate]), 4),
            "candidate": None if self.candidate is None else labels[self.candidate],
            "runner_up": None if runner is None else labels[runner],
            "runner_up_probability": None if runner is None else round(float(p[runner]), 4),
            "unknown_probability": round(float(max(0.0, 1.0 - p.sum())), 4),
            "windows": self.windows,
            "probabilities": {name: round(float(v), 4) for name, v in zip(labels, p, strict=True)},
        }


def collect_files(specs: Sequence[str]) -> list[Path]:
    """Files to label: a run folder gives its manifest's sources; other folders, every audio file.

    In a folder found by recursion that holds a ``demix.json``, only the outputs it lists as
    sources are taken (not a mix folder's mixture, for example).
    """
    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        found = _run_sources(path) if path.is_dir() and (path / MANIFEST).is_file() else None
        if found is None:
            found = [p for p in expand_inputs([spec]) if _is_source(p, explicit=p == path)]
        files.extend(p for p in found if p not in files)
    if not files:
        raise ParameterError("no audio file to label")
    return files


def _run_sources(folder: Path) -> list[Path]:
    names = [o["file"] for o in _outputs(folder) if o.get("role") == "source"]
    if not names:
        raise ParameterError(f"{folder}/{MANIFEST} lists no separated sources to label")
    return [folder / name for name in names]


def _outputs(folder: Path) -> list[dict[str, Any]]:
    """A run manifest's ``outputs``, each a dict naming a file in the folder itself, or refused."""
    outputs = read_manifest(folder).get("outputs", [])
    if not isinstance(outputs, list):
        raise ParameterError(f"{folder}/{MANIFEST}: 'outputs' is not a list; not a demix run folder")
    for entry in outputs:
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ParameterError(
                f"{folder}/{MANIFEST}: output {str(entry)[:60]!r} does not name a file in the folder"
            )
    return outputs


def _is_source(path: Path, *, explicit: bool) -> bool:
    if explicit or not (path.parent / MANIFEST).is_file():
        return True
    try:
        outputs = _outputs(path.parent)
    except ParameterError:
        return True
    return any(o.get("file") == path.name and o.get("role") == "source" for o in outputs)


def label_files(
    model: SpeakerModel,
    files: Sequence[Path],
    *,
    threshold: float | None = None,
    allow_repeats: bool = False,
) -> list[Labelled]:
    """Probabilities for every file, then the (joint, per folder) assignment of labels.

    ``threshold`` defaults to the model's, calibrated at enrolment.
    """
    if threshold is None:
        threshold = model.threshold
    if not 0.0 < threshold <= 1.0:
        raise ParameterError(f"--threshold must be in (0, 1], got {threshold}")
    probs, windows = [], []
    for path in files:
        x = read_audio(path, sample_rate=model.settings.sample_rate).data.mean(axis=0)
        F = clip_windows(x, model.settings)
        if F.shape[0] == 0:
            warnings.warn(
                f"{path}: no audible window of {model.settings.window_s:g} s; unknown", stacklevel=2
            )
        probs.append(model.probabilities(F))
        windows.append(F.shape[0])
    candidates: list[int | None] = [None] * len(files)
    for group in _groups(files):
        rows = [i for i in group if windows[i] > 0]
        P = np.array([probs[i] for i in rows]).reshape(len(rows), len(model.labels))
        for i, k in zip(rows, assign(P, allow_repeats=allow_repeats), strict=True):
            candidates[i] = k
    return [
        Labelled(
            path=path,
            probabilities=p,
            windows=n,
            candidate=k,
            label=model.labels[k] if k is not None and p[k] >= threshold else None,
        )
        for path, p, n, k in zip(files, probs, windows, candidates, strict=True)
    ]


def assign(P: np.ndarray, *, allow_repeats: bool = False) -> list[int | None]:
    """A label index (or None) per row of probabilities ``P`` ``(n_sources, n_labels)``.

    Jointly, no label twice: the Hungarian assignment maximising the sum of the chosen
    probabilities; rows beyond the number of labels get None. With ``allow_repeats``, each row's
    most probable label.
    """
    if P.shape[0] == 0:
        return []
    if allow_repeats:
        return [int(k) for k in P.argmax(axis=1)]
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(P, maximize=True)
    chosen: list[int | None] = [None] * P.shape[0]
    for r, c in zip(rows, cols, strict=True):
        chosen[int(r)] = int(c)
    return chosen


def _groups(files: Sequence[Path]) -> list[list[int]]:
    """Indices of ``files`` by folder (one folder = one separation run), in first-seen order."""
    groups: dict[Path, list[int]] = {}
    for i, path in enumerate(files):
        groups.setdefault(path.resolve().parent, []).append(i)
    return list(groups.values())
