"""The Typer app: one small module per command, errors translated once in ``console``."""

from __future__ import annotations

from typing import Annotated

import typer

from demix import __version__
from demix.cli.bases import bases_app
from demix.cli.decorr import decorr
from demix.cli.evaluate import evaluate
from demix.cli.fetch import fetch
from demix.cli.ica import ica
from demix.cli.identify import identify_app
from demix.cli.mix import mix
from demix.cli.nmf import nmf
from demix.cli.report import report

app = typer.Typer(
    name="demix",
    help="Classical blind audio source separation: mix, separate (ICA, NMF, second-order), evaluate, "
    "identify the sources.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(no_args_is_help=True)(mix)
app.command(no_args_is_help=True)(ica)
app.command(no_args_is_help=True)(nmf)
app.command(no_args_is_help=True)(decorr)
app.command("eval", no_args_is_help=True)(evaluate)
app.command(no_args_is_help=True)(fetch)
app.command(no_args_is_help=True)(report)
app.add_typer(identify_app)
app.add_typer(bases_app)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"demix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Classical blind audio source separation: mix, separate, evaluate."""


def main() -> None:
    """Console-script entry point."""
    app()
