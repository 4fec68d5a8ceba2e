"""Score a run folder (or files) against references: BSS Eval v3, SI-SDR, improvements, Amari index.

Estimates are matched to references by the Hungarian assignment on SIR, never by name or order.
What each folder holds is read from its manifest; a folder without one is an error, not a guess.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demix import audio, metrics
from demix.errors import ParameterError
from demix.inputs import expand_inputs
from demix.manifest import clean, read_manifest


@dataclass
class Side:
    """One side of an evaluation: files, their signals on the scored channel, and the manifest."""

    files: list[Path]
    signals: list[np.ndarray]
    sample_rate: int
    manifest: dict[str, Any] | None = None
    folder: Path | None = None


@dataclass
class Evaluation:
    """Per-reference scores (matched estimates), what was left unmatched, and the Amari index."""

    scores: list[dict[str, Any]]
    unmatched_estimates: list[str]
    missing_references: list[str]
    amari_index: float | None
    sample_rate: int
    n_samples: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = clean(self.__dict__)
        return result


def load_side(specs: list[str], *, role: str, ref_channel: int) -> Side:
    """Read a demix folder (through its manifest) or a list of files, scoring ``ref_channel``."""
    folder = Path(specs[0]) if len(specs) == 1 and Path(specs[0]).is_dir() else None
    manifest = None
    if folder is not None and (folder / "demix.json").exists():
        manifest = read_manifest(folder)
        files = [folder / name for name in _files_in(manifest, role)]
    else:
        files = expand_inputs(specs)
    signals, rates = [], set()
    for path in files:
        sig = audio.read_audio(path)
        channel = ref_channel if sig.n_channels > 1 else 0
        if channel >= sig.n_channels:
            raise ParameterError(f"--ref-channel {ref_channel} is out of range: {path} has {sig.n_channels}")
        signals.append(sig.data[channel])
        rates.add(sig.sample_rate)
    if len(rates) > 1:
        raise ParameterError(f"{role} files have different sample rates {sorted(rates)}; resample them first")
    return Side(files, signals, rates.pop(), manifest, folder)


def _files_in(manifest: dict[str, Any], role: str) -> list[str]:
    if role == "reference":
        if "truth" not in manifest:
            raise ParameterError(
                f"--reference folder was written by 'demix {manifest['command']}', not 'demix mix'"
            )
        return list(manifest["truth"]["references"])
    return [o["file"] for o in manifest.get("outputs", []) if o.get("role") == "source"]


def evaluate(
    reference: Side,
    estimate: Side,
    *,
    ref_channel: int = 0,
    window_s: float | None = None,
    hop_s: float | None = None,
) -> Evaluation:
    """Match estimates to references on SIR and score every matched pair.

    Global scores are exact over the whole signal. With ``window_s`` (and ``hop_s``, default the
    window) each matched pair is also scored frame by frame, with the same matching.
    """
    if reference.sample_rate != estimate.sample_rate:
        raise ParameterError(
            f"sample rates differ: references at {reference.sample_rate} Hz, "
            f"estimates at {estimate.sample_rate} Hz"
        )
    notes: list[str] = []
    lengths = {len(s) for s in reference.signals + estimate.signals}
    n = min(lengths)
    if len(lengths) > 1:
        notes.append(f"lengths differ ({min(lengths)}–{max(lengths)} samples); all trimmed to {n}")
    R = np.stack([s[:n] for s in reference.signals])
    E = np.stack([s[:n] for s in estimate.signals])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairwise = metrics.bss_eval_pairwise(R, E)
        est_idx, ref_idx = metrics.match_sources(pairwise.sir)
        baseline = _mixture_baseline(reference, R, ref_channel)
        pairs = sorted(zip(est_idx, ref_idx, strict=True), key=lambda pair: pair[1])
        scores = [_score(reference, estimate, R, E, pairwise, baseline, i, j) for j, i in pairs]
        if window_s is not None:
            _add_frames(scores, R, E, pairs, reference.sample_rate, window_s, hop_s or window_s)
    notes += sorted({str(w.message) for w in caught})
    return Evaluation(
        scores=scores,
        unmatched_estimates=[str(estimate.files[j]) for j in range(len(E)) if j not in set(est_idx)],
        missing_references=[str(reference.files[i]) for i in range(len(R)) if i not in set(ref_idx)],
        amari_index=_amari(reference.manifest, estimate.manifest),
        sample_rate=reference.sample_rate,
        n_samples=n,
        notes=notes,
    )


def _score(
    reference: Side,
    estimate: Side,
    R: np.ndarray,
    E: np.ndarray,
    pairwise: metrics.PairwiseScores,
    baseline: dict[str, np.ndarray] | None,
    i: int,
    j: int,
) -> dict[str, Any]:
    """Scores of estimate ``j`` against its matched reference ``i``."""
    row: dict[str, Any] = {
        "reference": str(reference.files[i]),
        "estimate": str(estimate.files[j]),
        "sdr": pairwise.sdr[j, i],
        "sir": pairwise.sir[j, i],
        "sar": pairwise.sar[j, i],
        "si_sdr": metrics.si_sdr(R[i], E[j]),
    }
    if baseline is not None:
        row["sdri"] = row["sdr"] - baseline["sdr"][i]
        row["si_sdri"] = row["si_sdr"] - baseline["si_sdr"][i]
    return row


def _add_frames(
    scores: list[dict[str, Any]],
    R: np.ndarray,
    E: np.ndarray,
    pairs: list[tuple[int, int]],
    rate: int,
    window_s: float,
    hop_s: float,
) -> None:
    """Framewise SDR/SIR/SAR of every matched pair (frames with a silent source are NaN)."""
    window, hop = round(window_s * rate), round(hop_s * rate)
    if window < 1 or hop < 1 or window > R.shape[1]:
        raise ParameterError(
            f"--window {window_s} / --hop {hop_s} s must be positive and the window at most the "
            f"signal ({R.shape[1] / rate:.3f} s)"
        )
    refs, ests = [i for _, i in pairs], [j for j, _ in pairs]
    frames = metrics.bss_eval_framewise(R[refs], E[ests], window=window, hop=hop)
    for k, row in enumerate(scores):
        row["frames"] = {
            "window_s": window_s,
            "hop_s": hop_s,
            "sdr": frames.sdr[k],
            "sir": frames.sir[k],
            "sar": frames.sar[k],
        }


def _mixture_baseline(reference: Side, R: np.ndarray, ref_channel: int) -> dict[str, np.ndarray] | None:
    """Scores of the unprocessed mixture's ``ref_channel`` against each reference, for SDRi."""
    if reference.manifest is None or reference.folder is None:
        return None
    mixture_files = [o["file"] for o in reference.manifest["outputs"] if o.get("role") == "mixture"]
    if not mixture_files:
        return None
    mixture = audio.read_audio(reference.folder / mixture_files[0]).data
    if ref_channel >= mixture.shape[0]:
        raise ParameterError(
            f"--ref-channel {ref_channel} is out of range: the mixture has {mixture.shape[0]}"
        )
    x = mixture[ref_channel, : R.shape[1]][None, :]
    scores = metrics.bss_eval_pairwise(R, x)
    return {"sdr": scores.sdr[0], "si_sdr": np.array([metrics.si_sdr(r, x[0]) for r in R])}


def _amari(reference: dict[str, Any] | None, estimate: dict[str, Any] | None) -> float | None:
    """Amari index of ``W @ A`` when the mix's true ``A`` and the run's ``W`` are both known."""
    truth = (reference or {}).get("truth", {}).get("mixing")
    model = (estimate or {}).get("model") or {}
    if truth is None or model.get("kind", "instantaneous") != "instantaneous" or model.get("unmixing") is None:
        return None
    W, A = np.asarray(model["unmixing"]), np.asarray(truth)
    if W.shape[1] != A.shape[0] or W.shape[0] != A.shape[1]:
        return None  # other microphones, or fewer sources than the truth: W A is not square
    return float(metrics.amari_index(W @ A))
