"""The only orchestrator: load → separate → post-process → write + manifest, and the mix builder.

Every separating command is :func:`separate_file` with a different method; the CLI only parses
options and renders what comes back. Batches run input by input: one bad input is recorded and
the others go on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from demix import audio
from demix.errors import DemixError, FetchError, ParameterError
from demix.fetch import Log, ProgressHook, fetch_audio, url_stem
from demix.inputs import Input, Named, run_folders
from demix.manifest import clean, input_record, matrix, new_manifest, output_record
from demix.mixing import mix, random_mixing
from demix.outputs import RunFolder, check_run_folder
from demix.post import Scale, excess_kurtosis, run_gain, scale_linear
from demix.types import Callback, Separation, Signal

Method = Callable[[np.ndarray, int, Callback | None], Separation]
"""A separation method bound to its parameters: ``(mixture, sample_rate, callback)``."""


@dataclass(frozen=True)
class WriteOptions:
    """How results are written: format, scale, reference microphone, overwrite policy."""

    fmt: str = "wav"
    subtype: str = audio.DEFAULT_SUBTYPE
    scale: Scale = "reference"
    ref_channel: int = 0
    force: bool = False
    sample_rate: int | None = None

    def validate(self) -> None:
        audio.validate_output_format(self.fmt, self.subtype)
        if self.scale == "unit" and self.subtype != "FLOAT":
            raise ParameterError(
                "--scale unit writes unit-variance sources above full scale; it needs --subtype FLOAT"
            )
        if self.ref_channel < 0:
            raise ParameterError(f"--ref-channel must be ≥ 0, got {self.ref_channel}")


@dataclass
class BatchResult:
    """Manifests of the inputs that worked and one message per input that did not."""

    manifests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, DemixError]] = field(default_factory=list)


def plan_folders(
    inputs: Sequence[Input],
    out: Path,
    options: WriteOptions,
    *,
    progress: ProgressHook | None = None,
    log: Log | None = None,
) -> list[Path]:
    """Run folders for ``inputs``, with every URL input fetched into the cache first.

    One input: ``out``, checked before anything is downloaded. Several: ``out/<stem>/``, where a
    URL's stem is its title and id, known only once fetched. In a batch, a URL that cannot be
    fetched is named from its address and fails, with its message, when the batch reaches it.
    """
    options.validate()
    if len(inputs) == 1:
        check_run_folder(out, force=options.force, inputs=_local(inputs))
    named: list[Named] = []
    for item in inputs:
        if isinstance(item, Path):
            named.append(item)
            continue
        try:
            named.append(fetch_audio(item, progress=progress, log=log).media)
        except FetchError:
            if len(inputs) == 1:
                raise
            named.append(_Stem(url_stem(item)))
    return run_folders(named, out)


class _Stem(NamedTuple):
    stem: str


def separate_batch(
    command: str,
    params: dict[str, Any],
    method: Method,
    inputs: Sequence[Input],
    folders: Sequence[Path],
    options: WriteOptions,
    *,
    progress: Callable[[Input], Callback] | None = None,
    on_done: Callable[[Input, dict[str, Any] | DemixError], None] | None = None,
) -> BatchResult:
    """Separate each input into its folder; every folder is checked before any work starts.

    ``progress(input)`` gives each input's iteration callback; ``on_done`` hears each outcome.
    """
    options.validate()
    for folder in folders:
        check_run_folder(folder, force=options.force, inputs=_local(inputs))
    result = BatchResult()
    for path, folder in zip(inputs, folders, strict=True):
        outcome: dict[str, Any] | DemixError
        try:
            callback = progress(path) if progress is not None else None
            outcome = separate_file(command, params, method, path, folder, options, callback=callback)
            result.manifests.append(outcome)
        except DemixError as exc:
            if len(inputs) == 1:
                raise
            outcome = exc
            result.failures.append((str(path), exc))
        if on_done is not None:
            on_done(path, outcome)
    return result


def separate_file(
    command: str,
    params: dict[str, Any],
    method: Method,
    path: Input,
    folder: Path,
    options: WriteOptions,
    *,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Run one input (a file, or a URL read through the cache); return the manifest written to ``folder``."""
    timings: dict[str, float] = {}
    tic = time.perf_counter()
    signal, record = _load(path, options.sample_rate)
    if not 0 <= options.ref_channel < signal.n_channels:
        raise ParameterError(
            f"--ref-channel {options.ref_channel} is out of range: {path} has {signal.n_channels} channel(s)"
        )
    timings["load_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        separation = method(signal.data, signal.sample_rate, callback)
    timings["separate_s"] = time.perf_counter() - tic

    manifest = new_manifest(command, params)
    manifest["inputs"] = [record]
    sources, model = _physical_sources(separation, options)
    gain = 1.0 if options.scale == "unit" else run_gain([sources])
    names = separation.names or tuple(f"source_{i + 1}" for i in range(len(sources)))
    # Multichannel sources (n_sources, n_channels, n_samples): kurtosis of their channel mean.
    kurtosis = excess_kurtosis(sources if sources.ndim == 2 else sources.mean(axis=1))

    tic = time.perf_counter()
    outputs = []
    with RunFolder(folder) as run:
        for name, source, kurt in zip(names, sources, kurtosis, strict=True):
            written = source * gain
            file = f"{name}.{options.fmt}"
            _stage_audio(run, file, written, signal.sample_rate, options)
            outputs.append(output_record(file, "source", written, kurtosis=round(kurt, 3)))
        timings["write_s"] = time.perf_counter() - tic
        manifest.update(
            outputs=outputs,
            gain=gain,
            model=model,
            convergence={
                "n_iter": separation.n_iter,
                "converged": separation.converged,
                "final_change": separation.final_change,
            },
            diagnostics=separation.diagnostics,
            warnings=[str(w.message) for w in caught],
            timings={k: round(v, 4) for k, v in timings.items()},
        )
        manifest = clean(manifest)
        run.commit(manifest)
    return manifest


def _load(item: Input, sample_rate: int | None) -> tuple[Signal, dict[str, Any]]:
    """Read a file, or fetch a URL (a cache hit once fetched) and read its WAV; and its record."""
    if isinstance(item, Path):
        signal = audio.read_audio(item, sample_rate=sample_rate)
        return signal, input_record(item, signal)
    fetched = fetch_audio(item)
    signal = audio.read_audio(fetched.path, sample_rate=sample_rate)
    return signal, {**input_record(fetched.path, signal), **fetched.media.record()}


def _local(inputs: Sequence[Input]) -> list[Path]:
    return [item for item in inputs if isinstance(item, Path)]


def _stage_audio(run: RunFolder, file: str, data: np.ndarray, rate: int, options: WriteOptions) -> None:
    run.stage(
        file,
        lambda tmp: audio.write_audio(tmp, data, rate, fmt=options.fmt, subtype=options.subtype),
    )


def _physical_sources(
    separation: Separation, options: WriteOptions
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Sources as they will be written (before the run gain) and the linear model in that scale."""
    if separation.mixing is None:
        return separation.sources, None
    scaled = scale_linear(separation, ref_channel=options.ref_channel, scale=options.scale)
    model = {
        "unmixing": matrix(scaled.unmixing),
        "mixing": matrix(scaled.mixing),
        "scale": options.scale,
        "ref_channel": options.ref_channel,
    }
    return scaled.sources, model


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
) -> dict[str, Any]:
    """Write ``mixture``, aligned ``references/`` and the truth, with ``mixture = A @ references``.

    Sources are resampled to one rate (``options.sample_rate`` or the first file's), downmixed to
    mono by averaging their channels, and trimmed to the shortest (or ``duration`` seconds). One
    gain scales mixture, references and noise together when the mixture would clip.
    """
    options.validate()
    if len(sources) < 2:
        raise ParameterError(f"demix mix needs at least 2 source files, got {len(sources)}")
    if snr_db is not None and not np.isfinite(snr_db):
        raise ParameterError(f"--snr must be a finite number of dB, got {snr_db}")
    check_run_folder(folder, force=options.force, inputs=sources)
    rng = np.random.default_rng(seed)
    n_src = len(sources)
    if A is None:
        if n_channels is not None and n_channels < 1:
            raise ParameterError(f"--channels must be ≥ 1, got {n_channels}")
        A = random_mixing(n_channels or n_src, n_src, rng)
    elif n_channels is not None and A.shape[0] != n_channels:
        raise ParameterError(f"--matrix has {A.shape[0]} row(s) (microphones) but --channels is {n_channels}")

    tic = time.perf_counter()
    signals, rate = _load_mono_sources(sources, options.sample_rate)
    length = min(s.shape[0] for s in signals)
    if duration is not None:
        wanted = round(duration * rate)
        if duration <= 0 or wanted > length:
            raise ParameterError(
                f"--duration {duration} must be > 0 and at most the shortest source ({length / rate:.3f} s)"
            )
        length = wanted
    S = np.stack([s[:length] for s in signals])
    load_s = time.perf_counter() - tic

    X, noise = mix(S, A, snr_db=snr_db, rng=rng)
    gain = run_gain([X, S] + ([noise] if noise is not None else []))
    files = [("mixture", "mixture", X)]
    files += [(f"references/source_{i + 1}", "reference", S[i]) for i in range(n_src)]
    if noise is not None:
        files.append(("references/noise", "noise", noise))

    manifest = new_manifest("mix", params)
    manifest["inputs"] = [
        input_record(path, Signal(s[None, :length], rate)) for path, s in zip(sources, signals, strict=True)
    ]
    tic = time.perf_counter()
    with RunFolder(folder) as run:
        outputs = []
        for stem, role, data in files:
            file = f"{stem}.{options.fmt}"
            _stage_audio(run, file, data * gain, rate, options)
            outputs.append(output_record(file, role, data * gain))
        manifest.update(
            outputs=outputs,
            gain=gain,
            truth={
                "mixing": matrix(A),
                "references": [f"references/source_{i + 1}.{options.fmt}" for i in range(n_src)],
                "sources": [str(p) for p in sources],
                "snr_db": snr_db,
                "noise": f"references/noise.{options.fmt}" if noise is not None else None,
                "seed": seed,
            },
            timings={"load_s": round(load_s, 4), "write_s": round(time.perf_counter() - tic, 4)},
        )
        manifest = clean(manifest)
        run.commit(manifest)
    return manifest


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
