"""The only orchestrator: load → separate → finish → write + manifest, for every method.

A separating command builds one :class:`~demix.jobs.Job` per input (method name, parameters,
input, run folder, write options: plain data) and hands them to :func:`separate_batch`; the
method comes from the registry, post-processing dispatches on the kind of model it returns,
and names and per-source facts follow the sources into their final order. One bad input in a
batch is recorded and the others go on; :mod:`demix.batch` runs a batch in this process, in
worker processes or on a Dask cluster, and skips finished runs when resuming.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from demix import audio
from demix.checks import audible
from demix.errors import DemixError, FetchError, ParameterError
from demix.fetch import Log, ProgressHook, fetch_audio, url_stem
from demix.history import History
from demix.inputs import DEFAULT_FOLDER_TEMPLATE, STDIN, Input, Named, input_stem, run_folders, stdin_file
from demix.jobs import Job, WriteOptions, stage_audio
from demix.manifest import clean, input_record, new_manifest, output_record
from demix.methods.nmf_separate import LearnBasesParams
from demix.model_fit import check_model_fit
from demix.outputs import MANIFEST, RunFolder, check_run_folder
from demix.post import Finished, excess_kurtosis, finish, run_gain
from demix.registry import MethodSpec, method_spec
from demix.types import Callback, Separation, Signal


@dataclass
class BatchResult:
    """Manifests of the inputs that worked and one message per input that did not."""

    manifests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, DemixError]] = field(default_factory=list)
    #: Inputs not run because their folder already held the same finished run (``--resume``).
    skipped: list[str] = field(default_factory=list)


def plan_folders(
    inputs: Sequence[Input],
    out: Path,
    options: WriteOptions,
    *,
    progress: ProgressHook | None = None,
    log: Log | None = None,
    folder_template: str = DEFAULT_FOLDER_TEMPLATE,
    resume: bool = False,
) -> list[Path]:
    """Run folders for ``inputs``, with every URL input fetched into the cache first.

    One input: ``out``, checked before anything is downloaded (a finished run there is left to
    :func:`demix.batch.run_batch`, which skips it with ``resume`` or says that it would). Several:
    ``out/<stem>/``, where a URL's stem is its title and id, known only once fetched. In a batch,
    a URL that cannot be fetched is named from its address and fails, with its message, when the
    batch reaches it.
    """
    options.validate()
    if len(inputs) == 1 and not ((resume or isinstance(inputs[0], Path)) and (out / MANIFEST).is_file()):
        check_run_folder(out, force=options.force, inputs=_local(inputs))
    named: list[Named] = []
    for item in inputs:
        if isinstance(item, Path):
            named.append(item)
            continue
        if item == STDIN:
            named.append(_Stem("stdin"))
            continue
        try:
            named.append(fetch_audio(item, progress=progress, log=log).media)
        except FetchError:
            if len(inputs) == 1:
                raise
            named.append(_Stem(url_stem(item)))
    return run_folders(named, out, folder_template)


class _Stem(NamedTuple):
    stem: str


def separate_batch(
    jobs: Sequence[Job],
    *,
    progress: Callable[[Input], Callback] | None = None,
    on_done: Callable[[Input, dict[str, Any] | DemixError], None] | None = None,
) -> BatchResult:
    """Run every job in this process, one after another; every run folder is checked first.

    ``progress(input)`` gives each input's iteration callback; ``on_done`` hears each outcome.
    With one job its error propagates; in a batch a failing input is recorded and the others go
    on. :func:`demix.batch.run_batch` adds worker processes, a Dask cluster and resuming.
    """
    from demix.batch import run_batch

    return run_batch(jobs, progress=progress, on_done=on_done)


def manifest_params(job: Job) -> dict[str, Any]:
    """The ``params`` a manifest of ``job`` records: the method, its parameters, how it is written."""
    record = {
        "method": method_spec(job.method).name,
        **params_record(job.params),
        **_write_record(job.options),
    }
    return clean(record)


def run_job(job: Job, *, callback: Callback | None = None, stream: bool | None = None) -> dict[str, Any]:
    """Load → separate → finish → write + manifest for one job; return the manifest written.

    A method that streams (``MethodSpec.stream``) on an input too long to hold in memory several
    times is fitted and written block by block instead (:mod:`demix.streaming`; the manifest is
    the same, with ``streaming`` added). ``stream`` True or False forces either path.
    """
    from demix import streaming

    spec = method_spec(job.method)
    plan = streaming.choose_plan(spec, job, stream)
    if plan is not None:
        return streaming.run_streamed(job, spec, plan, callback=callback)
    options = job.options
    timings: dict[str, float] = {}
    tic = time.perf_counter()
    signal, record = load_input(
        job.source, options.sample_rate, start=options.start, duration=options.duration
    )
    images = _check_fit_to_run(spec, signal, job)
    timings["load_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    history = History(callback)
    stem = input_stem(job.source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        separation = spec.separate(signal.data, signal.sample_rate, job.params, history)
        finished = finish(separation, ref_channel=options.ref_channel, scale=options.scale, images=images)
        fit = check_model_fit(separation, signal.sample_rate) if spec.model == "instantaneous" else None
        timings["separate_s"] = time.perf_counter() - tic
        order = [int(i) for i in finished.order]
        sources = finished.sources
        gain = 1.0 if options.scale == "unit" else run_gain([sources])
        names = (
            tuple(separation.names[i] for i in order)
            if separation.names is not None
            else tuple(f"source_{i + 1}" for i in range(len(sources)))
        )
        files = options.file_names(stem, names)
        for file, source in zip(files, sources, strict=True):
            audible(file, source, gain, options.subtype)  # non-finite: error; silent as written: warning
    facts = [separation.facts[i] for i in order] if separation.facts else [{} for _ in order]
    # Images (n_sources, n_channels, n_samples): kurtosis of their channel mean.
    kurtosis = excess_kurtosis(sources if finished.layout == "mono" else sources.mean(axis=1))

    manifest = start_manifest(job, spec, record)
    tic = time.perf_counter()
    outputs = []
    with RunFolder(job.folder) as run:
        for file, name, source, fact, kurt, index in zip(
            files, names, sources, facts, kurtosis, order, strict=True
        ):
            written = source * gain
            stage_audio(run, file, written, signal.sample_rate, options)
            outputs.append(
                output_record(
                    file, "source", written, name=name, kurtosis=round(kurt, 3), method_index=index, **fact
                )
            )
        if options.plot:
            from demix.plots import stage_figures

            outputs += stage_figures(
                run.stage, signal.data, [s * gain for s in sources], names, signal.sample_rate,
                history.record(), title=spec.name,
            )  # fmt: skip
        timings["write_s"] = time.perf_counter() - tic
        manifest.update(
            outputs=outputs, **result_record(separation, finished, gain, fit, caught, timings, history)
        )
        manifest = clean(manifest)
        run.commit(manifest)
    return manifest


def start_manifest(job: Job, spec: MethodSpec, record: dict[str, Any]) -> dict[str, Any]:
    """A run's manifest before its results: command, method and every parameter, folder, input."""
    manifest = new_manifest(
        job.command, {"method": spec.name, **params_record(job.params), **_write_record(job.options)}
    )
    manifest["folder"] = str(job.folder)
    manifest["inputs"] = [record]
    return manifest


def result_record(
    separation: Separation,
    finished: Finished,
    gain: float,
    fit: dict[str, Any] | None,
    caught: Sequence[warnings.WarningMessage],
    timings: dict[str, float],
    history: History | None,
) -> dict[str, Any]:
    """The manifest's account of a separation, the same for the in-memory and streamed paths:
    layout, gain, model, convergence (with its history), diagnostics, warnings and timings."""
    convergence: dict[str, Any] = {
        "n_iter": separation.n_iter,
        "converged": separation.converged,
        "final_change": separation.final_change,
    }
    if history is not None:
        convergence["history"] = history.record()
    return {
        "layout": finished.layout,
        "gain": gain,
        "model": finished.model,
        "convergence": convergence,
        "diagnostics": {**separation.diagnostics, **({"model_fit": fit} if fit is not None else {})},
        "warnings": [str(w.message) for w in caught],
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def _check_fit_to_run(spec: MethodSpec, signal: Signal, job: Job) -> bool:
    """Refuse, before separating, what this input cannot give; return whether to write images.

    Linear methods need two channels; ``--ref-channel`` must exist; the output format must hold
    the sources' channels and rate. Images (each source at every microphone) are written for
    linear methods on stereo input unless asked otherwise, and always by masking methods.
    """
    options = job.options
    channels = signal.n_channels
    if channels < spec.min_channels:
        raise ParameterError(
            f"{job.source}: demix {spec.command} needs at least {spec.min_channels} channels (stereo or "
            f"more) and this input has {channels}; for a mono recording try `demix nmf`"
        )
    if not 0 <= options.ref_channel < channels:
        raise ParameterError(
            f"--ref-channel {options.ref_channel} is out of range: {job.source} has {channels} channel(s)"
        )
    if spec.model == "instantaneous":
        images = (
            options.images if options.images is not None else channels == 2 and options.scale == "reference"
        )
    else:
        images = channels > 1
    audio.check_format_limits(options.fmt, channels if images else 1, signal.sample_rate)
    return images


def params_record(params: Any) -> dict[str, Any]:
    """A parameters dataclass as the manifest's ``params`` (every field, defaults included)."""
    return dataclasses.asdict(params)


def _write_record(options: WriteOptions) -> dict[str, Any]:
    return {
        "ref_channel": options.ref_channel,
        "scale": options.scale,
        "format": options.fmt,
        "subtype": options.subtype,
        "sr": options.sample_rate,
    }


def load_input(
    item: Input, sample_rate: int | None, *, start: float = 0.0, duration: float | None = None
) -> tuple[Signal, dict[str, Any]]:
    """Read a file (or its section), stdin (``-``), or a fetched URL's WAV; and its record.

    The record names the section read (``start_s``, ``duration_s``, ``start_frame`` at the file's
    rate) whenever one was asked for.
    """
    if item == STDIN:
        path = stdin_file()
        signal = audio.read_audio(path, sample_rate=sample_rate, start=start, duration=duration)
        record = {**input_record(path, signal), "path": STDIN}
    elif isinstance(item, Path):
        signal = audio.read_audio(item, sample_rate=sample_rate, start=start, duration=duration)
        record = input_record(item, signal)
    else:
        fetched = fetch_audio(item)
        signal = audio.read_audio(fetched.path, sample_rate=sample_rate, start=start, duration=duration)
        record = {**input_record(fetched.path, signal), **fetched.media.record()}
    if start or duration is not None:
        record.update(start_s=start, duration_s=signal.n_samples / signal.sample_rate)
    return signal, record


def learn_bases_file(
    sources: Sequence[Input], path: Path, params: LearnBasesParams, *, sample_rate: int | None, force: bool
) -> dict[str, Any]:
    """Learn NMF bases from clean examples of one source (concatenated in time) into ``path``.

    The examples are loaded as every input is (files or URLs, resampled to ``sample_rate`` or the
    first one's rate, downmixed to mono); the file records the settings that must match at use.
    """
    from demix.bases import save_bases
    from demix.methods.nmf_separate import learn

    local = [item.resolve() for item in sources if isinstance(item, Path)]
    if path.resolve() in local:
        raise ParameterError(f"-o/--out {path} is one of the examples; choose another file name")
    if path.exists() and not force:
        raise ParameterError(f"-o/--out {path} already exists; use --force to replace it")
    first, first_record = load_input(sources[0], sample_rate)
    loaded = [(first, first_record)] + [load_input(item, first.sample_rate) for item in sources[1:]]
    X = np.concatenate([signal.data.mean(axis=0) for signal, _ in loaded])[None, :]
    W = learn(X, params)
    meta = {
        **params_record(params),
        "sample_rate": first.sample_rate,
        "n_components": params.components,
        "sources": [{"path": record["path"], "sha256": record["sha256"]} for _, record in loaded],
    }
    save_bases(path, W, meta, force=force)
    return meta


def _local(inputs: Sequence[Input]) -> list[Path]:
    return [item for item in inputs if isinstance(item, Path)]
