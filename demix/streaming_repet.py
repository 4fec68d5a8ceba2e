"""``demix repet`` on long recordings: repetitions searched over the whole recording, from disk.

REPET-SIM models a frame's accompaniment by the median of its most similar frames anywhere within
±``MAX_SEARCH_S / 2`` (:mod:`demix.methods.repet`). Cut into segments, a song would leave each
frame only the repetitions inside its segment — too few for the median: on ten minutes of a looped
bar under speech, 42 s segments separated at 2.8 / 3.4 dB where the whole song gives 9.3 / 7.6 dB.
What must be shared is the search, so it is the search that runs over the whole recording:

1. **Spectrogram to disk.** The magnitude spectrogram (channel RMS of the frames of the whole STFT,
   a section at a time by :func:`demix.spectral.stft_frames`) goes to a float32 scratch file,
   frames as rows: 4 kB a frame at ``--n-fft 2048``, 1.3 GB an hour at 44.1 kHz, on disk.
2. **Search.** As in memory (:func:`~demix.methods.repet.find_repetitions`, reading the file
   block by block): a 32-number projection of every frame, then each frame's neighbours — 0.1 GB an
   hour at 44.1 kHz, the only memory that grows with the recording — with the context vectors of
   one search window at a time.
3. **Masks per section.** For each section of :data:`SECTION_FRAMES` frames the neighbours' spectra
   are read back from the file, the accompaniment model and the masks formed, and the masked STFT
   inverted on the section's own samples, where every overlapping frame is present (as
   :mod:`demix.streaming_nmf` does): the stems are the in-memory path's, without seams. The vocals
   are written and the accompaniment is the input minus them (the masks sum to one).
4. **Gain.** The stems go to scratch files while their peaks accumulate, then one gain for the run
   (:mod:`demix.scratch`).

``--refine nmf`` fits NMF models to the whole spectrogram; on a long recording it runs in segments
(:mod:`demix.segmented`).
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from demix.history import History
from demix.jobs import Job
from demix.methods import repet
from demix.registry import MethodSpec
from demix.scratch import ScratchSources, commit_run
from demix.spectral import magnitude, overlap_add_section, stft_frames
from demix.types import Callback, IterInfo

__all__ = ["SECTION_FRAMES", "FileFrames", "run_repet_streamed"]

#: Frames per section of the spectrogram pass and of the masking pass (6 s at 44.1 kHz, hop 512).
SECTION_FRAMES = 512


class FileFrames:
    """:class:`~demix.methods.repet.Frames` of a spectrogram in a float32 file, frames as rows.

    Blocks are read in order; a gather maps the file for that gather only, so the pages it
    touched leave the process's memory with it.
    """

    def __init__(self, path: Path, n_freqs: int, n_frames: int) -> None:
        self.path, self.n_freqs, self.n_frames = path, n_freqs, n_frames

    def blocks(self) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as handle:
            for s in range(0, self.n_frames, repet.BLOCK_FRAMES):
                n = min(repet.BLOCK_FRAMES, self.n_frames - s)
                yield np.fromfile(handle, dtype=np.float32, count=n * self.n_freqs).reshape(n, -1).T

    def gather(self, rows: np.ndarray) -> np.ndarray:
        mapped = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.n_frames, self.n_freqs))
        gathered = np.asarray(mapped[rows])  # fancy indexing copies: nothing refers to the map
        del mapped
        return gathered


class _Passes:
    """The run's three passes (spectrogram, search, masks) as one progress bar of
    ``3 × STEPS`` steps, each pass a third of it."""

    STEPS = 100

    def __init__(self, callback: Callback | None) -> None:
        self.callback = callback

    def report(self, stage: int, done: int, total: int) -> None:
        if self.callback is not None:
            step = stage * self.STEPS + self.STEPS * done // max(total, 1)
            self.callback(IterInfo(step, 3 * self.STEPS, math.nan))


def spectrogram_to_disk(
    recording: Any, path: Path, n_fft: int, hop: int, passes: _Passes | None = None
) -> FileFrames:
    """Step 1: the channel-RMS magnitude of every frame of the recording's STFT into ``path``."""
    N = 1 + recording.frames // hop
    with open(path, "wb") as handle:
        for f0 in range(0, N, SECTION_FRAMES):
            V = magnitude(stft_frames(recording, f0, min(f0 + SECTION_FRAMES, N), n_fft, hop))
            np.ascontiguousarray(V.T, dtype=np.float32).tofile(handle)
            if passes is not None:
                passes.report(0, min(f0 + SECTION_FRAMES, N), N)
    return FileFrames(path, 1 + n_fft // 2, N)


def _section_stems(
    recording: Any,
    frames: FileFrames,
    found: repet.Repetitions,
    params: repet.RepetParams,
    span: tuple[int, int],
    totals: repet.MaskTotals,
) -> np.ndarray:
    """Step 3 for samples ``a … b``: their stems ``(2, C, b - a)``; the section's own frames added
    to ``totals`` (its arrays are freed on return, before the next section's are made)."""
    a, b = span
    n_fft, hop, N = params.n_fft, params.hop, frames.n_frames
    margin = n_fft // hop + 1  # frames beyond a section that still overlap its samples
    f0, f1 = max(a // hop - margin, 0), min(b // hop + margin, N)
    S = stft_frames(recording, f0, f1, n_fft, hop)
    V = magnitude(S).astype(np.float32)
    W = repet.accompaniment(frames, found, V, f0)
    masks = repet.repet_masks(V, W, params.mask)
    low = repet.below_high_pass(frames.n_freqs, recording.sample_rate, n_fft, params.high_pass)
    masks[0, low], masks[1, low] = 0.0, 1.0
    own = slice(a // hop - f0, (N if b == recording.frames else b // hop) - f0)  # each frame once
    totals.add(V[:, own], W[:, own], masks[:, :, own], ~low)
    S *= masks[0]
    vocals = overlap_add_section(S, f0, a, b, n_fft, hop)
    X = recording.read(a, b - a)
    return np.stack([vocals, X - vocals])


def _mask_sections(
    recording: Any,
    frames: FileFrames,
    found: repet.Repetitions,
    params: repet.RepetParams,
    stems: ScratchSources,
    passes: _Passes,
) -> tuple[repet.MaskTotals, float]:
    """Step 3: every section's stems appended to ``stems``; the mask totals and the input's energy
    (the stems of a section sum to it)."""
    T, step = recording.frames, SECTION_FRAMES * params.hop
    totals, energy = repet.MaskTotals(), 0.0
    for a in range(0, T, step):
        section = _section_stems(recording, frames, found, params, (a, min(a + step, T)), totals)
        energy += float(np.sum(section.sum(axis=0) ** 2))
        stems.append(section)
        passes.report(2, min(a + step, T), T)
    return totals, energy


def run_repet_streamed(
    job: Job, spec: MethodSpec, plan: Any, *, callback: Callback | None = None
) -> dict[str, Any]:
    """``run_job`` for ``repet`` on a long input: the in-memory manifest, with ``streaming`` added."""
    from demix.streaming import opened_run

    params: repet.RepetParams = job.params
    with opened_run(job, spec) as opened, tempfile.TemporaryDirectory(prefix="demix-repet-") as work:
        recording, record, timings = opened.recording, opened.record, opened.timings
        rate, C = recording.sample_rate, recording.channels
        repet.check_high_pass(params, rate)
        tic = time.perf_counter()
        passes = _Passes(callback)
        history = History(lambda info: passes.report(1, info.iteration, info.max_iter))  # the search's
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frames = spectrogram_to_disk(
                recording, Path(work) / "spectrogram.f32", params.n_fft, params.hop, passes
            )
            found = repet.find_repetitions(frames, rate, params, history)
            stems = ScratchSources(Path(work), 2, C, rate)
            try:
                totals, energy = _mask_sections(recording, frames, found, params, stems, passes)
            finally:
                stems.close()
            facts, diagnostics = repet.describe(found, totals, stems.energy / max(energy, 1e-300), params)
        timings["separate_s"] = time.perf_counter() - tic
        return commit_run(
            job, spec, record, stems, repet.NAMES, range(2), facts,
            block=plan.block_samples,
            timings=timings,
            layout="mono" if C == 1 else "images",
            convergence={"n_iter": 0, "converged": True, "final_change": 0.0, "history": history.record()},
            diagnostics=diagnostics,
            warnings=sorted({str(w.message) for w in caught}),
            streaming={**plan.record(2), "section_frames": SECTION_FRAMES},
        )  # fmt: skip
