"""Fix what blind separation leaves free — scale, sign, order — and keep outputs below full scale.

Every decision here is recorded in the manifest by the pipeline; nothing is clipped silently and
there is never a per-source normalisation: one gain serves the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from demix.audio import PEAK_LIMIT
from demix.errors import ParameterError
from demix.types import Instantaneous, Layout, Separation

Scale = Literal["reference", "unit"]


@dataclass(frozen=True)
class Finished:
    """Sources as they will be written (before the run gain), in their final order.

    ``order[i]`` is the index, in the method's output, of the ``i``-th written source: names and
    per-source facts are reordered with it. ``model`` is the manifest's record of the model in the
    written scale (None for methods without one); ``layout`` says whether the sources are mono
    or images.
    """

    sources: np.ndarray
    order: np.ndarray
    model: dict[str, Any] | None
    layout: Layout


def finish(separation: Separation, *, ref_channel: int, scale: Scale, images: bool = False) -> Finished:
    """Fix what the method left free, by the kind of its model, in one place.

    Instantaneous models are projected back onto ``ref_channel`` (or kept at unit variance) and
    ordered loudest first there; with ``images`` each source is written as every microphone
    heard it, ``A[:, i] s_i`` (the images sum to the centred mixture when no channel was dropped).
    Sources without a model keep the method's scale, layout and order.
    """
    model = separation.model
    if isinstance(model, Instantaneous):
        if separation.layout != "mono":
            raise ValueError("an instantaneous model describes mono sources")
        scaled = scale_linear(separation.sources, model, ref_channel=ref_channel, scale=scale)
        record = {
            "kind": model.kind,
            "unmixing": scaled.unmixing,
            "mixing": scaled.mixing,
            "scale": scale,
            "ref_channel": ref_channel,
        }
        sources = scaled.sources
        if images:
            # Column i of the scaled mixing is 1 at ref_channel: the image keeps the source's scale there.
            sources = scaled.mixing.T[:, :, None] * sources[:, None, :]
        return Finished(sources, scaled.order, record, "images" if images else "mono")
    return Finished(separation.sources, np.arange(separation.n_sources), None, separation.layout)


@dataclass(frozen=True)
class ScaledSources:
    """Sources in the scale they are written in, with the linear model in that same scale.

    ``mixing`` ``(n_channels, n_sources)`` and ``unmixing`` ``(n_sources, n_channels)`` satisfy
    ``sources = unmixing @ (x - mean)``; with ``scale="reference"`` row ``ref_channel`` of
    ``mixing`` is all ones: that microphone hears exactly the sum of the written sources.
    """

    sources: np.ndarray
    mixing: np.ndarray
    unmixing: np.ndarray
    order: np.ndarray


def scale_linear(
    sources: np.ndarray, model: Instantaneous, *, ref_channel: int, scale: Scale
) -> ScaledSources:
    """Back-project onto ``ref_channel`` (or keep unit variance) and order by energy there.

    Back-projection (minimal distortion, Matsuoka 2002) gives source ``i`` the scale at which the
    reference microphone heard it, ``A[ref, i] * s_i``. Order: loudest at the reference first
    (ties keep the method's order); the sign of unit-variance sources follows the reference
    microphone's polarity.
    """
    A, W, S = model.mixing, model.unmixing, sources
    if not 0 <= ref_channel < A.shape[0]:
        raise ParameterError(
            f"--ref-channel {ref_channel} is out of range for {A.shape[0]} channel(s) (0 … {A.shape[0] - 1})"
        )
    gains = A[ref_channel].copy()
    energy = gains**2 * np.mean(S**2, axis=1)
    order = np.lexsort((np.arange(len(energy)), -energy))
    if scale == "unit":
        gains = np.where(gains < 0, -1.0, 1.0)
    safe = np.where(gains == 0, 1.0, gains)
    return ScaledSources(
        sources=(S * gains[:, None])[order],
        mixing=(A / safe[None, :])[:, order],
        unmixing=(W * gains[:, None])[order],
        order=order,
    )


def run_gain(arrays: list[np.ndarray], *, limit: float = PEAK_LIMIT) -> float:
    """The one gain (≤ 1) that keeps the loudest sample of all ``arrays`` at or below ``limit``."""
    peak = max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)
    return 1.0 if peak <= limit else limit / peak


def excess_kurtosis(sources: np.ndarray) -> list[float]:
    """Excess kurtosis per row: 0 for Gaussian, > 0 for speech-like peaky signals."""
    centred = sources - sources.mean(axis=-1, keepdims=True)
    var = np.mean(centred**2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        kurt = np.mean(centred**4, axis=-1) / var**2 - 3.0
    return [float(k) if np.isfinite(k) else 0.0 for k in np.atleast_1d(kurt)]
