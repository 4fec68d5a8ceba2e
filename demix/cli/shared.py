"""The options every separating command shares, added once by :func:`separating_command`.

Typer reads a command's options from its signature, so sharing eight options would otherwise mean
eight repeated parameters in every command. The decorator appends them to the signature and hands
the command one :class:`Shared` bundle instead.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from demix.audio import DEFAULT_SUBTYPE
from demix.batch import BatchOptions
from demix.cli import options as opt
from demix.cli.console import Reporter, translated_errors
from demix.fetch import parse_time
from demix.inputs import DEFAULT_FOLDER_TEMPLATE
from demix.jobs import DEFAULT_FILE_TEMPLATE, DEFAULT_MAX_MEMORY_MB, WriteOptions


@dataclass(frozen=True)
class Shared:
    """Output format, overwrite and reporting options of a separating command."""

    fmt: opt.Format = "wav"
    subtype: opt.Subtype = DEFAULT_SUBTYPE
    quality: opt.Quality = None
    sr: opt.SampleRate = None
    start: opt.Start = None
    duration: opt.Duration = None
    images: opt.Images = None
    name: opt.FileTemplate = DEFAULT_FILE_TEMPLATE
    folder: opt.FolderTemplate = DEFAULT_FOLDER_TEMPLATE
    plot: opt.Plot = False
    max_memory: opt.MaxMemory = DEFAULT_MAX_MEMORY_MB
    jobs: opt.Jobs = 1
    resume: opt.Resume = False
    scheduler: opt.Scheduler = None
    force: opt.Force = False
    strict: opt.Strict = False
    json: opt.Json = False
    quiet: opt.Quiet = False
    verbose: opt.Verbose = False

    @property
    def batch(self) -> BatchOptions:
        """How the inputs run: ``-j`` worker processes or a Dask ``--scheduler``; ``--resume``."""
        return BatchOptions(jobs=self.jobs, scheduler=self.scheduler, resume=self.resume)

    @property
    def reporter(self) -> Reporter:
        return Reporter(self.json, self.quiet, self.verbose)

    def write_options(self, *, scale: str = "reference", ref_channel: int = 0) -> WriteOptions:
        return WriteOptions(
            fmt=self.fmt,
            subtype=self.subtype,
            scale=scale,  # type: ignore[arg-type]
            ref_channel=ref_channel,
            force=self.force,
            sample_rate=self.sr,
            start=parse_time(self.start, "--start") or 0.0,
            duration=parse_time(self.duration, "--duration"),
            images=self.images,
            quality=self.quality,
            file_template=self.name,
            plot=self.plot,
            max_memory_mb=self.max_memory,
        )


_SHARED_PARAMETERS = [
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints)
    for f, hints in zip(fields(Shared), inspect.get_annotations(Shared, eval_str=True).values(), strict=True)
]


def separating_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the shared options (as its ``shared`` parameter) and error translation.

    One decorator does both, so there is no second decorator whose order could matter: errors
    are reported as the shared ``-q``/``-v`` options ask.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "shared"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        shared = Shared(**{p.name: kwargs.pop(p.name) for p in _SHARED_PARAMETERS})
        with translated_errors(shared.reporter):
            command(**kwargs, shared=shared)

    wrapper.__signature__ = signature.replace(parameters=own + _SHARED_PARAMETERS)  # type: ignore[attr-defined]
    return wrapper
