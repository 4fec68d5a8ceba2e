"""NMF bases files: plain data (npz arrays + JSON metadata), never pickle.

Bases files get shared, and unpickling runs code, so they are loaded with ``allow_pickle=False``.
The metadata pins the spectrogram settings the bases were learnt with; a file whose settings
disagree with the run (another FFT size, hop, rate or beta) is refused with the two values.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demix import __version__
from demix.audio import read_audio, sha256
from demix.errors import ParameterError
from demix.inputs import expand_inputs
from demix.outputs import safe_name, write_atomically

FORMAT = "demix-nmf-bases"
SETTINGS = ("n_fft", "hop", "sample_rate", "beta")


@dataclass(frozen=True)
class Bases:
    """Spectral bases ``W`` ``(n_freqs, n_components)`` and the settings they were learnt with."""

    W: np.ndarray
    metadata: dict[str, Any]


def save_bases(path: Path, W: np.ndarray, metadata: dict[str, Any], *, force: bool) -> None:
    """Write ``W`` and its metadata to ``path`` (npz) atomically; an existing file needs ``force``."""
    if path.exists() and not force:
        raise ParameterError(f"--save-bases {path} already exists; use --force to replace it")
    meta = {"format": FORMAT, "demix_version": __version__, **metadata}
    buffer = io.BytesIO()
    np.savez(buffer, W=W.astype(np.float32), metadata=np.array(json.dumps(meta)))
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load_bases(path: Path) -> Bases:
    """Read a bases file, refusing anything that is not one (pickles above all)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            W = np.asarray(data["W"], dtype=np.float64)
            meta = json.loads(str(data["metadata"]))
    except FileNotFoundError:
        raise ParameterError(f"--bases {path}: no such file") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise ParameterError(f"--bases {path}: not a demix bases file (npz with W and metadata)") from None
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


def load_labelled_bases(specs: list[str]) -> dict[str, tuple[Path, Bases]]:
    """Parse ``--bases LABEL=FILE`` options and load each file; labels name the outputs."""
    loaded: dict[str, tuple[Path, Bases]] = {}
    for spec in specs:
        label, sep, file = spec.partition("=")
        if not sep or not label or not file:
            raise ParameterError(f"--bases {spec!r}: expected LABEL=FILE.npz, e.g. voice=voice.npz")
        if label != safe_name(label) or label in loaded:
            raise ParameterError(
                f"--bases {spec!r}: labels must be unique file-safe names (letters, digits, _ . -)"
            )
        loaded[label] = (Path(file), load_bases(Path(file)))
    return loaded


def learn_bases_file(
    specs: list[str],
    path: Path,
    *,
    components: int,
    sample_rate: int | None,
    force: bool,
    **settings: Any,
) -> dict[str, Any]:
    """Learn bases from clean example file(s), concatenated in time, and save them to ``path``."""
    from demix.methods.nmf_separate import learn_bases

    files = expand_inputs(specs)
    if path.exists() and not force:
        raise ParameterError(f"--save-bases {path} already exists; use --force to replace it")
    first = read_audio(files[0], sample_rate=sample_rate)
    signals = [first.data] + [read_audio(f, sample_rate=first.sample_rate).data for f in files[1:]]
    X = np.concatenate([s.mean(axis=0) for s in signals])[None, :]
    init = settings.pop("init")
    W = learn_bases(X, first.sample_rate, n_components=components, init=init, **settings)
    meta = {
        "n_fft": settings["n_fft"],
        "hop": settings["hop"],
        "beta": settings["beta"],
        "sample_rate": first.sample_rate,
        "n_components": components,
        "sources": [{"path": str(f), "sha256": sha256(f)} for f in files],
    }
    save_bases(path, W, meta, force=force)
    return meta
