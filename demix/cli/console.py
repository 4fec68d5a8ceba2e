"""What the CLI shows: one error line, warnings, progress bars and result tables.

stdout carries results (a table, or only JSON with ``--json``); stderr carries everything else.
Exceptions are translated here, once: :class:`DemixError` becomes one red line and its exit code.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from demix.errors import DemixError
from demix.types import Callback, IterInfo

P = ParamSpec("P")
R = TypeVar("R")

EXIT_NOT_CONVERGED = 3
EXIT_BATCH_FAILED = 4


@dataclass(frozen=True)
class Reporter:
    """Output policy of one command run, from ``--json``, ``--quiet`` and ``--verbose``."""

    json_mode: bool = False
    quiet: bool = False
    verbose: bool = False

    @functools.cached_property
    def err(self) -> Console:
        return Console(stderr=True, highlight=False)

    @functools.cached_property
    def out(self) -> Console:
        # Piped tables keep full file names instead of rich's 80-column default.
        return Console(highlight=False, width=None if sys.stdout.isatty() else 200)

    def info(self, message: str) -> None:
        """A detail shown only with ``--verbose``."""
        if self.verbose and not self.quiet:
            self.err.print(f"[dim]{escape(message)}[/dim]")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.err.print(f"[yellow]warning:[/yellow] {escape(message)}")

    def error(self, message: str) -> None:
        self.err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)

    def emit_json(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")

    @property
    def shows_tables(self) -> bool:
        return not (self.json_mode or self.quiet)

    @contextmanager
    def progress(self, label: str) -> Iterator[Callable[[str], Callback]]:
        """Yield a factory of per-input callbacks driving a rich bar (hidden off a TTY or quiet)."""
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("it"),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
            # stdout stays stdout (results are printed once the bar is gone), never proxied to stderr
            redirect_stdout=False,
            redirect_stderr=False,
            disable=self.quiet or not self.err.is_terminal,
        )

        def for_input(name: str) -> Callback:
            task = bar.add_task(f"{label} {name}", total=None)

            def update(info: IterInfo) -> None:
                bar.update(task, completed=info.iteration, total=info.max_iter)

            return update

        with bar:
            yield for_input


@contextmanager
def translated_errors(reporter: Reporter) -> Iterator[None]:
    """Translate exceptions once: DemixError → its exit code, anything else → exit 1.

    Warnings not recorded elsewhere become ``warning:`` lines (none with ``--quiet``). A traceback
    is printed only with ``--verbose``.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for message in dict.fromkeys(str(w.message) for w in caught):
                    reporter.warn(message)
    except (typer.Exit, typer.Abort):
        raise
    except DemixError as exc:
        if reporter.verbose:
            traceback.print_exc()
        reporter.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.error("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if reporter.verbose:
            traceback.print_exc()
        reporter.error(f"internal error: {type(exc).__name__}: {exc} (run with -v for details)")
        raise typer.Exit(1) from None


def handle_errors() -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a command inside :func:`translated_errors`, reporting as its own ``-q``/``-v`` ask.

    For commands that declare ``quiet`` and ``verbose`` themselves; separating commands get the
    same translation from :func:`demix.cli.shared.separating_command`, so no command stacks two
    decorators whose order would matter.
    """

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            reporter = Reporter(quiet=bool(kwargs.get("quiet")), verbose=bool(kwargs.get("verbose")))
            with translated_errors(reporter):
                return command(*args, **kwargs)

        return wrapper

    return decorate
