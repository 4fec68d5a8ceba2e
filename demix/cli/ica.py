"""``demix ica``: FastICA on multichannel audio (the cocktail-party problem)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import numpy as np
import typer

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.cli.runner import run_separation
from demix.pipeline import WriteOptions
from demix.types import Callback, Separation


class Algorithm(str, Enum):
    parallel = "parallel"
    deflation = "deflation"


class Contrast(str, Enum):
    logcosh = "logcosh"
    exp = "exp"
    cube = "cube"


@handle_errors()
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
    fmt: opt.Format = "wav",
    subtype: opt.Subtype = opt.DEFAULT_SUBTYPE,
    sr: opt.SampleRate = None,
    force: opt.Force = False,
    strict: opt.Strict = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
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

    options = WriteOptions(
        fmt=fmt, subtype=subtype, scale=scale.value, ref_channel=ref_channel, force=force, sample_rate=sr
    )
    run_separation("ica", params, method, inputs, out, options, Reporter(json, quiet, verbose), strict=strict)
