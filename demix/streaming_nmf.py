"""``demix nmf`` on long recordings in bounded memory: bases from excerpts, masks per segment.

In memory, NMF factorises the whole magnitude spectrogram (18 float64 copies of the signal at the
peak, 7.8 GB for ten minutes of stereo). Here:

1. **Bases.** ``W`` is learnt (blind β-NMF, the command's options) on :data:`FIT_SECONDS` of the
   recording: :data:`FIT_CHUNKS` contiguous excerpts spread evenly over it, each turned into its
   magnitude spectrogram on its own, the frames concatenated. The components are grouped into
   sources once, on these excerpts' activations, so every segment uses the same sources, names
   and per-source facts; ``W`` is then fixed.
2. **Segments.** The recording is cut into segments of :data:`SEGMENT_FRAMES` hops. Each segment's
   frames are the frames of the global STFT (``center=True``, zero padding at the file's ends, as
   :func:`demix.spectral.stft`), computed with a margin of frames on either side: those that
   overlap the segment's samples, plus half the transient refinement's median window. The
   activations are fitted with ``W`` fixed (β-NMF updates of ``H`` only: each frame's
   activations depend on that frame alone), the soft masks are applied to every channel and the
   inverse STFT (overlap-add, window-square normalisation) is kept only on the segment's own
   samples, where every overlapping frame is present — so a segment's samples are those the
   global inverse STFT gives for the same masks, with no seam at the segment edges.
3. **Gain.** The masked sources go to float32 scratch files (:class:`~demix.scratch.ScratchSources`)
   while their peak, RMS and kurtosis accumulate; the run gain follows, and a last pass copies
   them into the run folder scaled by it: one gain, never a clip.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from demix.errors import ParameterError
from demix.jobs import Job
from demix.methods.nmf import beta_nmf
from demix.methods.nmf_grouping import Grouping, group_components, split_transients
from demix.methods.nmf_separate import MASK_POWER, NMFParams, _divergence_record, _source_facts
from demix.registry import MethodSpec
from demix.scratch import ScratchSources, commit_run
from demix.spectral import magnitude, overlap_add_section, soft_masks, stft_frames
from demix.types import Callback

__all__ = ["FIT_CHUNKS", "FIT_SECONDS", "SEGMENT_FRAMES", "run_nmf_streamed"]

#: Seconds of the recording the bases are learnt on, in :data:`FIT_CHUNKS` excerpts.
FIT_SECONDS = 120.0
FIT_CHUNKS = 8
#: Hops per segment (2048 × 512 samples: 24 s at 44.1 kHz with the default hop).
SEGMENT_FRAMES = 2048


def fit_bases(
    recording: Any, params: NMFParams, callback: Callback | None
) -> tuple[Any, Grouping, dict[str, Any]]:
    """Blind β-NMF on the excerpts' magnitude spectrograms; the grouping of its components."""
    rate, T = recording.sample_rate, recording.frames
    hop = params.hop
    total = min(T, round(FIT_SECONDS * rate))
    if total >= T:
        starts, length = [0], T
    else:
        length = max(params.n_fft, total // FIT_CHUNKS // hop * hop)
        starts = [int(a) // hop * hop for a in np.linspace(0, T - length, FIT_CHUNKS)]
    total_frames = 1 + T // hop
    pieces = []
    for a in starts:  # each excerpt's frames of the global STFT, a segment at a time
        last = min((a + length) // hop + 1, total_frames)
        for f0 in range(a // hop, last, SEGMENT_FRAMES):
            f1 = min(f0 + SEGMENT_FRAMES, last)
            pieces.append(magnitude(stft_frames(recording, f0, f1, params.n_fft, hop)))
    V = np.concatenate(pieces, axis=1)
    del pieces
    res = beta_nmf(
        V, params.components, beta=params.beta, max_iter=params.max_iter, tol=params.tol,
        init=params.init, seed=params.seed, sparsity=params.sparsity, callback=callback,
    )  # fmt: skip
    grouping = group_components(
        res.W,
        res.H,
        params.sources,
        params.group,
        sample_rate=rate,
        n_fft=params.n_fft,
        hop=hop,
        seed=params.seed,
    )
    record = {"excerpt_s": len(starts) * length / rate, "excerpts": len(starts), "frames": int(V.shape[1])}
    return res, grouping, record


def run_nmf_streamed(
    job: Job, spec: MethodSpec, plan: Any, *, callback: Callback | None = None
) -> dict[str, Any]:
    """``run_job`` for ``nmf`` on a long input: the in-memory manifest, with ``streaming`` added."""
    from demix.streaming import opened_run

    params: NMFParams = job.params
    n_fft, hop = params.n_fft, params.hop
    with opened_run(job, spec) as opened, tempfile.TemporaryDirectory(prefix="demix-nmf-") as work:
        recording, record, timings = opened.recording, opened.record, opened.timings
        T, C, rate = recording.frames, recording.channels, recording.sample_rate
        if n_fft > T:
            raise ParameterError(f"the input has {T} samples, shorter than one frame (--n-fft {n_fft})")
        tic = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res, grouping, fit_record = fit_bases(recording, params, callback)
            refine = params.transients and params.group == "percussive-harmonic"
            width = split_transients(res.H[:, :3], rate, hop)[2] if refine else 1
            n_src = len(grouping.groups)
            margin = n_fft // hop + 1 + width // 2 + 1
            total_frames = 1 + T // hop
            segment = SEGMENT_FRAMES * hop
            stitched = ScratchSources(Path(work), n_src, C, rate)
            moved = total_harm = 0.0
            try:
                for a in range(0, T, segment):
                    b = min(a + segment, T)
                    f0, f1 = max(a // hop - margin, 0), min(b // hop + margin, total_frames)
                    S = stft_frames(recording, f0, f1, n_fft, hop)
                    H = beta_nmf(
                        magnitude(S), params.components, beta=params.beta, max_iter=params.max_iter,
                        tol=params.tol, seed=params.seed, sparsity=params.sparsity, W_fixed=res.W,
                    ).H  # fmt: skip
                    W = res.W
                    if refine:
                        perc, harm = grouping.groups
                        sustained, transient, _ = split_transients(H[harm], rate, hop)
                        shift = W[:, harm] @ transient
                        models = [W[:, perc] @ H[perc] + shift, W[:, harm] @ sustained]
                        inner = slice(a // hop - f0, min(b // hop, total_frames) - f0)
                        moved += float(shift[:, inner].sum())
                        total_harm += float((W[:, harm] @ H[harm])[:, inner].sum())
                    else:
                        models = [W[:, g] @ H[g] for g in grouping.groups]
                    masks = soft_masks(models, MASK_POWER)
                    stitched.append(
                        np.stack([overlap_add_section(S * m, f0, a, b, n_fft, hop) for m in masks])
                    )
            finally:
                stitched.close()
        timings["separate_s"] = time.perf_counter() - tic

        refinement = None
        if refine:
            refinement = {"median_frames": width, "moved_fraction": moved / total_harm if total_harm else 0.0}
        manifest = commit_run(
            job, spec, record, stitched, grouping.names, range(n_src), _source_facts(grouping),
            block=plan.block_samples,
            timings=timings,
            layout="mono" if C == 1 else "images",
            convergence={"n_iter": res.n_iter, "converged": res.converged, "final_change": res.final_change},
            diagnostics={
                "grouping_rule": grouping.rule,
                "transient_refinement": refinement,
                **_divergence_record(res, float(params.beta)),
                "spectrogram": "magnitude (channel RMS)",
                "mask_power": MASK_POWER,
                "bases_fit": fit_record,
            },
            warnings=sorted({str(w.message) for w in caught}),
            streaming={**plan.record(4), "segment_samples": segment},
        )  # fmt: skip
    return manifest
