"""``demix ica``: FastICA on multichannel audio (the cocktail-party problem)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.methods.fastica import FastICAParams


class Algorithm(str, Enum):
    parallel = "parallel"
    deflation = "deflation"


class Contrast(str, Enum):
    logcosh = "logcosh"
    exp = "exp"
    cube = "cube"


@separating_command
def ica(
    inputs: opt.Inputs,
    out: opt.Out,
    sources: opt.Sources = FastICAParams.sources,
    algorithm: Annotated[
        Algorithm, typer.Option("--algorithm", help="Estimate all at once or one by one.")
    ] = Algorithm(FastICAParams.algorithm),
    fun: Annotated[Contrast, typer.Option("--fun", help="Contrast function G.")] = Contrast(
        FastICAParams.fun
    ),
    max_iter: opt.MaxIter = FastICAParams.max_iter,
    tol: opt.Tol = FastICAParams.tol,
    seed: opt.Seed = 0,
    ref_channel: opt.RefChannel = 0,
    scale: opt.Scale = opt.Scaling.reference,
    shared: Shared = Shared(),
) -> None:
    """Separate as many sources as there are microphones with FastICA (ours, numpy)."""
    params = FastICAParams(
        sources=sources, algorithm=algorithm.value, fun=fun.value, max_iter=max_iter, tol=tol, seed=seed
    )
    run_separation("fastica", params, inputs, out, shared, scale=scale.value, ref_channel=ref_channel)
