"""``demix iva``: reverberant (convolutive) mixtures by frequency-domain IVA, one source per mic."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.methods.iva import IVAParams


class SourceModel(str, Enum):
    nmf = "nmf"
    laplace = "laplace"
    gauss = "gauss"


class Update(str, Enum):
    ip2 = "ip2"
    ip = "ip"


@separating_command
def iva(
    inputs: opt.Inputs,
    out: opt.Out,
    sources: opt.Sources = IVAParams.sources,
    model: Annotated[
        SourceModel,
        typer.Option(
            "--model",
            help="nmf: ILRMA, each source's spectrogram low-rank (best, slowest); laplace: AuxIVA; "
            "gauss: AuxIVA with time-varying variances (between the two).",
        ),
    ] = SourceModel(IVAParams.model),
    n_fft: Annotated[
        int | None,
        typer.Option(
            "--n-fft",
            min=16,
            max=opt.MAX_FFT,
            help="STFT frame in samples; longer than most of the reverberation.",
            show_default="about 256 ms (4096 at 16 kHz)",
        ),
    ] = IVAParams.n_fft,
    hop: Annotated[
        int | None,
        typer.Option("--hop", min=1, max=opt.MAX_FFT, help="STFT hop in samples.", show_default="n-fft / 4"),
    ] = IVAParams.hop,
    max_iter: Annotated[
        int | None,
        typer.Option(
            "--max-iter", min=1, max=opt.MAX_ITER, help="Iteration limit.", show_default="40 nmf, 30 others"
        ),
    ] = IVAParams.max_iter,
    tol: opt.Tol = IVAParams.tol,
    basis: Annotated[
        int, typer.Option("--basis", min=1, max=256, help="NMF bases per source (--model nmf).")
    ] = IVAParams.n_basis,
    update: Annotated[
        Update,
        typer.Option(
            "--update", help="ip2: rows in pairs (converges, needed for 3+ sources); ip: one at a time."
        ),
    ] = Update(IVAParams.update),
    seed: opt.Seed = IVAParams.seed,
    shared: Shared = Shared(),
) -> None:
    """Separate speakers recorded in a room by several microphones; each comes out as every mic heard it."""
    params = IVAParams(
        sources=sources,
        model=model.value,
        n_fft=n_fft,
        hop=hop,
        max_iter=max_iter,
        tol=tol,
        n_basis=basis,
        update=update.value,
        seed=seed,
    )
    run_separation("iva", params, inputs, out, shared)
