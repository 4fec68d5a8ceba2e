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
from demix.jobs import WriteOptions, stage_audio
from demix.manifest import clean, input_record, matrix, new_manifest, output_record
from demix.outputs import RunFolder, check_run_folder
from demix.post import excess_kurtosis, run_gain, scale_linear
from demix.types import Callback, Separation, Signal

Method = Callable[[np.ndarray, int, Callback | None], Separation]
"""A separation method bound to its parameters: ``(mixture, sample_rate, callback)``."""


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
            stage_audio(run, file, written, signal.sample_rate, options)
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
