"""The identify model: a small neural network, a novelty gate, and their file format.

A window's features ``f`` ``(dim,)`` are standardised, ``z = (f - mean) / scale``, and fed to a
multi-layer perceptron (ReLU hidden layers, softmax output) giving ``P(label | window)``. The
softmax always sums to one, so on its own it names *somebody* even for a voice nobody enrolled.
The gate says whether a window looks like a label at all: its squared Mahalanobis distance to
the label's mean, ``d²_k = (z - μ_k)ᵀ Σ⁻¹ (z - μ_k)`` with ``Σ`` the pooled within-label
covariance (Ledoit–Wolf shrinkage), must not exceed ``tau``, the 90th percentile of that distance
for held-out windows of enrolled labels in cross-validation. A file's probability for label ``k``
is the mean over its audible windows of ``P(k | window) · [d²_k ≤ tau]``; what is left to one,
``1 - Σ_k p_k``, is the share of the file that matches nobody enrolled.

The file is plain data: an ``.npz`` of float arrays plus a JSON ``metadata`` string, read with
``allow_pickle=False`` (model files get shared, and unpickling runs code). The forward pass is
numpy, so labelling needs neither scikit-learn nor anything pickled.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demix import __version__
from demix.errors import ParameterError
from demix.outputs import is_safe_label, read_npz, write_atomically
from demix.speakers.features import FeatureSettings

FORMAT = "demix-identify-model"
FORMAT_VERSION = 1
#: Limits on what a model file may claim, checked from its headers before anything is read.
MAX_LABELS = 1000
MAX_LAYERS = 8
MAX_ARRAY_VALUES = 1 << 22
MAX_METADATA_CHARS = 1 << 22


@dataclass(frozen=True)
class SpeakerModel:
    """Everything labelling needs: labels, feature settings, network weights and the gate."""

    labels: tuple[str, ...]
    settings: FeatureSettings
    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weights (n_in, n_out), bias (n_out,))
    class_means: np.ndarray  # (n_labels, dim), standardised
    precision: np.ndarray  # (dim, dim), inverse pooled within-label covariance
    tau: float
    threshold: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)  # enrolment record: clips, CV scores

    def window_scores(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``P(label | window)`` and ``d²`` to each label, both ``(n_windows, n_labels)``."""
        Z = (F - self.mean) / self.scale
        h = Z
        for i, (W, b) in enumerate(self.layers):
            h = h @ W + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        h = h - h.max(axis=1, keepdims=True)
        P = np.exp(h)
        P /= P.sum(axis=1, keepdims=True)
        diff = Z[:, None, :] - self.class_means[None, :, :]
        d2 = np.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return P, d2

    def probabilities(self, F: np.ndarray) -> np.ndarray:
        """Per-label probabilities ``(n_labels,)`` of a clip from its windows ``(n_windows, dim)``.

        The mean over windows of the gated network output; all zeros for a clip without an
        audible window.
        """
        if F.shape[0] == 0:
            return np.zeros(len(self.labels))
        P, d2 = self.window_scores(F)
        return np.mean(P * (d2 <= self.tau), axis=0)

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "demix_version": __version__,
            "labels": list(self.labels),
            "features": self.settings.as_dict(),
            "classifier": {
                "kind": "mlp",
                "hidden_activation": "relu",
                "output": "softmax",
                "layers": len(self.layers),
            },
            "gate": {"kind": "mahalanobis", "tau": self.tau},
            "threshold": self.threshold,
            **self.info,
        }


def save_model(path: Path, model: SpeakerModel, *, force: bool) -> None:
    """Write ``model`` to ``path`` (npz) atomically; an existing file needs ``force``."""
    if path.exists() and not force:
        raise ParameterError(f"model file {path} already exists; use --force to replace it")
    if path.exists() and path.is_dir():
        raise ParameterError(f"model file {path} is a folder")
    arrays: dict[str, Any] = {
        "mean": model.mean,
        "scale": model.scale,
        "class_means": model.class_means,
        "precision": model.precision,
    }
    for i, (W, b) in enumerate(model.layers):
        arrays[f"layer_{i}_weights"] = W
        arrays[f"layer_{i}_bias"] = b
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    arrays["metadata"] = np.array(json.dumps(model.metadata()))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load_model(path: Path) -> SpeakerModel:
    """Read a model file, refusing anything that is not one (pickles above all)."""
    what = f"model {path}"
    if not path.is_file():
        raise ParameterError(f"{what}: no such file")
    # Headers first (a pickle, an object array or a shape claiming terabytes is refused unread),
    # the metadata alone, then only the arrays it names.
    text = read_npz(
        path, {"metadata": 1}, what=what, kind="demix identify model", max_bytes=4 * MAX_METADATA_CHARS
    )["metadata"]
    try:
        meta = json.loads(str(text)) if text.dtype.kind == "U" else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise ParameterError(f"{what}: not a demix identify model (no JSON metadata)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ParameterError(f"{what}: not a demix identify model (format {FORMAT!r} expected)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ParameterError(
            f"{what}: model format version {meta.get('format_version')} is not {FORMAT_VERSION}; "
            f"enrol again with this demix ({__version__})"
        )
    try:
        n_layers = int(meta["classifier"]["layers"])
        if not 1 <= n_layers <= MAX_LAYERS:
            raise ValueError(f"{n_layers} network layers (1 to {MAX_LAYERS} expected)")
        names = ["mean", "scale", "class_means", "precision"]
        names += [f"layer_{i}_{part}" for i in range(n_layers) for part in ("weights", "bias")]
        arrays = read_npz(
            path,
            dict.fromkeys(names, MAX_ARRAY_VALUES),
            what=what,
            kind="demix identify model",
            max_bytes=1 << 28,
        )
        return _from_data(meta, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ParameterError(f"{what}: damaged model file ({exc})") from None


def _from_data(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SpeakerModel:
    labels = tuple(meta["labels"])
    if not 2 <= len(labels) <= MAX_LABELS:
        raise ValueError(f"{len(labels)} labels (2 to {MAX_LABELS} expected)")
    unsafe = [label for label in labels if not is_safe_label(label)]
    if unsafe:  # labels name files (--rename): checked where they are read, not only at enrol
        raise ValueError(f"label {str(unsafe[0])[:60]!r} is not a safe file name (letters, digits, . _ -)")
    settings = FeatureSettings.from_dict(meta["features"])
    n_layers = int(meta["classifier"]["layers"])
    layers = tuple(
        (_floats(arrays, f"layer_{i}_weights", 2), _floats(arrays, f"layer_{i}_bias", 1))
        for i in range(n_layers)
    )
    model = SpeakerModel(
        labels=labels,
        settings=settings,
        mean=_floats(arrays, "mean", 1),
        scale=_floats(arrays, "scale", 1),
        layers=layers,
        class_means=_floats(arrays, "class_means", 2),
        precision=_floats(arrays, "precision", 2),
        tau=float(meta["gate"]["tau"]),
        threshold=float(meta["threshold"]),
        info={k: v for k, v in meta.items() if k in ("enrolment", "cross_validation")},
    )
    _check_shapes(model)
    return model


def _floats(arrays: dict[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    value = arrays[key]
    if value.dtype.kind != "f" or value.ndim != ndim or not np.all(np.isfinite(value)):
        raise ValueError(f"{key} must be a finite {ndim}-D float array")
    return value.astype(np.float64)


def _check_shapes(model: SpeakerModel) -> None:
    dim, k = model.settings.dim, len(model.labels)
    if k < 2 or len(set(model.labels)) != k:
        raise ValueError("labels must be at least two distinct names")
    if model.mean.shape != (dim,) or model.scale.shape != (dim,) or np.any(model.scale <= 0):
        raise ValueError(f"mean and scale must hold {dim} values (scale > 0)")
    if model.class_means.shape != (k, dim) or model.precision.shape != (dim, dim):
        raise ValueError("class statistics do not match the labels and features")
    width = dim
    for W, b in model.layers:
        if W.shape[0] != width or b.shape != (W.shape[1],):
            raise ValueError("network layers do not chain")
        width = W.shape[1]
    if not model.layers or width != k:
        raise ValueError("the network's output does not match the labels")
    if not np.isfinite(model.tau) or model.tau <= 0:
        raise ValueError("gate distance must be positive")
    if not 0 < model.threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
