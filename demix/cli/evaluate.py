"""``demix eval``: BSS Eval v3 or v4 (museval), SI-SDR, improvements over the mixture, Amari index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.jobs import DEFAULT_MAX_MEMORY_MB

V3_METRICS = ["sdr", "sir", "sar", "si_sdr"]
V4_METRICS = ["sdr", "isr", "sir", "sar"]
HEADERS = {
    "sdr": "SDR", "isr": "ISR", "sir": "SIR", "sar": "SAR", "si_sdr": "SI-SDR", "sdri": "SDRi",
    "si_sdri": "SI-SDRi",
}  # fmt: skip


@handle_errors()
def evaluate(
    reference: Annotated[
        list[str],
        typer.Option(
            "-r",
            "--reference",
            help="A 'demix mix' folder, a folder of reference files (mixture.* and mix.* are left out), "
            "files, or a named group summed in memory: NAME=a.flac+b.flac. Repeat the option.",
        ),
    ],
    estimate: Annotated[
        list[str],
        typer.Option(
            "-e",
            "--estimate",
            help="A demix run folder, estimate files, or NAME=file / NAME=a+b groups. Repeat the option. "
            "When every estimate is named after a reference, pairs are made by name, else by SIR.",
        ),
    ],
    mixture: Annotated[
        Path | None,
        typer.Option(
            "--mixture", help="The mixture, scored as every estimate: the baseline of SDRi/SI-SDRi."
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="v3: BSS Eval v3 + SI-SDR on --ref-channel (mir_eval). v4: BSS Eval v4 as museval computes "
            "it: all channels, 1 s frames, the median per target.",
        ),
    ] = "v3",
    ref_channel: Annotated[
        int,
        typer.Option(
            "--ref-channel", min=0, help="Channel scored in v3 (and in v4 against mono references), 0-based."
        ),
    ] = 0,
    window: Annotated[
        float | None,
        typer.Option("--window", help="Frame length in seconds (v3: also score frame by frame) [v4: 1]."),
    ] = None,
    hop: Annotated[
        float | None, typer.Option("--hop", help="Seconds between frames [default: --window].")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Score from this time on: seconds or [hh:]mm:ss[.ms].")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("--duration", help="Score this long: seconds or [hh:]mm:ss[.ms].")
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option("--scores", help="Write the scores here [default: scores.json beside the estimates]."),
    ] = None,
    no_scores: Annotated[bool, typer.Option("--no-scores", help="Do not write a scores file.")] = False,
    max_memory: Annotated[
        float,
        typer.Option(
            "--max-memory",
            min=50,
            help="MB the signals may take in memory before v3 on whole signals reads the files block by "
            "block; v4 and --window hold them whole.",
        ),
    ] = DEFAULT_MAX_MEMORY_MB,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Score estimates against references, with the permutation solved; write scores.json."""
    from demix import evaluate as ev
    from demix.errors import ParameterError
    from demix.fetch import parse_time

    if scores is not None and no_scores:
        raise ParameterError("--scores and --no-scores contradict each other")
    if mode not in ev.MODES:
        raise ParameterError(f"--mode {mode!r} is not one of {', '.join(ev.MODES)}")
    if hop is not None and window is None and mode == "v3":
        raise ParameterError("--hop needs --window")
    section = ev.Section(parse_time(start, "--start") or 0.0, parse_time(duration, "--duration"))
    if section.duration == 0:
        raise ParameterError("--duration must be longer than 0")
    reporter = Reporter(json, quiet, verbose)
    refs = ev.load_side(reference, role="reference", section=section)
    ests = ev.load_side(estimate, role="estimate", section=section)
    baseline = None
    if mixture is not None:
        baseline, rate = ev.load_mixture(mixture, section)
        if rate != refs.sample_rate:
            raise ParameterError(
                f"sample rates differ: the mixture at {rate} Hz, references at {refs.sample_rate} Hz"
            )
    path, not_written = (None, None) if no_scores else ev.scores_path(ests, scores)
    result = ev.evaluate(
        refs,
        ests,
        mixture=baseline,
        mode=mode,
        ref_channel=ref_channel,
        window_s=window,
        hop_s=hop,
        section=section,
        max_memory_mb=max_memory,
    ).as_dict()
    result["scores_file"] = None if path is None else str(path)
    if path is not None:
        in_manifest = ev.write_scores(result, path, ests)
        where = " (listed in the run's manifest)" if in_manifest else ""
        if not quiet:
            reporter.err.print(f"scores written to {escape(str(path))}{where}", soft_wrap=True)
    elif not_written:
        reporter.warn(f"scores not written: {not_written}")
    if reporter.json_mode:
        reporter.emit_json(result)
        return
    if not quiet:
        for note in result["notes"]:
            reporter.err.print(f"[dim]note:[/dim] {escape(note)}", soft_wrap=True)
    if reporter.shows_tables:
        _show(reporter, result)


def _show(reporter: Reporter, result: dict[str, Any]) -> None:
    """The scores table, what is NaN and why, the frames and the pairs left over."""
    rows = result["scores"]
    named = {
        side: {item["name"] for item in result[f"{side}s"] if item["labelled"]}
        for side in ("reference", "estimate")
    }

    def show(row: dict[str, Any], side: str) -> str:
        return _display(row, side, named[side])

    keys = list(V3_METRICS if result["mode"] == "v3" else V4_METRICS)
    keys += [k for k in ("sdri", "si_sdri") if any(k in row for row in rows)]
    table = Table(show_edge=False)
    for column in ["reference", "estimate", *(HEADERS[k] for k in keys)]:
        table.add_column(column, justify="left" if column in ("reference", "estimate") else "right")
    for row in rows:
        table.add_row(show(row, "reference"), show(row, "estimate"), *(_db(row.get(k)) for k in keys))
    if result["mode"] == "v4":
        reporter.out.print(
            f"BSS Eval v4 (museval): median over frames of {result['window_s']:g} s every "
            f"{result['hop_s']:g} s, {result['channels']} channel(s)"
        )
    reporter.out.print(table)
    reasons: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for key, reason in row.get("reasons", {}).items():
            reasons.setdefault((key, reason), []).append(show(row, "estimate"))
    for (key, reason), names in reasons.items():
        what = "frames" if key == "frames" else f"{HEADERS[key]} is nan"
        reporter.out.print(f"{what} ({', '.join(names)}): {reason}", soft_wrap=True)
    if result["mode"] == "v3":
        for row in rows:
            if "frames" in row:
                sdr = [v for v in row["frames"]["sdr"] if v is not None]
                median = f"{np.median(sdr):.2f} dB" if sdr else "nan"
                reporter.out.print(
                    f"{show(row, 'estimate')}: median framewise SDR {median} over {len(sdr)} frame(s)"
                )
    if result["amari_index"] is not None:
        reporter.out.print(f"Amari index {result['amari_index']:.4f} (0 is perfect)")
    for name in result["unmatched_estimates"]:
        reporter.out.print(f"unmatched estimate: {name}")
    for name in result["missing_references"]:
        reporter.out.print(f"no estimate for reference: {name}")


def _display(row: dict[str, Any], side: str, named: set[str]) -> str:
    """A file by its last two path parts; an item named on the command line, or a group, by its name."""
    label, name = row[side], row[f"{side}_name"]
    if "+" in label or name in named:
        return str(name)
    return "/".join(Path(label).parts[-2:])


def _db(value: float | None) -> str:
    return "nan" if value is None else f"{value:.2f}"
