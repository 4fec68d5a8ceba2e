"""``demix eval``: BSS Eval v3, SI-SDR and improvements, Amari index, with the permutation solved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.errors import ParameterError


@handle_errors()
def evaluate(
    reference: Annotated[
        list[str],
        typer.Option(
            "-r", "--reference", help="A 'demix mix' folder, or reference files (repeat the option)."
        ),
    ],
    estimate: Annotated[
        list[str],
        typer.Option("-e", "--estimate", help="A demix run folder, or estimate files (repeat the option)."),
    ],
    ref_channel: opt.RefChannel = 0,
    window: Annotated[
        float | None,
        typer.Option("--window", help="Also score frame by frame, frames this many seconds long."),
    ] = None,
    hop: Annotated[
        float | None, typer.Option("--hop", help="Seconds between frames [default: --window].")
    ] = None,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Score estimates against references; multichannel files are scored on --ref-channel."""
    from demix.evaluate import evaluate as run_evaluation
    from demix.evaluate import load_side

    reporter = Reporter(json, quiet, verbose)
    refs = load_side(reference, role="reference", ref_channel=ref_channel)
    ests = load_side(estimate, role="estimate", ref_channel=ref_channel)
    if hop is not None and window is None:
        raise ParameterError("--hop needs --window")
    result = run_evaluation(refs, ests, ref_channel=ref_channel, window_s=window, hop_s=hop).as_dict()
    if reporter.json_mode:
        reporter.emit_json(result)
        return
    for note in result["notes"]:
        reporter.warn(note)
    if not reporter.shows_tables:
        return
    improvements = any("sdri" in row for row in result["scores"])
    table = Table(show_edge=False)
    columns = ["reference", "estimate", "SDR", "SIR", "SAR", "SI-SDR"] + (
        ["SDRi", "SI-SDRi"] if improvements else []
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("reference", "estimate") else "right")
    keys = ["sdr", "sir", "sar", "si_sdr"] + (["sdri", "si_sdri"] if improvements else [])
    for row in result["scores"]:
        table.add_row(_short(row["reference"]), _short(row["estimate"]), *(_db(row.get(k)) for k in keys))
    reporter.out.print(table)
    for row in result["scores"]:
        if "frames" in row:
            sdr = [v for v in row["frames"]["sdr"] if v is not None]
            median = f"{np.median(sdr):.2f} dB" if sdr else "nan"
            reporter.out.print(
                f"{_short(row['estimate'])}: median framewise SDR {median} over {len(sdr)} frame(s)"
            )
    if result["amari_index"] is not None:
        reporter.out.print(f"Amari index {result['amari_index']:.4f} (0 is perfect)")
    for name in result["unmatched_estimates"]:
        reporter.out.print(f"unmatched estimate: {name}")
    for name in result["missing_references"]:
        reporter.out.print(f"no estimate for reference: {name}")


def _short(path: str) -> str:
    """The last two path parts: enough to tell files apart in a table, the JSON has the rest."""
    return "/".join(Path(path).parts[-2:])


def _db(value: float | None) -> str:
    return "nan" if value is None else f"{value:.2f}"
