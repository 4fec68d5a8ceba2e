"""The Typer app: one small module per command, errors translated once in ``console``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_errors  # typer vendors click
from typer.core import TyperGroup

from demix import __version__
from demix.cli.bases import bases_app
from demix.cli.console import Reporter, signals_as_interrupts
from demix.cli.decorr import decorr
from demix.cli.duet import duet
from demix.cli.evaluate import evaluate
from demix.cli.fetch import fetch
from demix.cli.ica import ica
from demix.cli.identify import identify_app
from demix.cli.iva import iva
from demix.cli.mix import mix
from demix.cli.nmf import nmf
from demix.cli.options import polish_help
from demix.cli.repet import repet
from demix.cli.report import report


class _OneLineErrors(TyperGroup):
    """The root command: usage errors (``-n 0``, ``--bogus``, an unknown command) as one
    ``error:`` line and exit 2, like every other refusal, instead of a boxed panel; SIGTERM and
    SIGHUP handled like Ctrl-C."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:  # fmt: skip
        polish_help(self)
        try:
            with signals_as_interrupts():
                code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # a bare command: its help, as before
            typer.echo(exc.ctx.get_help())
            code = 2
        except click_errors.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            Reporter().error(" ".join(exc.format_message().split()) + hint)
            code = exc.exit_code
        except click_errors.ClickException as exc:
            Reporter().error(" ".join(exc.format_message().split()))
            code = exc.exit_code
        except typer.Abort:
            Reporter().error("interrupted")
            code = 130
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=_OneLineErrors,
    name="demix",
    help="Classical blind audio source separation: mix, separate (ICA, NMF, second-order), evaluate, "
    "identify the sources.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(no_args_is_help=True)(mix)
app.command(no_args_is_help=True)(ica)
app.command(no_args_is_help=True)(nmf)
app.command(no_args_is_help=True)(decorr)
app.command(no_args_is_help=True)(duet)
app.command(no_args_is_help=True)(iva)
app.command(no_args_is_help=True)(repet)
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
    app(prog_name="demix")
