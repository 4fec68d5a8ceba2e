"""``demix ica``: FastICA on multichannel audio (the cocktail-party problem)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import numpy as np
import typer

from demix.cli import options as opt
from demix.cli.console import handle_errors
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.types import Callback, Separation


class Algorithm(str, Enum):
    parallel = "parallel"
    deflation = "deflation"


class Contrast(str, Enum):
    logcosh = "logcosh"
    exp = "exp"
    cube = "cube"


@handle_errors()
@separating_command
def ica(
    inputs: opt.Inputs,
    out: opt.Out,
    sources: opt.Sources = None,
    algorithm: Annotated[
        Algorithm, typer.Option("--algorithm", help="Estimate all at once or one by one.")
    ] = Algorithm.parallel,
    fun: Annotated[Contrast, typer.Option("--fun", help="Contrast function G.")] = Contrast.logcosh,
    max_iter: opt.MaxIter = 200,
    tol: opt.Tol = 1e-4,
    seed: opt.Seed = 0,
    ref_channel: opt.RefChannel = 0,
    scale: opt.Scale = opt.Scaling.reference,
    shared: Shared = Shared(),
) -> None:
    """Separate as many sources as there are microphones with FastICA (ours, numpy)."""
    from demix.methods.fastica import fastica

    params = {
        "sources": sources,
        "algorithm": algorithm.value,
        "fun": fun.value,
        "max_iter": max_iter,
        "tol": tol,
        "seed": seed,
    }

    def method(X: np.ndarray, sample_rate: int, callback: Callback | None) -> Separation:
        return fastica(
            X,
            n_sources=sources,
            algorithm=algorithm.value,
            fun=fun.value,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
            callback=callback,
        )

    run_separation("ica", params, method, inputs, out, shared, scale=scale.value, ref_channel=ref_channel)
