"""``demix decorr``: second-order separation from time-lagged correlations (AMUSE, SOBI, LSQ)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import numpy as np
import typer

from demix.cli import options as opt
from demix.cli.console import handle_errors
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.errors import ParameterError
from demix.types import Callback, Separation


class Decorrelation(str, Enum):
    sobi = "sobi"
    amuse = "amuse"
    lsq = "lsq"


@handle_errors()
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
    ] = Decorrelation.sobi,
    lags: Annotated[
        str | None,
        typer.Option(
            "--lags",
            help="Ranges and lists of lags in samples, e.g. 1-100 or 1,2,5,10 [default: 1-100; 1 for amuse].",
        ),
    ] = None,
    sources: opt.Sources = None,
    max_iter: opt.MaxIter = 100,
    tol: opt.Tol = 1e-8,
    seed: opt.Seed = 0,
    ref_channel: opt.RefChannel = 0,
    scale: opt.Scale = opt.Scaling.reference,
    shared: Shared = Shared(),
) -> None:
    """Separate sources with different spectra from lagged covariances; works on Gaussian sources."""
    from demix.methods.sobi import amuse, lsq, parse_lags, sobi

    lag_text = lags or ("1" if method is Decorrelation.amuse else "1-100")
    chosen = parse_lags(lag_text)
    if method is Decorrelation.amuse and len(chosen) != 1:
        raise ParameterError(f"--lags {lag_text!r}: amuse diagonalises one lagged covariance; give one lag")
    params = {
        "sources": sources,
        "method": method.value,
        "lags": lag_text,
        "max_iter": max_iter,
        "tol": tol,
        "seed": seed,
    }

    def separate(X: np.ndarray, sample_rate: int, callback: Callback | None) -> Separation:
        if method is Decorrelation.amuse:
            return amuse(X, n_sources=sources, lag=int(chosen[0]))
        if method is Decorrelation.lsq:
            return lsq(
                X, n_sources=sources, lags=lag_text, seed=seed, max_iter=max_iter, tol=tol, callback=callback
            )
        return sobi(X, n_sources=sources, lags=lag_text, max_iter=max_iter, tol=tol, callback=callback)

    run_separation(
        "decorr", params, separate, inputs, out, shared, scale=scale.value, ref_channel=ref_channel
    )
