"""``demix fetch``: a URL's audio as a WAV file (yt-dlp + ffmpeg), and the download progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.errors import ParameterError
from demix.fetch import (
    Conversion,
    FetchProgress,
    ProgressHook,
    convert_file,
    fetch_to_file,
    find_ffmpeg,
    looks_like_url,
    parse_time,
)
from demix.manifest import runs_document

_TIME = "seconds (90) or [hh:]mm:ss (1:30); only the section is downloaded"


@handle_errors()
def fetch(
    url: Annotated[
        str,
        typer.Argument(
            help="http(s) URL (a page yt-dlp knows, or a link to audio or video), or a local audio or "
            "video file to convert and cut."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("-o", "--out", help="Output .wav file, or a folder to write <title>_<id>.wav in."),
    ] = Path("."),
    sr: Annotated[
        int | None, typer.Option("--sr", min=1, help="Sample rate in Hz [default: keep the source's].")
    ] = None,
    channels: Annotated[
        int | None,
        typer.Option("--channels", min=1, help="Channels, ffmpeg's downmix [default: keep the source's]."),
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help=f"Start at, in {_TIME}.")] = None,
    end: Annotated[str | None, typer.Option("--end", help=f"End at, in {_TIME}.")] = None,
    duration: Annotated[
        str | None,
        typer.Option("--duration", help="Section length, instead of --end: seconds or [hh:]mm:ss."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Download afresh and keep nothing in the cache.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Download a URL's best audio stream (or read a local file) and convert it to WAV (32-bit float)."""
    reporter = Reporter(json, quiet, verbose)
    first = parse_time(start, "--start")
    last = parse_time(end, "--end")
    length = parse_time(duration, "--duration")
    if length is not None:
        if last is not None:
            raise ParameterError("--end and --duration both say where the section ends; give one")
        if length <= 0:
            raise ParameterError(f"--duration {duration} must be longer than 0 s")
        last = (first or 0.0) + length
    conversion = Conversion(sr, channels, first, last)
    conversion.validate()
    ffmpeg = find_ffmpeg()
    reporter.info(f"ffmpeg: {ffmpeg.path} ({ffmpeg.source})")
    if not looks_like_url(url):
        fetched = convert_file(Path(url), out, conversion, force=force, ffmpeg=ffmpeg)
    else:
        with download_bar(reporter) as progress:
            fetched = fetch_to_file(
                url,
                out,
                conversion,
                force=force,
                use_cache=not no_cache,
                ffmpeg=ffmpeg,
                progress=progress,
                log=reporter.info,
            )
    result = {
        **fetched.media.record(),
        "folder": str(fetched.path.parent),
        "file": str(fetched.path),
        "sample_rate": fetched.sample_rate,
        "channels": fetched.channels,
        "frames": fetched.frames,
        "duration_s": round(fetched.duration, 6),
        "start": conversion.start,
        "end": conversion.end,
        "cached": fetched.cached,
        "ffmpeg": {"path": ffmpeg.path, "source": ffmpeg.source},
    }
    if reporter.json_mode:
        reporter.emit_json(runs_document([result]))
    elif reporter.shows_tables:
        origin = "from the cache" if fetched.cached else "downloaded"
        reporter.out.print(
            escape(
                f"{fetched.path}: {fetched.duration:.2f} s, {fetched.sample_rate} Hz, "
                f"{fetched.channels} channel(s) — {fetched.media.title} [{fetched.media.id}], {origin}"
            )
        )


@contextmanager
def download_bar(reporter: Reporter) -> Iterator[ProgressHook]:
    """Yield a hook that drives a rich download bar on stderr, one task per URL.

    The bar appears only once something is downloaded, and never with ``--quiet`` or off a TTY.
    """
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=reporter.err,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
        disable=reporter.quiet or not reporter.err.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def update(report: FetchProgress) -> None:
        if not tasks:
            bar.start()
        if report.url not in tasks:
            tasks[report.url] = bar.add_task("", total=None)
        bar.update(
            tasks[report.url],
            description=escape(f"{report.stage} {report.title}"),
            completed=report.done,
            total=report.total,
        )

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
