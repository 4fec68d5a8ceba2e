"""Batches of runs: here, in worker processes or on a Dask cluster, and resumable.

A batch is a list of :class:`~demix.jobs.Job` (plain, picklable data). :func:`run_batch` checks
every run folder before any work, skips (``resume``) the jobs whose folder already holds the same
finished run, and runs the others

- one after another in this process (``jobs=1``: the default, with per-iteration progress);
- in ``jobs`` worker processes of the standard library's :class:`~concurrent.futures.ProcessPoolExecutor`
  (forkserver, or spawn where there is no forkserver), each with ``cores // jobs`` BLAS threads so
  that N jobs do not oversubscribe the cores;
- on a Dask distributed cluster (``scheduler="tcp://host:port"``, the ``demix[cluster]`` extra),
  whose workers read the inputs and write the run folders at the same paths.

Every manifest written through a batch carries a ``batch`` block: where the run ran (``executor``,
``host``, ``pid``), with how many parallel jobs and BLAS threads, and the write options that are
not in ``params`` (section, layout, quality, file names), which resuming compares.

Resuming. A run folder is finished once its ``demix.json`` is written (it is written last). A job
is skipped when its folder's manifest has this demix version, command and ``params``, the same
write options, the same input (SHA-256 of the file read) and every listed output present. A run
killed part-way leaves no manifest: its folder holds nothing or only a staging folder, which the
next run sweeps, and the run-folder lock of a dead process (an ``flock``) is free again.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from demix import __version__, audio
from demix.errors import DemixError, FetchError, OutputError, ParameterError
from demix.inputs import STDIN, Input, input_stem
from demix.jobs import Job, WriteOptions
from demix.manifest import clean
from demix.outputs import MANIFEST, check_run_folder, claim, release, write_manifest
from demix.pipeline import BatchResult, manifest_params, run_job
from demix.types import Callback

__all__ = ["BatchOptions", "blas_threads", "finished_run", "run_batch"]

Executor = Literal["serial", "processes", "dask"]
Outcome = dict[str, Any] | DemixError
#: Modules the forkserver imports once, so that every worker forked from it starts warm.
PRELOAD = ["demix.batch"]
#: Set in the forkserver's environment only: importing this module there also runs :func:`warm_up`.
_WARM_UP = "DEMIX_FORKSERVER_WARM_UP"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs: ``jobs`` local worker processes, or a Dask ``scheduler`` address;
    ``resume`` skips the jobs whose run folder holds the same finished run."""

    jobs: int = 1
    scheduler: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ParameterError(f"-j/--jobs must be ≥ 1, got {self.jobs}")


@dataclass(frozen=True)
class _Context:
    """What a worker needs besides its job, and records in the manifest's ``batch`` block."""

    executor: Executor
    jobs: int
    blas_threads: int | None = None  # None: as the worker found them (recorded from threadpoolctl)
    scheduler: str | None = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def blas_threads(jobs: int, cores: int | None = None) -> int:
    """BLAS threads per worker for ``jobs`` parallel jobs: ``cores // jobs``, at least 1.

    A thread count set in the environment (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
    ``MKL_NUM_THREADS``) is an upper bound.
    """
    threads = max(1, (cores or available_cores()) // jobs)
    for name in _THREAD_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            threads = min(threads, int(value))
    return threads


def options_record(options: WriteOptions) -> dict[str, Any]:
    """The write options a finished run must share with a job to be skipped (all but ``force``)."""
    record = dataclasses.asdict(options)
    record.pop("force")
    return clean(record)


def finished_run(job: Job) -> dict[str, Any] | None:
    """The manifest in ``job``'s folder when it is this very run, finished; otherwise None.

    Same demix version, command, ``params`` and write options, the same input bytes (SHA-256),
    and every output it lists present. Standard input is never resumed.
    """
    if job.source == STDIN:
        return None
    try:
        manifest = json.loads((job.folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    inputs, outputs = manifest.get("inputs"), manifest.get("outputs")
    if not (isinstance(inputs, list) and isinstance(outputs, list)):
        return None
    if (
        manifest.get("demix_version") != __version__
        or manifest.get("command") != job.command
        or manifest.get("params") != manifest_params(job)
        or len(inputs) != 1
        or not isinstance(inputs[0], dict)
        or not outputs
        or not _written_alike(manifest, job)
    ):
        return None
    for output in outputs:
        name = output.get("file") if isinstance(output, dict) else None
        if not isinstance(name, str) or not (job.folder / name).is_file():
            return None
    if inputs[0].get("sha256") != _input_hash(job.source):
        return None
    return manifest


def _written_alike(manifest: dict[str, Any], job: Job) -> bool:
    """Whether the run was written with ``job``'s options (those ``params`` does not hold).

    The ``batch`` block records them all. A manifest without it (written by
    :func:`~demix.pipeline.run_job` alone, or stopped between its commit and the block) is taken
    only for a job with no section, layout or quality asked, whose files the template names alike.
    """
    options = job.options
    batch = manifest.get("batch")
    if isinstance(batch, dict) and "options" in batch:
        return bool(batch["options"] == options_record(options))
    if options.start or options.duration is not None or options.images is not None or options.quality:
        return False
    stem = input_stem(job.source)
    sources = [o for o in manifest["outputs"] if isinstance(o, dict) and o.get("role") == "source"]
    for index, output in enumerate(sources, start=1):
        name = output.get("name")
        if not isinstance(name, str) or output.get("file") != options.file_name(stem, name, index):
            return False
    return bool(sources) and "start_s" not in manifest["inputs"][0]


def _input_hash(source: Path | str) -> str | None:
    try:
        if isinstance(source, Path):
            return audio.sha256(source)
        from demix.fetch import fetch_audio

        return audio.sha256(fetch_audio(source).path)  # from the cache: fetched when planned
    except (OSError, FetchError):
        return None


def run_batch(
    jobs: Sequence[Job],
    options: BatchOptions | None = None,
    *,
    progress: Callable[[Input], Callback] | None = None,
    on_done: Callable[[Input, Outcome], None] | None = None,
    on_skip: Callable[[Input, dict[str, Any]], None] | None = None,
) -> BatchResult:
    """Run ``jobs`` as ``options`` say; every run folder is checked before any work starts.

    ``progress(input)`` gives an input's iteration callback (only when runs happen in this
    process); ``on_done`` hears each outcome as it happens, ``on_skip`` each resumed input.
    With one job its error propagates; in a batch a failing input is recorded and the others go
    on. The result lists manifests and failures in the jobs' order.
    """
    options = options or BatchOptions()
    result = BatchResult()
    todo: list[tuple[int, Job]] = []
    for index, job in enumerate(jobs):
        job.options.validate()
        done = finished_run(job) if options.resume else None
        if done is None:
            todo.append((index, job))
            continue
        result.skipped.append(str(job.source))
        if on_skip is not None:
            on_skip(job.source, done)
    _check_folders([job for _, job in todo], all_jobs=jobs, resume=options.resume)

    single = len(jobs) == 1
    outcomes: Iterator[tuple[int, Outcome]]
    if options.scheduler is not None and todo:
        outcomes = _on_cluster(todo, options.scheduler)
    elif options.jobs > 1 and len(todo) > 1:
        outcomes = _in_processes(todo, min(options.jobs, len(todo)))
    else:
        outcomes = _here(todo, progress)
    manifests: dict[int, dict[str, Any]] = {}
    failures: dict[int, tuple[str, DemixError]] = {}
    try:
        for index, outcome in outcomes:
            source = jobs[index].source
            if isinstance(outcome, DemixError):
                if single:
                    raise outcome
                failures[index] = (str(source), outcome)
            else:
                manifests[index] = outcome
            if on_done is not None:
                on_done(source, outcome)
    finally:
        outcomes.close()  # type: ignore[attr-defined]  # stops the workers when interrupted
    result.manifests = [manifests[i] for i in sorted(manifests)]
    result.failures = [failures[i] for i in sorted(failures)]
    return result


def _check_folders(todo: Sequence[Job], *, all_jobs: Sequence[Job], resume: bool) -> None:
    """Check (and lock) every folder to be written; say ``--resume`` where it would skip one."""
    local = [job.source for job in all_jobs if isinstance(job.source, Path)]
    for job in todo:
        if not (resume or job.options.force) and (job.folder / MANIFEST).is_file() and finished_run(job):
            raise OutputError(
                f"output folder {job.folder} already holds this run (same command, parameters and "
                "input); --resume skips it, --force redoes it"
            )
        check_run_folder(job.folder, force=job.options.force, inputs=local)


# ---------------------------------------------------------------------------------------------
# Executors: each yields (index, outcome) as runs finish


def _here(
    todo: Sequence[tuple[int, Job]], progress: Callable[[Input], Callback] | None
) -> Iterator[tuple[int, Outcome]]:
    context = _Context("serial", 1)
    for index, job in todo:
        callback = progress(job.source) if progress is not None else None
        try:
            yield index, _execute(job, context, callback)
        except DemixError as exc:
            yield index, exc
        finally:
            release(job.folder)


def _in_processes(todo: Sequence[tuple[int, Job]], workers: int) -> Iterator[tuple[int, Outcome]]:
    """Run the jobs in ``workers`` processes; a worker takes the folder's lock from this one."""
    threads = blas_threads(workers)
    context = _Context("processes", workers, blas_threads=threads)
    for _, job in todo:
        release(job.folder)  # checked here; the worker locks (and checks) it again for itself
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(threads, os.getpid()),
    )
    os.environ[_WARM_UP] = "1"  # read by the forkserver, which starts with the first worker
    try:
        futures = {pool.submit(work, job, context): index for index, job in todo}
        os.environ.pop(_WARM_UP, None)
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException:
        _stop(pool)
        raise
    finally:
        os.environ.pop(_WARM_UP, None)
        pool.shutdown(wait=True, cancel_futures=True)


def _on_cluster(todo: Sequence[tuple[int, Job]], address: str) -> Iterator[tuple[int, Outcome]]:
    """Submit the jobs to the Dask scheduler at ``address``; its workers share our paths."""
    try:
        from distributed import Client
        from distributed import as_completed as completed
    except ImportError:
        raise ParameterError(
            "--scheduler needs Dask's distributed scheduler: pip install 'demix[cluster]'"
        ) from None
    for _, job in todo:
        release(job.folder)
    try:
        _probe(address)  # Dask retries a refused connection until its timeout; say it at once
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ParameterError(f"--scheduler {address}: cannot reach the Dask scheduler ({reason})") from None
    with client:
        context = _Context("dask", max(1, sum(client.nthreads().values())), scheduler=address)
        batch = uuid.uuid4().hex[:8]
        futures = {
            client.submit(work, job, context, key=f"demix-{batch}-{index}", pure=False): index
            for index, job in todo
        }
        try:
            for future in completed(futures, loop=client.loop):
                yield futures[future], future.result()
        except BaseException:
            client.cancel(list(futures))  # runs already started finish on their workers
            raise


def _probe(address: str) -> None:
    """Connect once to a ``tcp://host:port`` address (others are left to Dask)."""
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()


def _mp_context() -> multiprocessing.context.BaseContext:
    """Forkserver where there is one (workers forked from a warm, thread-free server), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now: each removes its half-written run on SIGTERM and exits."""
    # ProcessPoolExecutor.terminate_workers() is Python 3.14's; before it, the process table
    # (taken first: shutdown() forgets it).
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if hasattr(process, "terminate"):
            process.terminate()


# ---------------------------------------------------------------------------------------------
# Worker side

_IN_POOL = False
_IN_JOB = False
_LIMITS: Any = None
_BLAS: int | None = None


def _init_worker(threads: int, parent: int) -> None:
    """A local worker: ``threads`` BLAS threads; Ctrl-C is the main process's to handle (it stops
    the workers), SIGTERM removes the half-written run and exits, and so does the death of the
    ``parent`` process (killed with SIGKILL, it could not stop its workers)."""
    global _IN_POOL, _LIMITS
    from threadpoolctl import threadpool_limits

    _IN_POOL = True
    _LIMITS = threadpool_limits(limits=threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    threading.Thread(target=_watch, args=(parent,), name="demix-parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    """Wait for ``parent`` to end (a pidfd where Linux has them, else polling), then SIGTERM self."""
    try:
        handle: int | None = os.pidfd_open(parent)
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        select.select([handle], [], [])  # readable once the parent has ended
        os.close(handle)
    else:
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _terminated(signum: int, frame: object) -> None:
    if _IN_JOB:
        raise KeyboardInterrupt(signal.Signals(signum).name)  # unwinds the run folder's clean-up
    os._exit(128 + signum)


def work(job: Job, context: _Context) -> Outcome:
    """Run one job in a worker (a local process or a Dask worker): lock and check its folder,
    run it, record the ``batch`` block. A :class:`DemixError` is returned, not raised."""
    global _IN_JOB
    _IN_JOB = True
    try:
        local = [job.source] if isinstance(job.source, Path) else []
        check_run_folder(job.folder, force=job.options.force, inputs=local)
        return _execute(job, context, None)
    except DemixError as exc:
        return exc
    except KeyboardInterrupt:
        if _IN_POOL:  # SIGTERM from the main process: the run folder is clean again
            os._exit(128 + signal.SIGTERM)
        raise
    finally:
        _IN_JOB = False
        release(job.folder)


def _execute(job: Job, context: _Context, callback: Callback | None) -> dict[str, Any]:
    """Run the job, then add the ``batch`` block to the manifest it committed."""
    manifest = run_job(job, callback=callback)
    manifest["batch"] = clean(
        {
            "executor": context.executor,
            "jobs": context.jobs,
            "blas_threads": context.blas_threads if context.blas_threads is not None else _blas_in_use(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **({"scheduler": context.scheduler} if context.scheduler else {}),
            "options": options_record(job.options),
        }
    )
    claim(job.folder)
    try:
        write_manifest(job.folder, manifest)
    finally:
        release(job.folder)
    return manifest


def _blas_in_use() -> int | None:
    """BLAS threads of this process as threadpoolctl finds them (once per process)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import threadpool_info

        counts = [int(info["num_threads"]) for info in threadpool_info() if info.get("user_api") == "blas"]
        _BLAS = max(counts) if counts else None
    return _BLAS


def warm_up() -> None:
    """Run the STFT of the time-frequency methods and the model-fit check once on noise: librosa
    is imported and the code it loads on first use is loaded (seconds, the first time in a
    process), so processes forked afterwards start warm."""
    import numpy as np

    from demix.model_fit import envelope_correlation
    from demix.spectral import stft

    noise = np.random.default_rng(0).standard_normal((2, 8000))
    stft(noise, 512, 128)
    envelope_correlation(noise, 16000)


if os.environ.get(_WARM_UP) == "1" and multiprocessing.parent_process() is None:
    warm_up()
