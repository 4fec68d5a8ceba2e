"""``repet`` on long recordings (issue 15): the search over the whole spectrogram, kept on disk.

On a real song (the MUSDB excerpt), streamed with sections, projection blocks and a search window
all much shorter than the song — so every boundary is crossed many times — the stems are the
in-memory path's sample for sample (a seam, a shifted frame or a wrong neighbour would show), and
every fact is the same.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demix import registry, streaming_repet
from demix.jobs import Job, WriteOptions
from demix.methods import repet
from demix.metrics import bss_eval_pairwise
from demix.pipeline import run_job
from tests.conftest import shared

MUSDB = "museval_musdb18_sample"


def _read(name: str) -> np.ndarray:
    return sf.read(shared(f"{MUSDB}/{name}.flac"), always_2d=True)[0]


def test_streamed_repet_equals_the_in_memory_path_on_a_real_song(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixture = _read("mixture")
    sf.write(tmp_path / "song.wav", mixture, 44100, subtype="FLOAT")
    monkeypatch.setattr(streaming_repet, "SECTION_FRAMES", 48)  # 13 sections of 0.56 s
    monkeypatch.setattr(repet, "BLOCK_FRAMES", 100)  # 6 blocks per pass over the spectrogram
    monkeypatch.setattr(repet, "MAX_SEARCH_S", 3.0)  # the search window moves along the song
    spec = registry.method_spec("repet")
    manifests, stems, steps = {}, {}, []
    for label, stream in (("streamed", True), ("memory", False)):
        job = Job("repet", "repet", spec.params(), tmp_path / "song.wav", tmp_path / label,
                  WriteOptions(subtype="FLOAT", max_memory_mb=50))  # fmt: skip
        report = (lambda info: steps.append((info.iteration, info.max_iter))) if stream else None
        manifests[label] = run_job(job, stream=stream, callback=report)
        outputs = manifests[label]["outputs"]
        stems[label] = np.stack([sf.read(tmp_path / label / o["file"])[0] for o in outputs])
    streamed, memory = manifests["streamed"], manifests["memory"]
    assert streamed["streaming"]["section_frames"] == 48 and memory.get("streaming") is None
    assert streamed["diagnostics"]["search_window_s"] == 3.0
    # one progress bar over the three passes: it only moves forward, and ends full
    assert all(total == 300 for _, total in steps) and steps[-1][0] == 300
    assert all(b >= a for (a, _), (b, _) in itertools.pairwise(steps))
    # float32 spectra computed a section at a time against all at once: rounding only
    assert np.max(np.abs(stems["streamed"] - stems["memory"])) < 1e-4
    assert np.max(np.abs(stems["streamed"].sum(axis=0) - mixture)) < 1e-5
    for key in ("repetition_structure", "explained_share", "repeat_lag_s", "mean_neighbours"):
        assert streamed["diagnostics"][key] == pytest.approx(memory["diagnostics"][key], rel=1e-4)
    for ours, theirs in zip(streamed["outputs"], memory["outputs"], strict=True):
        assert ours["name"] == theirs["name"]
        assert ours["mask_mean"] == pytest.approx(theirs["mask_mean"], rel=1e-4)
        assert ours["energy_share"] == pytest.approx(theirs["energy_share"], rel=1e-4)
    # and it separates: SDR against the true stems (channel mean), as the in-memory test asks
    accompaniment = sum(_read(stem) for stem in ("drums", "bass", "other"))
    reference = np.stack([_read("vocals").mean(axis=1), accompaniment.mean(axis=1)])
    sdr = np.diagonal(bss_eval_pairwise(reference, stems["streamed"].mean(axis=2)).sdr)
    assert sdr[0] >= 5.0 and sdr[1] >= 7.0, sdr


def test_file_frames_read_back_what_was_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    V = rng.random((7, 250)).astype(np.float32)
    np.ascontiguousarray(V.T).tofile(tmp_path / "v.f32")
    frames = streaming_repet.FileFrames(tmp_path / "v.f32", 7, 250)
    in_memory = repet.ArrayFrames(V)
    assert all(np.array_equal(a, b) for a, b in zip(frames.blocks(), in_memory.blocks(), strict=True))
    rows = rng.integers(0, 250, size=(5, 9))
    assert np.array_equal(frames.gather(rows), in_memory.gather(rows))
