"""``demix nmf``: spectrogram NMF separation that works on mono, blind or with learnt bases."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from demix.bases import SupervisedParams, load_bases, parse_bases_specs
from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.errors import ParameterError
from demix.methods.nmf_separate import NMFParams, SpectralFit


class Grouping(str, Enum):
    percussive_harmonic = "percussive-harmonic"
    timbre = "timbre"
    none = "none"


@separating_command
def nmf(
    inputs: opt.Inputs,
    out: opt.Out,
    components: Annotated[
        int, typer.Option("-k", "--components", min=1, help="NMF rank K.")
    ] = NMFParams.components,
    sources: Annotated[
        int, typer.Option("-n", "--sources", min=1, help="Sources to group components into.")
    ] = NMFParams.sources,
    beta: opt.Beta = SpectralFit.beta,
    n_fft: opt.NFft = SpectralFit.n_fft,
    hop: opt.Hop = SpectralFit.hop,
    max_iter: opt.MaxIter = SpectralFit.max_iter,
    tol: opt.Tol = SpectralFit.tol,
    seed: opt.Seed = SpectralFit.seed,
    init: opt.NMFInit = opt.Init(NMFParams.init),
    group: Annotated[
        Grouping,
        typer.Option(
            "--group",
            help="percussive-harmonic: drums vs tonal; timbre: k-means on MFCCs of the "
            "bases; none: every component its own output.",
        ),
    ] = Grouping(NMFParams.group),
    sparsity: opt.Sparsity = SpectralFit.sparsity,
    transients: Annotated[
        bool,
        typer.Option(
            "--transients/--no-transients",
            help="percussive-harmonic: move the attacks of tonal components to the percussive "
            "source (better harmonic stem; turn off when the drums are much quieter).",
        ),
    ] = NMFParams.transients,
    bases: Annotated[
        list[str] | None,
        typer.Option(
            "--bases",
            help="LABEL=FILE.npz: separate with bases learnt by `demix bases learn` (repeat per source).",
        ),
    ] = None,
    free: Annotated[
        int, typer.Option("--free", min=0, help="Extra free components beside --bases, written as residual.")
    ] = SupervisedParams.free,
    shared: Shared = Shared(),
) -> None:
    """Separate sources by NMF of the magnitude spectrogram, Wiener-masked back to audio."""
    fit: dict[str, Any] = {
        "beta": beta,
        "n_fft": n_fft,
        "hop": hop,
        "max_iter": max_iter,
        "tol": tol,
        "seed": seed,
    }
    if bases:
        supervised = SupervisedParams(bases=parse_bases_specs(bases), free=free, sparsity=sparsity, **fit)
        for file in supervised.bases.values():
            load_bases(Path(file))  # a missing or foreign file is refused before any input is read
        run_separation("nmf-supervised", supervised, inputs, out, shared)
        return
    if free:
        raise ParameterError("--free adds components to --bases; without --bases use -k/--components")
    params = NMFParams(
        components=components, sources=sources, init=init.value, group=group.value, sparsity=sparsity,
        transients=transients, **fit,
    )  # fmt: skip
    run_separation("nmf", params, inputs, out, shared)
