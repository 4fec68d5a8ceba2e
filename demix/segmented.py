"""``iva``, ``duet``, ``repet --refine nmf`` and supervised ``nmf`` on long recordings: overlapping segments.

These methods fit their model on the STFT of the whole input and hold 20-36 float64 copies of it
at their peak (``iva`` 1.5 GB for one minute of stereo at 44.1 kHz). For a recording longer than
``--max-memory`` allows, each runs instead on overlapping segments read from disk:

1. **Segment length.** The longest segment whose in-memory separation fits the bound
   (:attr:`~demix.registry.MethodSpec.copies` float64 copies of it), at most :data:`MAX_SEGMENT_S`;
   segments overlap by :data:`OVERLAP_S`. A bound that leaves less than :data:`MIN_SEGMENT_S`
   (too few frames for a model) is refused with the numbers, never silently exceeded.
2. **A model per segment.** Each segment is separated on its own by the method's runner with the
   run's parameters: ``iva`` fits demixing matrices per segment, ``duet`` its pans and delays
   (which also follows sources that move), ``repet --refine nmf`` searches repetitions and fits
   its NMF models within the segment (plain ``repet`` searches the whole recording:
   :mod:`demix.streaming_repet`),
   supervised ``nmf`` fits activations (and its free components) per segment. A count the method
   would choose itself (``duet -n auto``) is chosen once, before the first segment, from the
   whole recording (:func:`demix.methods.duet.count_sources_streamed`), so every segment
   separates the same sources.
3. **Consistent permutation.** A segment's sources come out in an order of its own (IVA's
   permutation is arbitrary per run; DUET orders by pan, which a moving source changes). Both
   segments of a pair separate their overlap, so each source of the new segment is matched to the
   running output it agrees with there: the assignment (Kuhn-Munkres, scipy's
   ``linear_sum_assignment``) that maximises the summed normalised correlation of their images
   over the overlap. Named sources (``repet``'s vocals and accompaniment, supervised ``nmf``'s
   labels) are matched by name.
4. **Cross-fade.** Over the overlap the matched outputs cross-fade with raised-cosine weights that
   sum to one, so where each segment's sources sum to the mixture the stitched ones do too, and
   the edge frames of each segment's STFT are faded out.
5. **Gain.** The stitched sources go to float32 scratch files (:class:`~demix.scratch.ScratchSources`)
   while their peak accumulates; the run gain follows, then one pass writes them: one gain per
   run, never a clip.

Unnamed sources are written loudest first at channel 0 over the whole recording, as in-memory
``iva`` orders them (in-memory ``duet`` orders by pan; its pans are in each source's facts).
Per-source facts are the median over segments of each numeric fact (``iva``'s ``power_share``,
``duet``'s pan and delay); run-level diagnostics are the first segment's, with the number of
segments in the manifest's ``streaming`` record.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demix.errors import DemixError, ParameterError
from demix.history import History
from demix.jobs import Job
from demix.registry import MethodSpec
from demix.scratch import ScratchSources, commit_run
from demix.types import Callback, IterInfo, Separation

__all__ = ["MAX_SEGMENT_S", "MIN_SEGMENT_S", "OVERLAP_S", "Segments", "plan_segments", "run_segmented"]

#: Shortest segment a model is fitted on (seconds): IVA and DUET are measured on 8-10 s clips (issues 13, 14).
MIN_SEGMENT_S = 10.0
#: Longest segment (seconds), however large the bound: long enough for any of the models.
MAX_SEGMENT_S = 120.0
#: Overlap of consecutive segments (seconds): matched on, then cross-faded over.
OVERLAP_S = 4.0


@dataclasses.dataclass(frozen=True)
class Segments:
    """Segment ``k`` covers samples ``k · step … k · step + length`` (the last one may be shorter)."""

    length: int
    overlap: int
    frames: int

    @property
    def step(self) -> int:
        return self.length - self.overlap

    def starts(self) -> list[int]:
        """First sample of every segment; the last one reaches the end of the recording."""
        last = max(self.frames - self.length, 0)
        count = -(-last // self.step) + 1
        return [min(k * self.step, last) if k == count - 1 else k * self.step for k in range(count)]

    def record(self) -> dict[str, int]:
        return {
            "segment_samples": self.length,
            "overlap_samples": self.overlap,
            "segments": len(self.starts()),
        }


def plan_segments(spec: MethodSpec, channels: int, frames: int, rate: int, max_memory_mb: float) -> Segments:
    """The segments of a recording for ``spec`` under ``max_memory_mb`` (see the module docstring)."""
    fits = int(max_memory_mb * 2**20 / (8 * channels * spec.copies))
    length = min(fits, round(MAX_SEGMENT_S * rate), frames)
    overlap = round(OVERLAP_S * rate)
    if length < frames and fits < MIN_SEGMENT_S * rate:
        need = MIN_SEGMENT_S * rate * 8 * channels * spec.copies / 2**20
        raise ParameterError(
            f"--max-memory {max_memory_mb:g} MB holds {fits / rate:.1f} s segments of this input for "
            f"demix {spec.command}, which needs at least {MIN_SEGMENT_S:g} s per segment: "
            f"give --max-memory {int(np.ceil(need))} or more"
        )
    return Segments(length, min(overlap, length // 2), frames)


def match_sources(
    running: np.ndarray, new: np.ndarray, names: Sequence[str] | None, new_names: Sequence[str] | None
) -> list[int]:
    """For each running source, the index of the new segment's source that continues it.

    ``running`` and ``new`` are both segments' sources ``(n, C, k)`` over the shared overlap.
    """
    if names is not None and new_names is not None and sorted(names) == sorted(new_names):
        return [list(new_names).index(name) for name in names]
    from scipy.optimize import linear_sum_assignment

    a = running.reshape(len(running), -1)
    b = new.reshape(len(new), -1)
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    tiny = np.finfo(np.float64).tiny
    correlation = (a @ b.T) / np.maximum(norms, tiny)
    rows, cols = linear_sum_assignment(correlation, maximize=True)
    return [int(c) for _, c in sorted(zip(rows, cols, strict=True))]


def crossfade(overlap: int) -> np.ndarray:
    """Raised-cosine weights ``0 → 1`` of the new segment over ``overlap`` samples (the old one's
    are one minus them)."""
    return np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2


def _as_images(separation: Separation) -> np.ndarray:
    sources = separation.sources
    return sources[:, None, :] if separation.layout == "mono" else sources


def _median_facts(facts: list[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per source: each numeric fact's median over segments, other facts from the first."""
    merged = []
    for j, first in enumerate(facts[0]):
        fact = dict(first)
        for key, value in first.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                fact[key] = round(float(np.median([f[j][key] for f in facts])), 6)
        merged.append(fact)
    return merged


def segment_warnings(caught: Sequence[warnings.WarningMessage], segments: int) -> list[str]:
    """The run's warnings, one line per kind: a warning that several segments raised with only
    their numbers differing is said once, with how many segments raised it."""
    kinds: dict[str, list[str]] = {}
    for w in caught:
        text = str(w.message)
        kinds.setdefault(re.sub(r"\d+(\.\d+)?", "#", text), []).append(text)
    return [
        texts[0] if len(texts) == 1 else f"in {len(texts)} of {segments} segments: {texts[0]}"
        for texts in kinds.values()
    ]


class _SegmentProgress:
    """Forwards a segment's iteration reports as steps of the whole run (segment after segment)."""

    def __init__(self, history: History, segments: int) -> None:
        self.history = history
        self.segments = segments
        self.index = 0

    def __call__(self, info: IterInfo) -> None:
        offset = self.index * info.max_iter
        self.history(
            IterInfo(offset + info.iteration, self.segments * info.max_iter, info.change, info.objective)
        )


def _fix_count(spec: MethodSpec, recording: Any, params: Any) -> Any:
    """``params`` with a count the method would choose per input chosen once for the recording."""
    if spec.name == "duet" and params.sources == "auto":
        from demix.methods.duet import count_sources_streamed

        return dataclasses.replace(
            params, sources=count_sources_streamed(recording, recording.sample_rate, params)
        )
    return params


@dataclasses.dataclass
class _Stitched:
    """What the segments gave: the stitched sources, the first segment's separation (names,
    layout, diagnostics), and per segment the facts (in the stitched order) and convergence."""

    stitched: ScratchSources
    first: Separation
    facts: list[Sequence[dict[str, Any]]] = dataclasses.field(default_factory=list)
    iterations: list[int] = dataclasses.field(default_factory=list)
    changes: list[float | None] = dataclasses.field(default_factory=list)
    converged: list[bool] = dataclasses.field(default_factory=list)

    def add(self, separation: Separation, order: Sequence[int]) -> None:
        self.facts.append([separation.facts[i] for i in order] if separation.facts else [])
        self.iterations.append(separation.n_iter)
        self.changes.append(separation.final_change)
        self.converged.append(separation.converged)


def _separate_segments(
    spec: MethodSpec, recording: Any, segments: Segments, params: Any, history: History, work: Path
) -> _Stitched:
    """Separate every segment, match its sources to the running ones, cross-fade, append."""
    starts = segments.starts()
    progress = _SegmentProgress(history, len(starts))
    run: _Stitched | None = None
    tail = np.empty(0)  # the running sources over the next overlap, not yet written
    try:
        for k, a in enumerate(starts):
            progress.index = k
            X = recording.read(a, min(segments.length, recording.frames - a))
            separation = spec.separate(X, recording.sample_rate, params, progress)
            images = _as_images(separation)
            if run is None:
                stitched = ScratchSources(work, len(images), images.shape[1], recording.sample_rate)
                run = _Stitched(stitched, separation)
                order = list(range(len(images)))
            else:
                if len(images) != len(run.stitched.paths):
                    raise DemixError(
                        f"{spec.name}: segment {k + 1} gave {len(images)} sources and the first "
                        f"{len(run.stitched.paths)}; separate with a fixed -n/--sources"
                    )
                shared = tail.shape[-1]  # samples both segments separated
                order = match_sources(tail, images[..., :shared], run.first.names, separation.names)
                images = images[order]
                fade = crossfade(shared)
                images[..., :shared] = tail * (1 - fade) + images[..., :shared] * fade
            keep = 0 if k == len(starts) - 1 else a + images.shape[-1] - starts[k + 1]
            run.stitched.append(images[..., : images.shape[-1] - keep])
            tail = images[..., images.shape[-1] - keep :]
            run.add(separation, order)
    finally:
        if run is not None:
            run.stitched.close()
    assert run is not None
    return run


def run_segmented(
    job: Job, spec: MethodSpec, plan: Any, *, callback: Callback | None = None
) -> dict[str, Any]:
    """``run_job`` for a method that streams in segments: the in-memory manifest, with ``streaming``."""
    from demix.streaming import opened_run

    with opened_run(job, spec) as opened, tempfile.TemporaryDirectory(prefix="demix-segments-") as work:
        recording, record, timings = opened.recording, opened.record, opened.timings
        T, C, rate = recording.frames, recording.channels, recording.sample_rate
        segments = plan_segments(spec, C, T, rate, plan.memory_bound_mb)

        tic = time.perf_counter()
        history = History(callback)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            params = _fix_count(spec, recording, job.params)
            run = _separate_segments(spec, recording, segments, params, history, Path(work))
        stitched, first = run.stitched, run.first
        timings["separate_s"] = time.perf_counter() - tic

        if first.names is not None:
            order = list(range(len(stitched.paths)))
            names = tuple(first.names)
        else:
            order = [int(i) for i in np.argsort(-stitched.energy_first, kind="stable")]
            names = tuple(f"source_{i + 1}" for i in range(len(order)))
        merged = _median_facts(run.facts) if run.facts[0] else [{} for _ in order]
        finite = [c for c in run.changes if c is not None]
        manifest = commit_run(
            job, spec, record, stitched, names, order, [merged[j] for j in order],
            block=plan.block_samples,
            timings=timings,
            layout=first.layout,
            convergence={
                "n_iter": max(run.iterations),
                "converged": all(run.converged),
                "final_change": max(finite) if finite else None,
                "history": history.record(),
            },
            diagnostics=first.diagnostics,
            warnings=segment_warnings(caught, len(run.converged)),
            streaming={**plan.record(2), **segments.record()},
        )  # fmt: skip
    return manifest
