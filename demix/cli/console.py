"""What the CLI shows: one error line, warnings, progress bars and result tables.

stdout carries results (a table, or only JSON with ``--json``); stderr carries everything else.
Exceptions are translated here, once: :class:`DemixError` becomes one red line and its exit code,
a refusal by the machine (disk full, permission denied) exit 5 with the OS's reason, SIGINT,
SIGTERM and SIGHUP exit 128 + the signal's number after the same clean-up as Ctrl-C.
"""

from __future__ import annotations

import errno
import functools
import json
import signal
import sys
import threading
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

from demix import outputs
from demix.errors import DemixError
from demix.types import Callback, IterInfo

P = ParamSpec("P")
R = TypeVar("R")

EXIT_NOT_CONVERGED = 3
EXIT_BATCH_FAILED = 4
EXIT_ENVIRONMENT = 5
_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENOENT})


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Python is so that the same clean-up as Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Handle SIGTERM (batch systems, ``timeout``) and SIGHUP (a closed terminal) like Ctrl-C.

    Only in the main thread, where Python delivers signals; signals a parent chose to ignore
    (``nohup``) stay ignored; the previous handlers are restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _terminate)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass(frozen=True)
class Reporter:
    """Output policy of one command run, from ``--json``, ``--quiet`` and ``--verbose``."""

    json_mode: bool = False
    quiet: bool = False
    verbose: bool = False

    @functools.cached_property
    def err(self) -> Console:
        # soft_wrap: a warning is one line in a log, whatever its length (never cut at 80 columns)
        return Console(stderr=True, highlight=False, soft_wrap=True)

    @functools.cached_property
    def out(self) -> Console:
        # Piped tables keep full file names instead of rich's 80-column default.
        return Console(highlight=False, width=None if sys.stdout.isatty() else 200)

    def info(self, message: str) -> None:
        """A detail shown only with ``--verbose``."""
        if self.verbose and not self.quiet:
            self.err.print(f"[dim]{escape(message)}[/dim]")

    def warn(self, message: str) -> None:
        """A warning: always on stderr, ``--quiet`` included (it silences progress and notes)."""
        self.err.print(f"[yellow]warning:[/yellow] {escape(message)}")

    def timings(self, timings: dict[str, float], *, label: str = "") -> None:
        """Per-stage timings (``load_s``, ``separate_s``, …), shown with ``--verbose``."""
        if timings:
            stages = ", ".join(f"{key.removesuffix('_s')} {value:.3f} s" for key, value in timings.items())
            self.info(f"{label}{': ' if label else ''}timings: {stages}")

    def error(self, message: str) -> None:
        self.err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)

    def emit_json(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")

    @property
    def shows_tables(self) -> bool:
        """Results go to stdout unless ``--json`` replaces them (``--quiet`` keeps them)."""
        return not self.json_mode

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

    Warnings not recorded elsewhere become ``warning:`` lines. OSErrors that are the machine's
    (disk full, permission denied) and MemoryError exit 5 with the OS's reason; Ctrl-C, SIGTERM and
    SIGHUP exit 128 + the signal number. Exception class names and tracebacks only with ``--verbose``.
    The output-folder locks this command took are given back when it ends.
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
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        reporter.error(
            "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
        )
        raise typer.Exit(128 + signum) from None
    except MemoryError:
        if reporter.verbose:
            traceback.print_exc()
        reporter.error("out of memory; try a shorter input, fewer channels or smaller options")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    except OSError as exc:
        if reporter.verbose:
            traceback.print_exc()
        if exc.errno not in outputs.ENVIRONMENT_ERRNOS | _PATH_ERRNOS:
            _internal(reporter, exc)
        where = exc.filename if exc.filename is not None else "a file"
        reporter.error(f"cannot access {where}: {exc.strerror or exc}")
        # a path that cannot name a file (too long, through a file, a loop) is the command line's
        raise typer.Exit(2 if exc.errno in _PATH_ERRNOS else EXIT_ENVIRONMENT) from None
    except Exception as exc:
        if reporter.verbose:
            traceback.print_exc()
        _internal(reporter, exc)
    finally:
        outputs.release_all()


def _internal(reporter: Reporter, exc: BaseException) -> None:
    name = f"{type(exc).__name__}: " if reporter.verbose else ""
    reporter.error(f"internal error (a bug: please report it with the -v traceback): {name}{exc}")
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
