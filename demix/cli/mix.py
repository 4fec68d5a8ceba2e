"""``demix mix``: synthetic mixtures with a known mixing matrix, references and truth."""

from __future__ import annotations

from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.inputs import expand_inputs
from demix.jobs import WriteOptions
from demix.mixdown import build_mix
from demix.mixing import parse_matrix


@handle_errors()
def mix(
    sources: Annotated[list[str], typer.Argument(help="Two or more source files (folders and globs too).")],
    out: opt.Out,
    matrix: Annotated[
        str | None,
        typer.Option(
            "--matrix", help="Rows are microphones: '0.9,0.5;0.4,0.8', or a JSON file {\"mixing\": …}."
        ),
    ] = None,
    channels: Annotated[
        int | None,
        typer.Option("--channels", min=1, help="Microphones for a random matrix [default: sources]."),
    ] = None,
    seed: opt.Seed = 0,
    sr: opt.SampleRate = None,
    snr: Annotated[
        float | None, typer.Option("--snr", help="Add white noise this many dB below each channel.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Seconds to keep [default: the shortest source].")
    ] = None,
    fmt: opt.Format = "wav",
    subtype: opt.Subtype = opt.DEFAULT_SUBTYPE,
    force: opt.Force = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Mix source files with a known (given or seeded random) matrix: mixture = A @ references."""
    reporter = Reporter(json, quiet, verbose)
    paths = expand_inputs(sources)
    A = parse_matrix(matrix) if matrix is not None else None
    params = {
        "matrix": matrix,
        "channels": channels,
        "seed": seed,
        "sr": sr,
        "snr": snr,
        "duration": duration,
        "format": fmt,
        "subtype": subtype,
    }
    manifest = build_mix(
        paths,
        out,
        A=A,
        n_channels=channels,
        seed=seed,
        snr_db=snr,
        duration=duration,
        options=WriteOptions(fmt=fmt, subtype=subtype, force=force, sample_rate=sr),
        params=params,
    )
    if reporter.json_mode:
        reporter.emit_json(manifest)
    elif reporter.shows_tables:
        truth = manifest["truth"]["mixing"]
        rate, frames = manifest["inputs"][0]["sample_rate"], manifest["inputs"][0]["frames"]
        reporter.out.print(
            f"mixed {len(paths)} sources into {len(truth)} channel(s), "
            f"{frames / rate:.2f} s at {rate} Hz → {out}/"
        )
        reporter.out.print(f"gain {manifest['gain']:.3f}; mixing matrix (rows are microphones):")
        for row in truth:
            reporter.out.print("  " + "  ".join(f"{v:+.3f}" for v in row))
