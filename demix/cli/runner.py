"""The part every separating command shares: expand inputs, run the pipeline, render, exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from demix.cli.console import EXIT_BATCH_FAILED, EXIT_NOT_CONVERGED, Reporter
from demix.cli.fetch import download_bar
from demix.cli.shared import Shared
from demix.errors import DemixError
from demix.inputs import Input, expand_sources, label
from demix.jobs import Job
from demix.manifest import runs_document
from demix.pipeline import plan_folders, separate_batch
from demix.registry import method_spec


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
    with download_bar(reporter) as progress:
        folders = plan_folders(
            inputs, out, options, progress=progress, log=reporter.info, folder_template=shared.folder
        )
    jobs = [
        Job(command=command, method=method, params=params, source=item, folder=folder, options=options)
        for item, folder in zip(inputs, folders, strict=True)
    ]

    finished: list[tuple[Input, dict[str, Any]]] = []

    def on_done(path: Input, outcome: dict[str, Any] | DemixError) -> None:
        if isinstance(outcome, DemixError):
            reporter.error(f"{path}: {outcome}")
            return
        finished.append((path, outcome))
        for message in outcome.get("warnings", []):
            reporter.warn(f"{path}: {message}")

    with reporter.progress(command) as bar:
        result = separate_batch(jobs, progress=lambda item: bar(label(item)), on_done=on_done)
    if reporter.json_mode:
        reporter.emit_json(runs_document(result.manifests, result.failures))
    if reporter.shows_tables:  # stdout waits until the progress bar on stderr is gone
        for item, manifest in finished:
            _show_run(reporter, item, folders[inputs.index(item)], manifest)
    if len(inputs) > 1 and reporter.shows_tables:
        reporter.out.print(f"{len(result.manifests)} of {len(inputs)} input(s) separated into {out}")
    if result.failures:
        raise typer.Exit(EXIT_BATCH_FAILED if result.manifests else result.failures[0][1].exit_code)
    if shared.strict and not all(m["convergence"]["converged"] for m in result.manifests):
        reporter.error("did not converge (--strict); raise --max-iter or --tol")
        raise typer.Exit(EXIT_NOT_CONVERGED)


def _show_run(reporter: Reporter, path: Input, folder: Path, manifest: dict[str, Any]) -> None:
    conv = manifest["convergence"]
    state = "converged" if conv["converged"] else "[yellow]not converged[/yellow]"
    reporter.out.print(f"{path} → {folder}/", soft_wrap=True)
    table = Table(show_edge=False)
    for column in ("file", "rms", "peak", "kurtosis"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for entry in manifest["outputs"]:
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
