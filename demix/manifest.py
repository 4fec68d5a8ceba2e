"""``demix.json``: what was done, to what, with which result — the contract scripts read.

The keys follow DESIGN.md's contract. Values are plain JSON (no NaN: a missing number is null),
rounded only where more digits carry no information.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demix import __version__
from demix.audio import sha256
from demix.errors import ParameterError
from demix.outputs import MANIFEST
from demix.types import Signal


def new_manifest(command: str, params: dict[str, Any]) -> dict[str, Any]:
    """The manifest's fixed head; the pipeline fills in inputs, outputs, model and timings."""
    return {"demix_version": __version__, "command": command, "params": dict(params)}


def input_record(path: Path, signal: Signal) -> dict[str, Any]:
    """Identify an input by path and content hash, with the shape it was read in."""
    return {
        "path": str(path),
        "sha256": sha256(path),
        "sample_rate": signal.sample_rate,
        "channels": signal.n_channels,
        "frames": signal.n_samples,
    }


def output_record(file: str, role: str, data: np.ndarray, **extra: Any) -> dict[str, Any]:
    """Describe a written file by its level as written (after the run gain)."""
    return {
        "file": file,
        "role": role,
        "rms": round(float(np.sqrt(np.mean(np.square(data)))), 6),
        "peak": round(float(np.max(np.abs(data), initial=0.0)), 6),
        **extra,
    }


def matrix(values: np.ndarray) -> list[list[float]]:
    """A matrix as nested lists of floats, for JSON."""
    return [[float(v) for v in row] for row in np.atleast_2d(values)]


def clean(value: Any) -> Any:
    """Make ``value`` strict JSON: numpy scalars to Python, NaN/inf to null, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def read_manifest(folder: Path) -> dict[str, Any]:
    """Load a run or mix folder's manifest, with a clear error when it is missing or broken."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ParameterError(f"{folder} has no {MANIFEST}: not a finished demix folder") from None
    except ValueError as exc:
        raise ParameterError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "command" not in data:
        raise ParameterError(f"{path} is not a demix manifest")
    return data


def runs_document(
    runs: list[dict[str, Any]], failures: Sequence[tuple[str, Exception]] | None = None
) -> dict[str, Any]:
    """What ``--json`` prints for any number of inputs: ``{"runs": [record…], "summary": …}``.

    Every command that writes run folders (or files: ``fetch``) prints this one shape; each
    record carries its ``folder``; the summary lists the inputs that succeeded, the ones that
    failed with their error, and the ones skipped. Schema: ``demix/schemas/runs.schema.json``.
    """
    return {
        "runs": runs,
        "summary": {
            "succeeded": [_input_of(run) for run in runs],
            "failed": [{"path": path, "error": str(exc)} for path, exc in failures or []],
            "skipped": [],
        },
    }


def _input_of(run: dict[str, Any]) -> str:
    inputs = run.get("inputs")
    if inputs:
        return str(inputs[0].get("url", inputs[0]["path"]))
    return str(run.get("url") or run.get("folder"))
