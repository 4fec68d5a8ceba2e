"""``demix decorr``: second-order separation from time-lagged correlations (AMUSE, SOBI, LSQ)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.methods.sobi import DecorrParams


class Decorrelation(str, Enum):
    sobi = "sobi"
    amuse = "amuse"
    lsq = "lsq"


@separating_command
def decorr(
    inputs: opt.Inputs,
    out: opt.Out,
    method: Annotated[
        Decorrelation,
        typer.Option(
            "--method",
            help="sobi: joint diagonalisation of all lags; amuse: one lag, closed form; "
            "lsq: least squares over all lags (2 × 2).",
        ),
    ] = Decorrelation(DecorrParams.method),
    lags: Annotated[
        str | None,
        typer.Option(
            "--lags",
            help="Ranges and lists of lags in samples, e.g. 1-100 or 1,2,5,10 [default: 1-100; 1 for amuse].",
        ),
    ] = None,
    sources: opt.Sources = DecorrParams.sources,
    max_iter: opt.MaxIter = DecorrParams.max_iter,
    tol: opt.Tol = DecorrParams.tol,
    seed: opt.Seed = 0,
    ref_channel: opt.RefChannel = 0,
    scale: opt.Scale = opt.Scaling.reference,
    shared: Shared = Shared(),
) -> None:
    """Separate sources with different spectra from lagged covariances; works on Gaussian sources."""
    params = DecorrParams(
        method=method.value, lags=lags, sources=sources, max_iter=max_iter, tol=tol, seed=seed
    )
    run_separation("decorr", params, inputs, out, shared, scale=scale.value, ref_channel=ref_channel)
