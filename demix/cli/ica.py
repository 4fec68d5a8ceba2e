"""``demix ica``: independent component analysis on multichannel audio (the cocktail-party problem).

``--method fastica`` (default, Hyvärinen's fixed point), ``picard`` (maximum likelihood by
preconditioned L-BFGS, orthogonal or not) or ``jade`` (joint diagonalisation of fourth-order
cumulants). Options that belong to one method are refused with another.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from demix.cli import options as opt
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.errors import ParameterError
from demix.methods.fastica import FastICAParams
from demix.methods.jade import JadeParams
from demix.methods.n_sources import parse_sources
from demix.methods.picard import PicardParams


class Method(str, Enum):
    fastica = "fastica"
    picard = "picard"
    jade = "jade"


class Algorithm(str, Enum):
    parallel = "parallel"
    deflation = "deflation"


class Contrast(str, Enum):
    logcosh = "logcosh"
    exp = "exp"
    cube = "cube"


SourcesSpec = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--sources",
        help="Sources to output: a count, a fraction of explained variance (0.999) or auto "
        "(picard, jade) [default: the input's channels].",
        show_default=False,
    ),
]


@separating_command
def ica(
    inputs: opt.Inputs,
    out: opt.Out,
    sources: SourcesSpec = None,
    method: Annotated[
        Method, typer.Option("--method", help="fastica, picard (maximum likelihood) or jade (cumulants).")
    ] = Method.fastica,
    algorithm: Annotated[
        Algorithm | None,
        typer.Option("--algorithm", help="fastica: estimate all at once or one by one [default: parallel]."),
    ] = None,
    fun: Annotated[
        Contrast | None, typer.Option("--fun", help="fastica: contrast function G [default: logcosh].")
    ] = None,
    ortho: Annotated[
        bool | None,
        typer.Option(
            "--ortho/--no-ortho",
            help="picard: keep the outputs exactly uncorrelated [default: auto, orthogonal from 8 s on].",
            show_default=False,
        ),
    ] = None,
    extended: Annotated[
        bool | None,
        typer.Option(
            "--extended/--no-extended",
            help="picard: a sub-Gaussian density for tones and noise where needed [default: extended].",
            show_default=False,
        ),
    ] = None,
    restarts: Annotated[
        int | None,
        typer.Option("--restarts", help="picard: run K seeds, keep the most non-Gaussian [default: 1]."),
    ] = None,
    max_iter: Annotated[
        int | None,
        typer.Option(
            "--max-iter", help="Iteration limit [default: fastica 200, picard 500, jade 100 sweeps]."
        ),
    ] = None,
    tol: Annotated[
        float | None,
        typer.Option(
            "--tol",
            help="Convergence tolerance [default: fastica 1e-4, picard 1e-7, jade 0.01/sqrt(samples)].",
        ),
    ] = None,
    seed: opt.Seed = 0,
    ref_channel: opt.RefChannel = 0,
    scale: opt.Scale = opt.Scaling.reference,
    shared: Shared = Shared(),
) -> None:
    """Separate as many sources as there are microphones with ICA (ours, numpy)."""
    spec = None if sources is None else parse_sources(sources)
    given: dict[str, Any] = {
        "--algorithm": algorithm,
        "--fun": fun,
        "--ortho/--no-ortho": ortho,
        "--extended/--no-extended": extended,
        "--restarts": restarts,
    }
    own = {
        Method.fastica: ("--algorithm", "--fun"),
        Method.picard: ("--ortho/--no-ortho", "--extended/--no-extended", "--restarts"),
        Method.jade: (),
    }[method]
    for flag, value in given.items():
        if value is not None and flag not in own:
            raise ParameterError(f"{flag} does not apply to --method {method.value}")
    # Options left unset take the method's own defaults (its parameters dataclass).
    chosen: dict[str, Any] = {"max_iter": max_iter, "tol": tol}
    params: Any
    if method is Method.fastica:
        if not (spec is None or isinstance(spec, int)):
            raise ParameterError(f"-n/--sources {sources} needs --method picard or jade (fastica: a count)")
        chosen |= {"algorithm": algorithm and algorithm.value, "fun": fun and fun.value}
        params = FastICAParams(sources=spec, seed=seed, **_set(chosen))
    elif method is Method.picard:
        chosen |= {"extended": extended, "restarts": restarts}
        params = PicardParams(sources=spec, ortho=ortho, seed=seed, **_set(chosen))
    else:
        params = JadeParams(sources=spec, **_set(chosen))
    run_separation(method.value, params, inputs, out, shared, scale=scale.value, ref_channel=ref_channel)


def _set(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}
