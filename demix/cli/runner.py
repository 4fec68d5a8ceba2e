"""The part every separating command shares: expand inputs, run the pipeline, render, exit code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from demix.batch import run_batch
from demix.cli.console import EXIT_BATCH_FAILED, EXIT_NOT_CONVERGED, Reporter
from demix.cli.fetch import download_bar
from demix.cli.shared import Shared
from demix.errors import DemixError
from demix.inputs import Input, expand_sources, label
from demix.jobs import Job
from demix.manifest import runs_document
from demix.pipeline import plan_folders
from demix.registry import method_spec
from demix.types import Callback


def run_separation(
    method: str,
    params: Any,
    specs: list[str],
    out: Path,
    shared: Shared,
    *,
    scale: str = "reference",
    ref_channel: int = 0,
) -> None:
    """Separate every input with the registered ``method``, print the results, exit with DESIGN's code."""
    command = method_spec(method).command
    options = shared.write_options(scale=scale, ref_channel=ref_channel)
    reporter = shared.reporter
    inputs = expand_sources(specs)
    batch = shared.batch
    with download_bar(reporter) as progress:
        folders = plan_folders(
            inputs,
            out,
            options,
            progress=progress,
            log=reporter.info,
            folder_template=shared.folder,
            resume=batch.resume,
        )
    jobs = [
        Job(command=command, method=method, params=params, source=item, folder=folder, options=options)
        for item, folder in zip(inputs, folders, strict=True)
    ]

    finished: list[tuple[Input, dict[str, Any]]] = []
    skipped: list[tuple[Input, dict[str, Any]]] = []
    parallel = batch.scheduler is not None or (batch.jobs > 1 and len(jobs) > 1)
    started = 0

    def on_done(path: Input, outcome: dict[str, Any] | DemixError) -> None:
        advance()
        if isinstance(outcome, DemixError):
            message = str(outcome)  # the path once: most messages name it already
            reporter.error(message if str(path) in message else f"{path}: {message}")
            return
        finished.append((path, outcome))
        reporter.timings(outcome.get("timings", {}), label=str(path))
        for message in outcome.get("warnings", []):
            reporter.warn(f"{path}: {message}")

    def on_skip(path: Input, manifest: dict[str, Any]) -> None:
        skipped.append((path, manifest))
        reporter.info(f"{path}: already separated into {manifest.get('folder')} (--resume); skipped")

    def per_input(item: Input) -> Callback:
        nonlocal started
        started += 1
        count = f"[{started}/{len(jobs) - len(skipped)}] " if len(jobs) > 1 else ""
        return bar(f"{count}{label(item)}")

    with reporter.progress(command) as bar, _count_bar(reporter, command, len(jobs), parallel) as advance:
        result = run_batch(jobs, batch, progress=per_input, on_done=on_done, on_skip=on_skip)
    if reporter.json_mode:
        document = runs_document(result.manifests, result.failures)
        document["summary"]["skipped"] = result.skipped
        reporter.emit_json(document)
    if reporter.shows_tables:  # stdout waits until the progress bar on stderr is gone
        for item, manifest in finished:
            _show_run(reporter, item, folders[inputs.index(item)], manifest)
    if len(inputs) > 1 and reporter.shows_tables:
        note = f" ({len(skipped)} already done: skipped)" if skipped else ""
        reporter.out.print(f"{len(result.manifests)} of {len(inputs)} input(s) separated into {out}{note}")
    elif skipped and reporter.shows_tables:
        reporter.out.print(f"{skipped[0][0]} → {folders[0]}/ already holds this run (--resume): skipped")
    if result.failures:
        done = result.manifests or result.skipped
        raise typer.Exit(EXIT_BATCH_FAILED if done else result.failures[0][1].exit_code)
    if shared.strict and not all(m["convergence"]["converged"] for m in result.manifests):
        reporter.error("did not converge (--strict); raise --max-iter or --tol")
        raise typer.Exit(EXIT_NOT_CONVERGED)


@contextmanager
def _count_bar(reporter: Reporter, label: str, total: int, shown: bool) -> Iterator[Callable[[], None]]:
    """Inputs done out of ``total`` (parallel runs report per input, not per iteration)."""
    bar = Progress(
        TextColumn(f"{label}: inputs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=reporter.err,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
        disable=not shown or reporter.quiet or not reporter.err.is_terminal,
    )
    task = bar.add_task(label, total=total)
    with bar:
        yield lambda: bar.advance(task)


def _show_run(reporter: Reporter, path: Input, folder: Path, manifest: dict[str, Any]) -> None:
    conv = manifest["convergence"]
    state = "converged" if conv["converged"] else "[yellow]not converged[/yellow]"
    reporter.out.print(f"{path} → {folder}/", soft_wrap=True)
    table = Table(show_edge=False)
    for column in ("file", "rms", "peak", "kurtosis"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for entry in (o for o in manifest["outputs"] if o["role"] == "source"):
        kurt = entry.get("kurtosis")
        table.add_row(
            entry["file"],
            f"{entry['rms']:.4f}",
            f"{entry['peak']:.3f}",
            "" if kurt is None else f"{kurt:.2f}",
        )
    reporter.out.print(table)
    reporter.out.print(
        f"{state} in {conv['n_iter']} iteration(s); gain {manifest['gain']:.3f}; "
        f"{sum(manifest['timings'].values()):.2f} s"
    )
