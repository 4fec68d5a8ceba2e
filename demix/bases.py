"""NMF bases files: plain data (npz arrays + JSON metadata), never pickle.

Bases files get shared, and unpickling runs code, so they are loaded with ``allow_pickle=False``.
The metadata pins the spectrogram settings the bases were learnt with; a file whose settings
disagree with the run (another FFT size, hop, rate or beta) is refused with the two values.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demix import __version__, checks
from demix.errors import ParameterError
from demix.methods.nmf_separate import SpectralFit
from demix.outputs import read_npz, safe_name, write_atomically
from demix.types import Callback, Separation

FORMAT = "demix-nmf-bases"
SETTINGS = ("n_fft", "hop", "sample_rate", "beta")
#: Largest bases matrix read (values): 32769 frequencies (n_fft 65536) × 2048 components.
MAX_BASES_VALUES = 32769 * 2048
#: Largest metadata string read (characters): the JSON lists every example's path and SHA-256.
MAX_METADATA_CHARS = 1 << 20


@dataclass(frozen=True)
class Bases:
    """Spectral bases ``W`` ``(n_freqs, n_components)`` and the settings they were learnt with."""

    W: np.ndarray
    metadata: dict[str, Any]


def save_bases(path: Path, W: np.ndarray, metadata: dict[str, Any], *, force: bool) -> None:
    """Write ``W`` and its metadata to ``path`` (npz) atomically; an existing file needs ``force``."""
    if path.exists() and not force:
        raise ParameterError(f"-o/--out {path} already exists; use --force to replace it")
    meta = {"format": FORMAT, "demix_version": __version__, **metadata}
    buffer = io.BytesIO()
    np.savez(buffer, W=W.astype(np.float32), metadata=np.array(json.dumps(meta)))
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load_bases(path: Path) -> Bases:
    """Read a bases file, refusing anything that is not one (pickles above all).

    Only the arrays ``W`` and ``metadata`` are read, each checked from its header first (type,
    shape within :data:`MAX_BASES_VALUES` / :data:`MAX_METADATA_CHARS`), so a damaged or hostile
    file claiming terabytes is refused without reading it.
    """
    arrays = read_npz(
        path,
        {"W": MAX_BASES_VALUES, "metadata": 1},
        what=f"--bases {path}",
        kind="demix bases file",
        max_bytes=MAX_BASES_VALUES * 8,
    )
    W, text = arrays["W"], arrays["metadata"]
    if W.dtype.kind != "f" or text.dtype.kind != "U" or text.dtype.itemsize > 4 * MAX_METADATA_CHARS:
        raise ParameterError(f"--bases {path}: not a demix bases file (float W and JSON metadata expected)")
    try:
        meta = json.loads(str(text))
    except ValueError:
        raise ParameterError(f"--bases {path}: not a demix bases file (its metadata is not JSON)") from None
    W = W.astype(np.float64)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ParameterError(f"--bases {path}: not a demix bases file (format {FORMAT!r} expected)")
    if W.ndim != 2 or W.size == 0 or not np.all(np.isfinite(W)) or np.any(W < 0):
        raise ParameterError(f"--bases {path}: W must be a non-negative finite 2-D array")
    return Bases(W=W, metadata=meta)


def check_settings(path: Path, bases: Bases, settings: dict[str, Any]) -> None:
    """Refuse bases learnt with other spectrogram settings than this run's."""
    for key in SETTINGS:
        theirs, ours = bases.metadata.get(key), settings[key]
        if theirs != ours:
            raise ParameterError(
                f"--bases {path} was learnt with {key}={theirs} but this run uses {key}={ours}; "
                f"relearn the bases or pass matching options"
            )


@dataclass(frozen=True)
class SupervisedParams(SpectralFit):
    """Parameters of ``demix nmf --bases``: bases files by label, and free components.

    ``bases`` maps each label (it names the output) to its file; labels must be file-safe.
    """

    bases: dict[str, str] = field(default_factory=dict)
    free: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.integer("--free", self.free, low=0, high=4096)
        if not self.bases:
            raise ParameterError("--bases: expected at least one LABEL=FILE.npz")
        for label in self.bases:
            if not label or label != safe_name(label) or (self.free and label == "residual"):
                raise ParameterError(
                    f"--bases {label!r}: labels must be unique file-safe names (letters, digits, _ . -)"
                    + (" other than 'residual', which names the free components" if self.free else "")
                )


def parse_bases_specs(specs: list[str]) -> dict[str, str]:
    """``--bases LABEL=FILE`` options as ``{label: file}`` (labels unique)."""
    parsed: dict[str, str] = {}
    for spec in specs:
        label, sep, file = spec.partition("=")
        if not sep or not label or not file:
            raise ParameterError(f"--bases {spec!r}: expected LABEL=FILE.npz, e.g. voice=voice.npz")
        if label in parsed:
            raise ParameterError(f"--bases {spec!r}: the label {label!r} is given twice")
        parsed[label] = file
    return parsed


def separate_supervised(
    X: np.ndarray, sample_rate: int, params: SupervisedParams, callback: Callback | None = None
) -> Separation:
    """Load the bases files, check they were learnt with this run's settings, and separate."""
    from demix.methods.nmf_separate import nmf_separate_supervised

    settings = {"sample_rate": sample_rate, "n_fft": params.n_fft, "hop": params.hop, "beta": params.beta}
    loaded = {}
    for label, file in params.bases.items():
        found = load_bases(Path(file))
        check_settings(Path(file), found, settings)
        loaded[label] = found.W
    return nmf_separate_supervised(
        X, sample_rate, bases=loaded, n_free=params.free, beta=params.beta, n_fft=params.n_fft,
        hop=params.hop, max_iter=params.max_iter, tol=params.tol, seed=params.seed,
        sparsity=params.sparsity, callback=callback,
    )  # fmt: skip
