"""``demix mix``: synthetic mixtures with a known mixing matrix, references and truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.inputs import expand_inputs
from demix.jobs import WriteOptions
from demix.manifest import runs_document
from demix.mixdown import MAX_CHANNELS, build_mix, spatial_spec
from demix.mixing import parse_matrix


@handle_errors()
def mix(
    sources: Annotated[list[str], typer.Argument(help="Two or more source files (folders and globs too).")],
    out: opt.Out,
    matrix: Annotated[
        str | None,
        typer.Option(
            "--matrix",
            help="Rows are microphones: '0.9,0.5;0.4,0.8', or a JSON file {\"mixing\": …}.",
            show_default="a random matrix from --seed",
        ),
    ] = None,
    channels: Annotated[
        int | None,
        typer.Option(
            "--channels",
            min=1,
            max=MAX_CHANNELS,
            help="Microphones (random matrix or --room array) [default: one per source].",
        ),
    ] = None,
    room: Annotated[
        str | None,
        typer.Option(
            "--room", help="Simulate a shoebox room W,L,H metres (needs demix[room]).", show_default=False
        ),
    ] = None,
    rt60: Annotated[
        float | None,
        typer.Option(
            "--rt60",
            callback=opt.finite,
            help="Room reverberation time in seconds (with --room).",
            show_default="none: needed with --room",
        ),
    ] = None,
    mic_spacing: Annotated[
        float | None,
        typer.Option(
            "--mic-spacing",
            callback=opt.finite,
            help="Metres between microphones of the linear array [default: 0.05].",
        ),
    ] = None,
    array_centre: Annotated[
        str | None,
        typer.Option("--array-centre", help="x,y,z of the array's centre [default: the room's centre]."),
    ] = None,
    positions: Annotated[
        str | None, typer.Option("--positions", help="Source positions 'x,y,z;x,y,z' [default: seeded].")
    ] = None,
    distances: Annotated[
        str | None,
        typer.Option(
            "--distances", help="Source distances from the array centre, metres.", show_default="seeded"
        ),
    ] = None,
    azimuths: Annotated[
        str | None,
        typer.Option(
            "--azimuths",
            help="Source azimuths in degrees from the array axis (+x) towards +y.",
            show_default="seeded",
        ),
    ] = None,
    pan: Annotated[
        str | None,
        typer.Option(
            "--pan",
            help="Anechoic stereo: one angle per source, 0 = channel 0 only, 90 = channel 1.",
            show_default="none: an instantaneous mix",
        ),
    ] = None,
    delays: Annotated[
        str | None,
        typer.Option(
            "--delays",
            help="With --pan: samples by which channel 1 hears each source after channel 0.",
            show_default="0 for every source",
        ),
    ] = None,
    seed: opt.Seed = 0,
    sr: opt.SampleRate = None,
    snr: Annotated[
        float | None,
        typer.Option(
            "--snr",
            min=-60.0,
            max=300.0,
            callback=opt.finite,
            help="Add white noise this many dB below each channel.",
            show_default="no noise",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            callback=opt.finite,
            help="Seconds to keep [default: the shortest source].",
        ),
    ] = None,
    fmt: opt.Format = "wav",
    subtype: opt.Subtype = opt.DEFAULT_SUBTYPE,
    force: opt.Force = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Mix source files with a known truth: a matrix (mixture = A @ references), a room or pans.

    With --room or --pan each reference is its source's image at every microphone and
    mixture = sum of the references.
    """
    reporter = Reporter(json, quiet, verbose)
    paths = expand_inputs(sources)
    A = parse_matrix(matrix) if matrix is not None else None
    geometry = {
        "room": room,
        "rt60": rt60,
        "mic_spacing": mic_spacing,
        "array_centre": array_centre,
        "positions": positions,
        "distances": distances,
        "azimuths": azimuths,
        "pan": pan,
        "delays": delays,
    }
    spatial = spatial_spec(
        len(paths),
        channels=channels,
        room=room,
        rt60=rt60,
        mic_spacing=mic_spacing,
        array_centre=array_centre,
        positions=positions,
        distances=distances,
        azimuths=azimuths,
        pan=pan,
        delays=delays,
    )
    params = {
        "matrix": matrix,
        "channels": channels,
        **geometry,
        "seed": seed,
        "sr": sr,
        "snr": snr,
        "duration": duration,
        "format": fmt,
        "subtype": subtype,
    }
    manifest = build_mix(
        paths,
        out,
        A=A,
        n_channels=channels,
        seed=seed,
        snr_db=snr,
        duration=duration,
        options=WriteOptions(fmt=fmt, subtype=subtype, force=force, sample_rate=sr),
        params=params,
        spatial=spatial,
    )
    reporter.timings(manifest.get("timings", {}))
    if reporter.json_mode:
        reporter.emit_json(runs_document([manifest]))
    elif reporter.shows_tables:
        _print_summary(reporter, manifest, out)


def _print_summary(reporter: Reporter, manifest: dict[str, Any], out: Path) -> None:
    truth = manifest["truth"]
    rate, frames = manifest["inputs"][0]["sample_rate"], manifest["inputs"][0]["frames"]
    reporter.out.print(
        f"mixed {len(truth['sources'])} sources into {truth['channels']} channel(s) ({truth['kind']}), "
        f"{frames / rate:.2f} s at {rate} Hz → {out}/"
    )
    if truth["kind"] == "instantaneous":
        reporter.out.print(f"gain {manifest['gain']:.3f}; mixing matrix (rows are microphones):")
        for row in truth["mixing"]:
            reporter.out.print("  " + "  ".join(f"{v:+.3f}" for v in row))
        return
    reporter.out.print(f"gain {manifest['gain']:.3f}; references are the source images (mixture = their sum)")
    if truth["kind"] == "room":
        r = truth["room"]
        reporter.out.print(
            f"room {' × '.join(f'{v:g}' for v in r['size'])} m, RT60 {r['rt60_requested']:g} s requested, "
            f"{r['rt60_measured']:.3f} s measured (absorption {r['absorption']:.3f})"
        )
        for k, src in enumerate(truth["per_source"], start=1):
            reporter.out.print(
                f"  source_{k}: {src['distance_m']:.2f} m at {src['azimuth_deg']:.0f}° from the array"
            )
    else:
        for k, src in enumerate(truth["per_source"], start=1):
            reporter.out.print(f"  source_{k}: pan {src['pan_deg']:g}°, delay {src['delay_samples']} samples")
