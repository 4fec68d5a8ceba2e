"""``demix report``: one self-contained HTML page that shows and plays a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors


@handle_errors()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A demix run folder (or a 'demix mix' folder).", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="The HTML file to write [default: RUN_DIR/report.html]."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "-r",
            "--reference",
            help="Score against these references (a 'demix mix' folder or a folder of files).",
        ),
    ] = None,
    embed_audio: Annotated[
        float,
        typer.Option(
            "--embed-audio",
            min=0.0,
            help="Embed audio files up to this many MB in the page; larger ones (all, with 0) are "
            "linked relative to it.",
        ),
    ] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report file.")] = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Write an HTML page with the run's spectrograms, players, convergence, facts and scores."""
    from demix.report import write_report

    reporter = Reporter(json, quiet, verbose)
    path, page = write_report(
        run_dir, out, reference=reference, embed_audio_under=int(embed_audio * 1e6), force=force
    )
    for note in page.notes:
        reporter.warn(note)
    if reporter.json_mode:
        reporter.emit_json(page.summary(path))
    elif reporter.shows_tables:
        reporter.out.print(f"{path} ({page.panels} signal(s), {len(page.html) / 1e6:.1f} MB)", soft_wrap=True)
