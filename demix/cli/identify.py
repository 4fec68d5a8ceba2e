"""``demix identify``: enrol labelled examples into a model, then name separated sources."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.errors import ParameterError
from demix.manifest import runs_document
from demix.outputs import check_file_target

identify_app = typer.Typer(
    name="identify",
    help="Say who (or what) each separated source is, from labelled example clips.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Features(str, Enum):
    mfcc = "mfcc"


@identify_app.command(no_args_is_help=True)
@handle_errors()
def enroll(
    labelled_dir: Annotated[
        Path,
        typer.Argument(help="A folder with one sub-folder of example clips per label.", show_default=False),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Model file to write (.npz).")],
    features: Annotated[Features, typer.Option("--features", help="Per-frame features.")] = Features.mfcc,
    n_mfcc: Annotated[
        int, typer.Option("--n-mfcc", min=2, help="MFCCs per frame (c0, the level, is dropped).")
    ] = 20,
    sr: Annotated[
        int, typer.Option("--sr", min=1000, max=opt.MAX_RATE, help="Analysis sample rate (Hz).")
    ] = 16000,
    seed: opt.Seed = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing model file.")] = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Learn the labels from example clips; print the cross-validated held-out accuracy."""
    from demix.speakers.enrol import enrol
    from demix.speakers.features import FeatureSettings
    from demix.speakers.model import save_model

    reporter = Reporter(json, quiet, verbose)
    if out.suffix.lower() != ".npz":  # also keeps a typo from replacing an example clip
        raise ParameterError(f"-o {out}: the model file name must end in .npz")
    check_file_target(out, force=force)  # a folder, an unwritable place: before the work
    if out.exists() and not force:  # before the work, not only when saving
        raise ParameterError(f"model file {out} already exists; use --force to replace it")
    settings = FeatureSettings(sample_rate=sr, n_mfcc=n_mfcc, features=features.value)
    model = enrol(labelled_dir, settings, seed=seed)
    save_model(out, model, force=force)
    meta = {"model": str(out), **model.metadata()}
    if reporter.json_mode:
        reporter.emit_json(meta)
    elif reporter.shows_tables:
        _show_enrolment(reporter, meta)


@identify_app.command(no_args_is_help=True)
@handle_errors()
def label(
    model_file: Annotated[Path, typer.Argument(help="A model file from 'demix identify enroll'.")],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Audio files or folders; a demix run folder gives its sources.", show_default=False
        ),
    ],
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Below this probability a source is unknown [default: the model's, from enrolment].",
        ),
    ] = None,
    allow_repeats: Annotated[
        bool,
        typer.Option("--allow-repeats", help="Let two sources of one run get the same label."),
    ] = False,
    rename: Annotated[
        bool,
        typer.Option("--rename", help="Rename run folders' sources to their labels; update demix.json."),
    ] = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Name each file by the enrolled label it matches; sources of one run get distinct labels."""
    from demix.speakers.label import collect_files, label_files
    from demix.speakers.model import load_model
    from demix.speakers.rename import rename_runs

    reporter = Reporter(json, quiet, verbose)
    model = load_model(model_file)
    files = collect_files(inputs)
    threshold = model.threshold if threshold is None else threshold
    results = label_files(model, files, threshold=threshold, allow_repeats=allow_repeats)
    settings = {"threshold": threshold, "allow_repeats": allow_repeats}
    renamed = rename_runs(results, model.labels, model_file, settings) if rename else {}
    records = [r.record(model.labels) for r in results]
    for record, result in zip(records, results, strict=True):
        new = renamed.get(str(result.path.parent), {}).get(result.path.name)
        if new is not None:
            record["renamed_to"] = str(result.path.with_name(new))
    payload = {"model": str(model_file), "labels": list(model.labels), **settings, "files": records}
    if reporter.json_mode:
        folders = dict.fromkeys(str(Path(r["file"]).parent) for r in records)
        runs = [
            {
                **payload,
                "folder": folder,
                "files": [r for r in records if str(Path(r["file"]).parent) == folder],
            }
            for folder in folders
        ]
        reporter.emit_json(runs_document(runs))
    elif reporter.shows_tables:
        _show_labels(reporter, payload)


def _show_enrolment(reporter: Reporter, meta: dict[str, Any]) -> None:
    table = Table(show_edge=False)
    for column in ("label", "files", "clips", "seconds", "windows"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for row in meta["enrolment"]["labels"]:
        table.add_row(row["label"], *(str(row[k]) for k in ("files", "clips", "seconds", "windows")))
    reporter.out.print(table)
    cv = meta["cross_validation"]
    reporter.out.print(
        f"held-out accuracy ({cv['folds']}-fold, grouped by {cv['grouped_by']}): "
        f"{cv['clip_accuracy']:.1%} of {cv['clips']} clips, {cv['window_accuracy']:.1%} of windows; "
        f"unknown below probability {meta['threshold']:.2f}"
    )
    reporter.out.print(f"model written to {meta['model']}")


def _show_labels(reporter: Reporter, payload: dict[str, Any]) -> None:
    table = Table(show_edge=False)
    for column in ("file", "label", "p", "runner-up", "p ", "unknown"):
        table.add_column(column, justify="left" if column in ("file", "label", "runner-up") else "right")
    for row in payload["files"]:
        name = row["label"] or (f"unknown ({row['candidate']}?)" if row["candidate"] else "unknown")
        table.add_row(
            row["file"],
            name,
            _p(row["probability"]),
            row["runner_up"] or "",
            _p(row["runner_up_probability"]),
            _p(row["unknown_probability"]),
        )
    reporter.out.print(table)
    for row in payload["files"]:
        if "renamed_to" in row:
            reporter.out.print(f"renamed {row['file']} → {Path(row['renamed_to']).name}")


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
