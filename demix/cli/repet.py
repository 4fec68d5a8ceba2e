"""``demix repet``: vocals and accompaniment of a song, by what repeats (REPET-SIM)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.methods.repet import RepetParams


class Mask(str, Enum):
    soft = "soft"
    binary = "binary"


class Refine(str, Enum):
    none = "none"
    nmf = "nmf"


@separating_command
def repet(
    inputs: opt.Inputs,
    out: opt.Out,
    similar_frames: Annotated[
        int,
        typer.Option(
            "--similar-frames",
            min=1,
            max=1000,
            help="Most similar frames whose median models each frame's accompaniment.",
        ),
    ] = RepetParams.similar_frames,
    min_distance: Annotated[
        float,
        typer.Option(
            "--min-distance",
            min=0.0,
            max=3600.0,
            callback=opt.finite,
            help="Seconds: similar frames are at least this far from the frame they model.",
        ),
    ] = RepetParams.min_distance,
    mask: Annotated[
        Mask,
        typer.Option("--mask", help="soft: ratio masks (REPET's); binary: each bin to the larger model."),
    ] = Mask(RepetParams.mask),
    high_pass: Annotated[
        float,
        typer.Option(
            "--high-pass",
            min=0.0,
            max=1e6,
            callback=opt.finite,
            help="Hz: nothing below is voice (0 disables).",
        ),
    ] = RepetParams.high_pass,
    refine: Annotated[
        Refine,
        typer.Option(
            "--refine",
            help="nmf: average the masks with those of KL-NMF models learnt from both stems "
            "(several times slower: measured +0.2 dB vocals, +0.4 dB accompaniment on a MUSDB excerpt).",
        ),
    ] = Refine(RepetParams.refine),
    n_fft: opt.NFft = RepetParams.n_fft,
    hop: opt.Hop = RepetParams.hop,
    max_iter: opt.MaxIter = RepetParams.max_iter,
    tol: opt.Tol = RepetParams.tol,
    seed: opt.Seed = RepetParams.seed,
    shared: Shared = Shared(),
) -> None:
    """Split a song into vocals.wav and accompaniment.wav (they sum to the input; stereo stays stereo)."""
    params = RepetParams(
        similar_frames=similar_frames, min_distance=min_distance, mask=mask.value, high_pass=high_pass,
        refine=refine.value, n_fft=n_fft, hop=hop, max_iter=max_iter, tol=tol, seed=seed,
    )  # fmt: skip
    run_separation("repet", params, inputs, out, shared)
