"""``demix mix``: write a mixture folder (mixture, aligned references, truth) from source files."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demix import audio
from demix.checks import audible
from demix.errors import ParameterError
from demix.jobs import WriteOptions, stage_audio
from demix.manifest import clean, input_record, matrix, new_manifest, output_record
from demix.mixing import add_noise, mix, parse_numbers, parse_points, random_mixing
from demix.outputs import RunFolder, check_run_folder
from demix.post import run_gain
from demix.rooms import DEFAULT_MIC_SPACING, PanSpec, RoomSpec, spatial_images
from demix.types import Signal

#: Most microphones ``demix mix`` simulates (WAV holds 65535 channels; nobody needs that many).
MAX_CHANNELS = 64


def build_mix(
    sources: Sequence[Path],
    folder: Path,
    *,
    A: np.ndarray | None,
    n_channels: int | None,
    seed: int | None,
    snr_db: float | None,
    duration: float | None,
    options: WriteOptions,
    params: dict[str, Any],
    spatial: RoomSpec | PanSpec | None = None,
) -> dict[str, Any]:
    """Write ``mixture``, aligned ``references/`` and the truth.

    Instantaneous (``spatial`` None): ``mixture = A @ references``, mono references, the true
    ``A`` in the manifest. Spatial (a room or pans): each reference is its source's image, one
    channel per microphone, and ``mixture = Σ references``; the manifest records the geometry.

    Sources are resampled to one rate (``options.sample_rate`` or the first file's), downmixed to
    mono by averaging their channels, and trimmed to the shortest (or ``duration`` seconds). One
    gain scales mixture, references and noise together when the mixture would clip.
    """
    options.validate()
    if options.fmt in audio.LOSSY:
        raise ParameterError(
            f"--format {options.fmt}: a mix folder is a known truth (mixture = sum of references); "
            "a lossy codec would break it: use wav or flac"
        )
    if len(sources) < 2:
        raise ParameterError(f"demix mix needs at least 2 source files, got {len(sources)}")
    if snr_db is not None and not np.isfinite(snr_db):
        raise ParameterError(f"--snr must be a finite number of dB, got {snr_db}")
    check_run_folder(folder, force=options.force, inputs=sources)
    rng = np.random.default_rng(seed)
    n_src = len(sources)
    model = spatial if spatial is not None else _instantaneous_matrix(A, n_channels, n_src, rng)
    if spatial is not None and A is not None:
        raise ParameterError(
            "--matrix is for instantaneous mixtures; it cannot be combined with --room or --pan"
        )

    tic = time.perf_counter()
    signals, rate = _load_mono_sources(sources, options.sample_rate)
    channels = (
        model.shape[0]
        if isinstance(model, np.ndarray)
        else model.n_mics
        if isinstance(model, RoomSpec)
        else 2
    )
    audio.check_format_limits(options.fmt, channels, rate)  # before mixing (a room takes a while)
    length = min(s.shape[0] for s in signals)
    if duration is not None:
        wanted = round(duration * rate)
        if not np.isfinite(duration) or wanted < 1 or wanted > length:
            raise ParameterError(
                f"--duration {duration:g} is invalid; expected at least one sample (1/{rate} s) and at "
                f"most the shortest source ({length / rate:.3f} s)"
            )
        length = wanted
    S = np.stack([s[:length] for s in signals])
    load_s = time.perf_counter() - tic

    tic = time.perf_counter()
    if isinstance(model, np.ndarray):
        X, noise = mix(S, model, snr_db=snr_db, rng=rng)
        references, truth = S, {"kind": "instantaneous", "mixing": matrix(model)}
    else:
        references, truth = spatial_images(S, rate, model, rng)
        X, noise = add_noise(references.sum(axis=0), snr_db=snr_db, rng=rng)
    mix_s = time.perf_counter() - tic
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(references))):
        raise ParameterError(
            "the mixture would hold infinite or NaN samples; use --matrix entries of a sensible size "
            f"(largest |entry| here {float(np.max(np.abs(model))) if isinstance(model, np.ndarray) else 0:g})"
        )
    gain = run_gain([X, references] + ([noise] if noise is not None else []))
    files = [("mixture", "mixture", X)]
    files += [(f"references/source_{i + 1}", "reference", references[i]) for i in range(n_src)]
    if noise is not None:
        files.append(("references/noise", "noise", noise))

    manifest = new_manifest("mix", params)
    manifest["folder"] = str(folder)
    manifest["inputs"] = [
        input_record(path, Signal(s[None, :length], rate)) for path, s in zip(sources, signals, strict=True)
    ]
    tic = time.perf_counter()
    with RunFolder(folder) as run:
        outputs = []
        for stem, role, data in files:
            file = f"{stem}.{options.fmt}"
            audible(file, data, gain, options.subtype)
            stage_audio(run, file, data * gain, rate, options)
            outputs.append(output_record(file, role, data * gain))
        manifest.update(
            outputs=outputs,
            gain=gain,
            truth={
                **truth,
                "channels": X.shape[0],
                "references_are": "source images" if spatial is not None else "sources",
                "references": [f"references/source_{i + 1}.{options.fmt}" for i in range(n_src)],
                "sources": [str(p) for p in sources],
                "snr_db": snr_db,
                "noise": f"references/noise.{options.fmt}" if noise is not None else None,
                "seed": seed,
            },
            timings={
                "load_s": round(load_s, 4),
                "mix_s": round(mix_s, 4),
                "write_s": round(time.perf_counter() - tic, 4),
            },
        )
        manifest = clean(manifest)
        run.commit(manifest)
    return manifest


def _instantaneous_matrix(
    A: np.ndarray | None, n_channels: int | None, n_src: int, rng: np.random.Generator
) -> np.ndarray:
    """The given ``A`` checked against ``--channels``, or a seeded random one."""
    if A is None:
        if n_channels is not None and n_channels < 1:
            raise ParameterError(f"--channels must be ≥ 1, got {n_channels}")
        return random_mixing(n_channels or n_src, n_src, rng)
    if n_channels is not None and A.shape[0] != n_channels:
        raise ParameterError(f"--matrix has {A.shape[0]} row(s) (microphones) but --channels is {n_channels}")
    return A


def _load_mono_sources(paths: Sequence[Path], sample_rate: int | None) -> tuple[list[np.ndarray], int]:
    first = audio.read_audio(paths[0], sample_rate=sample_rate)
    rate = first.sample_rate
    signals = []
    for path in paths:
        sig = first if path == paths[0] else audio.read_audio(path, sample_rate=rate)
        mono = sig.data.mean(axis=0)
        if not np.any(mono):
            raise ParameterError(f"source {path} is silent: a silent source cannot be mixed and recovered")
        signals.append(mono)
    return signals, rate


def spatial_spec(
    n_sources: int,
    *,
    channels: int | None,
    room: str | None = None,
    rt60: float | None = None,
    mic_spacing: float | None = None,
    array_centre: str | None = None,
    positions: str | None = None,
    distances: str | None = None,
    azimuths: str | None = None,
    pan: str | None = None,
    delays: str | None = None,
) -> RoomSpec | PanSpec | None:
    """Which mixture the ``mix`` options ask for: a room, pans, or None (instantaneous).

    Every option given must belong to the kind chosen; the message names the one that does not.
    """
    room_only = {
        "--rt60": rt60,
        "--mic-spacing": mic_spacing,
        "--array-centre": array_centre,
        "--positions": positions,
        "--distances": distances,
        "--azimuths": azimuths,
    }
    if room is not None and pan is not None:
        raise ParameterError("--room and --pan are two kinds of mixture; give one")
    if room is None:
        stray = [name for name, value in room_only.items() if value is not None]
        if stray:
            raise ParameterError(f"{stray[0]} describes a room mixture: it needs --room W,L,H")
    if pan is None and delays is not None:
        raise ParameterError("--delays needs --pan (delays of the panned stereo channels)")
    if pan is not None:
        if channels not in (None, 2):
            raise ParameterError(f"--pan writes stereo (2 channels), but --channels is {channels}")
        lags = parse_numbers(delays, "--delays", integer=True) if delays is not None else None
        return PanSpec(parse_numbers(pan, "--pan"), None if lags is None else tuple(int(d) for d in lags))
    if room is None:
        return None
    if rt60 is None:
        raise ParameterError("--room needs --rt60 S, the reverberation time in seconds")
    if positions is not None and (distances is not None or azimuths is not None):
        raise ParameterError("--positions places the sources already; drop --distances/--azimuths")
    return RoomSpec(
        room=parse_numbers(room, "--room"),
        rt60=rt60,
        n_mics=channels or n_sources,
        spacing=DEFAULT_MIC_SPACING if mic_spacing is None else mic_spacing,
        centre=parse_numbers(array_centre, "--array-centre") if array_centre is not None else None,
        positions=parse_points(positions, "--positions") if positions is not None else None,
        distances=parse_numbers(distances, "--distances") if distances is not None else None,
        azimuths_deg=parse_numbers(azimuths, "--azimuths") if azimuths is not None else None,
    )
