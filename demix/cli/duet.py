"""``demix duet``: more sources than microphones, by time-frequency masking of a stereo mixture."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.methods.duet import DuetParams


class Output(str, Enum):
    wiener = "wiener"
    soft = "soft"
    binary = "binary"


@separating_command
def duet(
    inputs: opt.Inputs,
    out: opt.Out,
    sources: Annotated[
        str,
        typer.Option(
            "-n",
            "--sources",
            help="Sources to separate, or auto: one per sharp peak of the histogram of bin pans.",
        ),
    ] = str(DuetParams.sources),
    n_fft: Annotated[
        int | None,
        typer.Option(
            "--n-fft",
            min=16,
            help="STFT frame length in samples [default: about 0.1 s, 2048 at 16 kHz, 4096 at 44.1 kHz].",
        ),
    ] = DuetParams.n_fft,
    hop: Annotated[
        int | None, typer.Option("--hop", min=1, help="STFT hop in samples [default: a quarter of --n-fft].")
    ] = DuetParams.hop,
    mask: Annotated[
        Output,
        typer.Option(
            "--mask",
            help="wiener: stereo Wiener filter from the fitted model (best); soft: posterior masks; "
            "binary: each bin to its most probable source.",
        ),
    ] = Output(DuetParams.mask),
    max_delay: Annotated[
        float, typer.Option("--max-delay", help="Largest inter-channel delay searched, in samples.")
    ] = DuetParams.max_delay,
    max_iter: Annotated[
        int, typer.Option("--max-iter", min=0, help="EM iterations; 0 is plain DUET (histogram peaks only).")
    ] = DuetParams.max_iter,
    tol: opt.Tol = DuetParams.tol,
    shared: Shared = Shared(),
) -> None:
    """Separate any number of panned (and delayed) sources from a stereo mix; each comes out stereo."""
    count: int | str = int(sources) if sources.strip().isdigit() else sources
    params = DuetParams(
        sources=count, n_fft=n_fft, hop=hop, mask=mask.value, max_delay=max_delay, max_iter=max_iter, tol=tol
    )
    run_separation("duet", params, inputs, out, shared)
