"""Separated sources of a long run, held on disk until the one run gain is known.

A run that separates a long recording piece by piece (:mod:`demix.streaming_nmf`,
:mod:`demix.segmented`) cannot scale its outputs as it goes: the gain that keeps every source
below full scale (one gain per run, never a clip) depends on the loudest sample of every source,
which the last piece may hold. So each piece's sources go to float32 scratch WAVs in a temporary
folder while their peak, energy and moments accumulate; once the recording is done, the gain
follows and one last pass copies the scratch files into the run folder's staged files, scaled.
float32 keeps 24 bits of mantissa: below the resolution of every integer subtype written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from demix.jobs import Job, WriteOptions

if TYPE_CHECKING:
    from demix.registry import MethodSpec

__all__ = ["ScratchSources", "commit_run"]


class ScratchSources:
    """``n`` sources of ``channels`` channels each, appended piece by piece to scratch files.

    Tracks per source the peak (all channels), the energy (for the RMS; at channel 0 too, to order
    sources loudest first there) and the raw moments of the channel mean (for the excess
    kurtosis, measured as the in-memory path measures it).
    """

    def __init__(self, folder: Path, n: int, channels: int, sample_rate: int) -> None:
        self.paths = [folder / f"source-{j}.wav" for j in range(n)]
        self.channels = channels
        self.sample_rate = sample_rate
        self.handles = [
            sf.SoundFile(p, "w", sample_rate, channels, "FLOAT", format="WAV") for p in self.paths
        ]
        self.frames = 0
        self.peak = np.zeros(n)
        self.energy = np.zeros(n)
        self.energy_first = np.zeros(n)  # at channel 0 only
        self.moments = np.zeros((4, n))  # Σ m, m², m³, m⁴ of the channel mean m

    def append(self, sources: np.ndarray) -> None:
        """Append ``(n, channels, k)`` samples, one piece of every source."""
        for j, y in enumerate(sources):
            self.handles[j].write(y.T.astype(np.float32))
            m = y.mean(axis=0)
            m2 = m * m
            self.peak[j] = max(self.peak[j], float(np.max(np.abs(y), initial=0.0)))
            self.energy[j] += float(np.sum(y * y))
            self.energy_first[j] += float(np.dot(y[0], y[0]))
            self.moments[:, j] += [m.sum(), m2.sum(), (m2 * m).sum(), (m2 * m2).sum()]
        self.frames += sources.shape[-1]

    def close(self) -> None:
        for handle in self.handles:
            handle.close()

    def rms(self) -> np.ndarray:
        """Per-source RMS over all channels and samples."""
        return np.sqrt(self.energy / max(self.frames * self.channels, 1))

    def kurtosis(self) -> list[float]:
        """Per-source excess kurtosis of the channel mean (0 where the source is constant)."""
        m1, m2, m3, m4 = self.moments / max(self.frames, 1)
        var = m2 - m1**2
        with np.errstate(invalid="ignore", divide="ignore"):
            kurt = (m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4) / var**2 - 3.0
        return [float(k) if np.isfinite(k) else 0.0 for k in kurt]

    def output_records(
        self,
        files: Sequence[str],
        names: Sequence[str],
        gain: float,
        order: Sequence[int],
        facts: Sequence[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The manifest's ``outputs``: file ``i`` holds scratch source ``order[i]`` times ``gain``."""
        rms, kurtosis = self.rms(), self.kurtosis()
        return [
            {
                "file": file,
                "role": "source",
                "rms": round(float(gain * rms[j]), 6),
                "peak": round(float(gain * self.peak[j]), 6),
                "name": name,
                "kurtosis": round(kurtosis[j], 3),
                "method_index": j,
                **fact,
            }
            for file, name, j, fact in zip(files, names, order, facts, strict=True)
        ]

    def copy_scaled(
        self, targets: Sequence[Path], gain: float, options: WriteOptions, block: int, order: Sequence[int]
    ) -> None:
        """Write scratch source ``order[i]`` times ``gain`` into ``targets[i]``, block by block."""
        from demix.streaming import open_writer

        for index, target in zip(order, targets, strict=True):
            with sf.SoundFile(self.paths[index]) as handle, open_writer(
                target, self.channels, self.sample_rate, options
            ) as out:  # fmt: skip
                for piece in handle.blocks(block, dtype="float64", always_2d=True):
                    out.write(piece * gain)


def commit_run(
    job: Job,
    spec: MethodSpec,
    record: dict[str, Any],
    stitched: ScratchSources,
    names: Sequence[str],
    order: Sequence[int],
    facts: Sequence[dict[str, Any]],
    *,
    block: int,
    timings: dict[str, float],
    **fields: Any,
) -> dict[str, Any]:
    """Write scratch source ``order[i]`` as the run's output ``i`` (named ``names[i]`` through
    ``--name``), all scaled by the run gain as in memory (1 with ``--scale unit``), and commit the
    manifest: the in-memory one, with ``fields`` (``layout``, ``convergence``, ``diagnostics``,
    ``warnings``, ``streaming``) and ``timings`` plus the writing time."""
    from demix import pipeline
    from demix.inputs import input_stem
    from demix.manifest import clean
    from demix.outputs import RunFolder
    from demix.post import run_gain
    from demix.streaming import stage_all

    tic = time.perf_counter()
    options = job.options
    gain = 1.0 if options.scale == "unit" else run_gain([stitched.peak])
    files = options.file_names(input_stem(job.source), names)
    outputs = stitched.output_records(files, names, gain, order, facts)
    manifest = pipeline.start_manifest(job, spec, record)
    with RunFolder(job.folder) as folder:
        stage_all(folder, files, lambda paths: stitched.copy_scaled(paths, gain, options, block, order))
        timings["write_s"] = time.perf_counter() - tic
        manifest.update(
            outputs=outputs,
            gain=gain,
            model=None,
            **fields,
            timings={key: round(value, 4) for key, value in timings.items()},
        )
        manifest = clean(manifest)
        folder.commit(manifest)
    return manifest
