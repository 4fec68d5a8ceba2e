"""Long recordings in bounded memory: linear methods fitted on statistics, applied block by block.

Every method streams (``MethodSpec.stream``) in one of four ways: the linear methods here;
``nmf`` with bases learnt on excerpts (:mod:`demix.streaming_nmf`); ``repet`` with its search
over the whole spectrogram on disk (:mod:`demix.streaming_repet`); ``iva``, ``duet`` and
``nmf --bases`` in overlapping segments (:mod:`demix.segmented`). This module
also holds what they share: reading a recording block by block, deciding to stream, staging.

The in-memory path holds the whole signal in float64 several times over (about five copies: the
input, the whitened data, the sources, the images, the written copy), which is 13 GB for an hour
of stereo at 44.1 kHz. For the instantaneous methods (``ica`` with FastICA, Picard or JADE,
``decorr``) nothing of the signal's length is ever needed at once:

1. **Statistics pass.** The input is read from disk in blocks of :attr:`Plan.block_samples`
   (soundfile seeks to ``--start`` and stops at ``--duration``); per-channel sums, the channel
   covariance and, for ``decorr``, the symmetrised lagged products at every lag accumulate in
   float64 (the last ``max(lags)`` samples carry over to the next block, so no pair of samples is
   lost at a block edge). The warm-start subsample of FastICA and Picard
   (:func:`demix.methods.fastica.warm_indices`: 65 536 samples, one drawn at random in each of
   equal strides; the indices depend only on the length and the seed) is gathered in the same pass.
2. **Fit.** The whitening comes from the mean and covariance with the rank policy of
   :func:`~demix.methods.whitening.whiten` (for Picard and JADE, ``-n`` as a count, a fraction or
   ``auto``, as :func:`~demix.methods.n_sources.whiten_sources`). Nothing is approximated:

   * SOBI, AMUSE and LSQ see the mixture only through its lagged covariances, so they are computed
     from the accumulated ones, exactly.
   * JADE (Cardoso & Souloumiac 1993) sees the whitened data only through its fourth-order
     cumulant matrices, means over samples: one more pass accumulates them over the whitened
     blocks (:func:`demix.methods.jade.cumulant_matrices`), and the joint diagonalisation is the
     in-memory one (:func:`demix.methods.jade.fit`). The unmixing agrees to ~1e-13 (float64 sums
     in another order).
   * FastICA iterates on the subsample and then makes *full-data passes over blocks read from
     disk* until its stopping rule holds on the full data: the same fixed point as in memory (the
     same subsample, the same start, the same summation order; only the float32 whitened blocks
     are recomputed every pass).
   * Picard (Ablin, Cardoso & Gramfort 2018) does the same: L-BFGS on the subsample, then on
     full-data passes, one per likelihood evaluation (an accepted line-search trial already
     carries the next gradient, so an iteration is usually one pass), until the gradient norm is
     below ``tol`` on the whole recording (:func:`demix.methods.picard.fit`). Full passes rather
     than a fit on a larger subsample, because they are few: the subsample leaves the full data
     only to polish, as in memory. Measured with the CLI on a 10-minute synthetic stereo
     recording at 8 kHz (test_long's generator, 4.8 M samples, 2 cores shared): Picard-O makes 2
     full-data iterations (3 passes), unconstrained Picard 7 on the subsample and 4 on the full
     data (5 passes); a pass takes ~0.5 s, so the fit takes 2.0 / 3.3 s streamed against 1.6 /
     1.4 s in memory, the whole run 5.8 / 6.9 s against 4.3 / 6.5 s, at 120 MB peak RSS against
     635 MB. The whitened blocks are float32 (float64 in memory), which moves the unmixing by
     ~1e-10 relative.

   So nothing is lost: the Amari index of both paths is the same (10-minute recording: JADE
   3.3e-4, Picard-O 2.4e-4 and unconstrained Picard 1.6e-4, on either path, to 1e-9). ``--restarts``
   above 1 is refused for Picard on this path: choosing among restarts needs each one's negentropy
   over the whole signal, which is not streamed yet.
3. **Peak pass.** The unmixing is applied block by block to find every source's peak, RMS and
   kurtosis, so the run gain is decided before a sample is written: one gain per run, never a clip.
4. **Write pass.** The sources (or their images) are written block by block into the run
   folder's staged files, all files at once.

The model-fit check runs on the same excerpt (six 10-second blocks spread over the recording) as
in memory, read from disk. Memory is the blocks plus the model-fit excerpt, whatever the length.

``run_job`` takes this path when the method streams (``MethodSpec.stream``) and the float64
signal times the method's in-memory copies (``MethodSpec.copies``) would exceed the memory bound (default
:data:`DEFAULT_MAX_MEMORY_MB`): below that, memory is not the problem and the in-memory path
(one read instead of three to five passes) is faster.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from demix import audio
from demix.errors import AudioError, DemixError, ParameterError
from demix.history import History
from demix.inputs import STDIN, Input, input_stem, stdin_file
from demix.jobs import DEFAULT_MAX_MEMORY_MB, Job, WriteOptions
from demix.manifest import clean
from demix.methods import fastica, jade, picard, sobi
from demix.methods.lagged import check_lags, lagged_products
from demix.methods.n_sources import SourcesSpec, sources_whitening
from demix.methods.whitening import PASS_VALUES, Whitening, whitening_from_statistics
from demix.model_fit import _BLOCK_S, _MAX_BLOCKS, check_model_fit
from demix.outputs import RunFolder
from demix.post import finish, run_gain
from demix.registry import MethodSpec
from demix.types import Callback, Instantaneous, Separation, Signal

__all__ = [
    "DEFAULT_MAX_MEMORY_MB",
    "Plan",
    "Recording",
    "Statistics",
    "choose_plan",
    "open_recording",
    "plan_stream",
    "run_streamed",
    "statistics",
]

#: Largest and smallest block (samples per channel) of a pass: 2^18 is 6 s at 44.1 kHz, large
#: enough that a pass is bound by reading, small enough that 8 channels of images stay ~100 MB.
MAX_BLOCK, MIN_BLOCK = 1 << 18, 1 << 12


@dataclass(frozen=True)
class Plan:
    """How a run streams: samples per block and the memory bound those blocks were sized for."""

    block_samples: int
    memory_bound_mb: float

    def record(self, passes: int) -> dict[str, Any]:
        return {
            "block_samples": self.block_samples,
            "memory_bound_mb": self.memory_bound_mb,
            "passes": passes,
        }


def block_samples(channels: int, out_values: int, max_memory_mb: float) -> int:
    """Samples per block so that a block's float64 working arrays (about four copies of the input
    block and two of the written values) take at most a quarter of ``max_memory_mb``; a power of two
    that is a multiple of FastICA's inner block (so sums run in the in-memory order)."""
    per_sample = 8 * (4 * channels + 2 * out_values)
    fit = int(max_memory_mb * 2**20 / 4 / per_sample)
    size = 1 << max(fit, 1).bit_length() - 1
    return int(min(MAX_BLOCK, max(MIN_BLOCK, size)))


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Recording:
    """A section of an audio file soundfile reads, read block by block (never whole).

    ``first`` is the section's first frame in the file, ``frames`` its length.
    """

    path: Path
    first: int
    frames: int
    channels: int
    sample_rate: int

    def blocks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Consecutive float64 blocks ``(channels, k)``, ``k <= size``, of frames ``start … stop``.

        Each block is a view of one reused buffer: use it before asking for the next.
        """
        stop = self.frames if stop is None else stop
        buffer = np.empty((min(size, max(stop - start, 1)), self.channels))
        with sf.SoundFile(self.path) as handle:
            handle.seek(self.first + start)
            position = start
            while position < stop:
                k = min(size, stop - position)
                data = handle.read(k, dtype="float64", always_2d=True, out=buffer[:k])
                if data.shape[0] < k:
                    raise AudioError(
                        f"{self.path}: the file ends {stop - position - data.shape[0]} frames early"
                    )
                yield data.T
                position += k

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames ``start … start + count`` as a contiguous ``(channels, count)`` array."""
        return np.concatenate([b.copy() for b in self.blocks(max(count, 1), start, start + count)], axis=1)


@contextlib.contextmanager
def open_recording(
    item: Input, sample_rate: int | None, *, start: float = 0.0, duration: float | None = None
) -> Iterator[tuple[Recording, dict[str, Any]]]:
    """The input (file, ``-``, fetched URL) as a :class:`Recording`, and its manifest record.

    Files soundfile cannot read are first decoded by ffmpeg into a float32 WAV in a private
    temporary folder (removed afterwards), cut to the section; inputs to resample (``--sr``) are
    resampled there by soxr block by block, exactly as in memory.
    The record has the keys :func:`demix.manifest.input_record` gives in memory.
    """
    path, extra = _local_path(item)
    with tempfile.TemporaryDirectory(prefix="demix-stream-") as work:
        try:
            info = sf.info(str(path))
            readable = info.frames > 0
        except (sf.LibsndfileError, RuntimeError, TypeError):
            readable = False
        if readable:
            rate = int(info.samplerate)
            first, count = audio._section(path, rate, int(info.frames), start, duration)
            frames = int(info.frames) - first if count < 0 else count
            recording = Recording(path, first, frames, int(info.channels), rate)
        else:
            recording = _decode(path, Path(work) / "decoded.wav", start, duration)
        if sample_rate is not None and sample_rate != recording.sample_rate:
            recording = _resample(recording, Path(work) / "resampled.wav", sample_rate)
        if recording.frames < 1:
            raise AudioError(f"{path}: the file holds no audio samples")
        record = {
            "path": STDIN if item == STDIN else str(path),
            "sha256": audio.sha256(path),
            "sample_rate": recording.sample_rate,
            "channels": recording.channels,
            "frames": recording.frames,
            **extra,
        }
        if start or duration is not None:
            record.update(start_s=start, duration_s=recording.frames / recording.sample_rate)
        yield recording, record


@dataclass
class OpenedRun:
    """A streamed run's input, opened and checked: the recording, its manifest record, whether the
    sources are written as images, and the run's timings so far (``load_s``)."""

    recording: Recording
    record: dict[str, Any]
    images: bool
    timings: dict[str, float]


@contextlib.contextmanager
def opened_run(job: Job, spec: MethodSpec) -> Iterator[OpenedRun]:
    """Open ``job``'s input as a :class:`Recording` and refuse, before any pass, what the method
    cannot do with it (channels, ``--ref-channel``, the output format), as in memory."""
    from demix import pipeline

    options = job.options
    tic = time.perf_counter()
    with open_recording(job.source, options.sample_rate, start=options.start, duration=options.duration) as (
        recording,
        record,
    ):
        probe = Signal(np.empty((recording.channels, 0)), recording.sample_rate)
        images = pipeline._check_fit_to_run(spec, probe, job)
        yield OpenedRun(recording, record, images, {"load_s": time.perf_counter() - tic})


def input_shape(
    item: Input, sample_rate: int | None, start: float, duration: float | None
) -> tuple[int, int]:
    """Channels and frames the input will have once read (from its header; 0 frames if unknown)."""
    path, _ = _local_path(item)
    try:
        rate, channels, frames = audio.probe_any(path)
    except DemixError:
        return 0, 0
    frames = round(duration * rate) if duration is not None else max(frames - round(start * rate), 0)
    if sample_rate is not None and sample_rate != rate:
        frames = round(frames * sample_rate / rate)
    return channels, frames


def _local_path(item: Input) -> tuple[Path, dict[str, Any]]:
    if item == STDIN:
        return stdin_file(), {}
    if isinstance(item, Path):
        if not item.is_file():
            raise AudioError(f"{item}: no such file")
        return item, {}
    from demix.fetch import fetch_audio

    fetched = fetch_audio(item)
    return fetched.path, fetched.media.record()


def _resample(recording: Recording, wav: Path, rate: int) -> Recording:
    """``recording`` at ``rate`` in a float64 WAV, resampled block by block by soxr's stream in
    its high-quality mode: the samples :func:`demix.audio.resample` gives in memory, bit for bit."""
    import soxr

    if rate <= 0:
        raise ParameterError(f"--sr must be a positive rate in Hz, got {rate}")
    stream = soxr.ResampleStream(
        recording.sample_rate, rate, recording.channels, dtype="float64", quality="HQ"
    )
    frames, read = 0, 0
    with sf.SoundFile(wav, "w", rate, recording.channels, "DOUBLE", format="WAV") as out:
        for xb in recording.blocks(MAX_BLOCK):
            read += xb.shape[1]
            chunk = stream.resample_chunk(np.ascontiguousarray(xb.T), last=read == recording.frames)
            out.write(chunk)
            frames += chunk.shape[0]
    return Recording(wav, 0, frames, recording.channels, rate)


def _decode(path: Path, wav: Path, start: float, duration: float | None) -> Recording:
    from demix.ffmpeg import Conversion, convert, find_ffmpeg

    try:
        ffmpeg = find_ffmpeg()
    except DemixError:
        raise AudioError(f"{path}: not a format soundfile reads, and no ffmpeg to decode it") from None
    end = None if duration is None else start + duration
    convert(ffmpeg, path, wav, Conversion(start=start or None, end=end), str(path),
            seek=True, error=AudioError)  # fmt: skip
    rate, channels, frames = audio.probe(wav)
    if duration is not None and frames < round(duration * rate):
        raise ParameterError(
            f"--start {start:g} s to {end:g} s is outside {path.name}, "
            f"which ends at {start + frames / rate:.3f} s"
        )
    return Recording(wav, 0, frames, channels, rate)


# ---------------------------------------------------------------------------------------------
# The statistics pass


@dataclass
class Statistics:
    """What one pass over a recording accumulates (float64).

    ``mean`` and ``covariance`` (``/T``) of the channels; ``lagged[k]`` the symmetrised lagged
    covariance of the centred channels at ``lags[k]`` (``/(T - lag)``), as
    :func:`~demix.methods.lagged.lagged_covariances` computes it in memory; ``subsample`` the raw
    samples at the asked indices ``(channels, n_indices)``.
    """

    n_samples: int
    mean: np.ndarray
    covariance: np.ndarray
    lags: np.ndarray | None = None
    lagged: np.ndarray | None = None
    subsample: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def statistics(
    recording: Recording,
    block: int,
    *,
    lags: np.ndarray | None = None,
    indices: np.ndarray | None = None,
) -> Statistics:
    """Mean, covariance, lagged covariances and a subsample of ``recording`` in one pass of blocks.

    Samples are shifted by the mean of the first :data:`~demix.methods.whitening.PASS_VALUES`
    values before any sum (as in memory), so a DC offset costs no precision. Lagged products are
    taken over ``[carry | block]`` minus those within ``carry`` (the last ``max(lags)`` samples of
    the previous blocks), so every pair ``(t, t + lag)`` is counted once, across block edges too;
    the mean is then removed exactly with the sums of the first and last ``lag`` samples.
    """
    n, T = recording.channels, recording.frames
    shift = recording.read(0, min(T, PASS_VALUES // n)).mean(axis=1)
    sums = np.zeros(n)
    gram = np.zeros((n, n))
    max_lag = 0 if lags is None else int(lags.max())
    products = None if lags is None else np.zeros((len(lags), n, n))
    carry = np.zeros((n, 0))
    head = np.zeros((n, 0))
    sub = None if indices is None else np.empty((n, len(indices)))
    position = 0
    for xb in recording.blocks(block):
        k = xb.shape[1]
        if not np.all(np.isfinite(xb)):
            raise AudioError(f"{recording.path}: the file holds NaN or infinite samples")
        y = xb - shift[:, None]
        sums += y.sum(axis=1)
        gram += y @ y.T
        if indices is not None and sub is not None:
            lo, hi = np.searchsorted(indices, [position, position + k])
            sub[:, lo:hi] = xb[:, indices[lo:hi] - position]
        if lags is not None and products is not None:
            if head.shape[1] < max_lag:
                head = np.concatenate([head, y[:, : max_lag - head.shape[1]]], axis=1)
            joined = np.concatenate([carry, y], axis=1)
            products += lagged_products(joined, lags)
            if carry.shape[1]:
                products -= lagged_products(carry, lags)
            carry = joined[:, -max_lag:].copy()
        position += k
    offset = sums / T
    stats = Statistics(
        n_samples=T,
        mean=shift + offset,
        covariance=gram / T - np.outer(offset, offset),
        subsample=sub,
    )
    if lags is not None and products is not None:
        stats.lags = lags
        stats.lagged = _centre_lagged(products, lags, sums, head, carry, offset, T)
    return stats


def _centre_lagged(
    products: np.ndarray, lags: np.ndarray, total: np.ndarray, head: np.ndarray, tail: np.ndarray,
    m: np.ndarray, T: int,
) -> np.ndarray:  # fmt: skip
    """``Σ (y(t+τ) - m)(y(t) - m)^T`` symmetrised, over ``T - τ``, from the raw products."""
    out = np.empty_like(products)
    head_sums = np.cumsum(head, axis=1)
    tail_sums = np.cumsum(tail[:, ::-1], axis=1)
    for k, lag in enumerate(lags):
        later = total - head_sums[:, lag - 1]  # Σ_{t ≥ τ} y(t)
        earlier = total - tail_sums[:, lag - 1]  # Σ_{t < T - τ} y(t)
        cross = np.outer(later, m) + np.outer(m, earlier)
        C = products[k] - (cross + cross.T) / 2 + (T - lag) * np.outer(m, m)
        out[k] = C / (T - lag)
    return out


class _WhitenedRecording:
    """The whitened recording ``K (x - mean)`` in float32, recomputed block by block every pass
    (a :class:`~demix.methods.fastica.BlockSource`)."""

    def __init__(self, recording: Recording, wh: Whitening, block: int, on_pass: Callable[[], None]) -> None:
        self.recording = recording
        self.mean = wh.mean
        self.K = wh.whitening
        self.block = block
        self.on_pass = on_pass

    @property
    def shape(self) -> tuple[int, int]:
        return (self.K.shape[0], self.recording.frames)

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        self.on_pass()
        big = max(size, self.block // size * size)
        for xb in self.recording.blocks(big):
            z = (self.K @ (xb - self.mean[:, None])).astype(np.float32)
            for a in range(0, z.shape[1], size):
                yield z[:, a : a + size]


# ---------------------------------------------------------------------------------------------
# Fitting each streaming method


@dataclass
class _Passes:
    count: int = 0

    def __call__(self) -> None:
        self.count += 1


def fit_streamed(
    spec: MethodSpec,
    recording: Recording,
    params: Any,
    block: int,
    callback: Callback | None,
    passes: _Passes,
) -> tuple[Separation, Whitening]:
    """The method's :class:`Separation` without sources (``(m, 0)``), from passes over ``recording``,
    and the whitening (mean and covariance of the mixture)."""
    T = recording.frames
    if spec.name == "jade":
        return _fit_jade(recording, params, block, callback, passes)
    if spec.name == "picard":
        return _fit_picard(recording, params, block, callback, passes)
    if spec.name == "fastica":
        _check_length(recording, 16)
        rng = np.random.default_rng(params.seed)
        idx = fastica.warm_indices(T, rng)
        passes()
        stats = statistics(recording, block, indices=idx)
        wh = whitening_from_statistics(stats.mean, stats.covariance, params.sources)
        warm = None
        if stats.subsample is not None:
            warm = (wh.whitening @ (stats.subsample - wh.mean[:, None])).astype(np.float32)
        Z = _WhitenedRecording(recording, wh, block, passes)
        return fastica.fit(wh, Z, warm, rng, params, callback), wh
    if spec.name == "decorr":
        lags = check_lags(str(params.lags), T)
        passes()
        stats = statistics(recording, block, lags=lags)
        wh = whitening_from_statistics(stats.mean, stats.covariance, sobi.whitening_sources(params))
        assert stats.lagged is not None
        K = wh.whitening
        Cz = np.einsum("ij,ljk,mk->lim", K, stats.lagged, K)
        return sobi.separate_from_statistics(wh, Cz, lags, params, callback), wh
    raise ParameterError(f"method {spec.name} does not stream")  # pragma: no cover - registry guards


def _check_length(recording: Recording, min_samples: int) -> None:
    """Refuse a recording too short for a covariance, as :func:`~demix.methods.whitening.check_mixture`."""
    T, n = recording.frames, recording.channels
    if max(min_samples, 2 * n) > T:
        raise ParameterError(f"mixture: {T} samples are too few for {n} channels")


def _whitening_sources(stats: Statistics, spec: SourcesSpec) -> Whitening:
    """:func:`~demix.methods.n_sources.whiten_sources`'s transform (``-n`` a count, fraction or
    ``auto``) from the statistics pass."""
    return sources_whitening(lambda: whitening_from_statistics(stats.mean, stats.covariance), spec)


def _fit_jade(
    recording: Recording, params: jade.JadeParams, block: int, callback: Callback | None, passes: _Passes
) -> tuple[Separation, Whitening]:
    """JADE: the statistics pass, then one pass accumulating the cumulant matrices, then the same
    joint diagonalisation as in memory (Cardoso & Souloumiac 1993)."""
    _check_length(recording, 2)
    passes()
    wh = _whitening_sources(statistics(recording, block), params.sources)
    C = jade.cumulant_matrices(_WhitenedRecording(recording, wh, block, passes))
    result = jade.fit(wh, C, recording.frames, params.max_iter, params.tol, callback)
    return picard.to_separation(result), wh


def _fit_picard(
    recording: Recording, params: picard.PicardParams, block: int, callback: Callback | None, passes: _Passes
) -> tuple[Separation, Whitening]:
    """Picard (Ablin, Cardoso & Gramfort 2018): the statistics pass gathers the warm-start
    subsample, then L-BFGS on it and full-data passes until the stopping rule holds on the whole
    recording, as in memory. ``--restarts`` above 1 is refused: choosing among restarts needs each
    one's negentropy over the whole signal (:mod:`demix.methods.restarts`), not yet streamed."""
    if params.restarts > 1:
        raise ParameterError(
            f"--restarts {params.restarts} holds the recording in memory, and this one streams from "
            "disk (see --max-memory); pass --restarts 1, a larger --max-memory or a shorter --duration"
        )
    _check_length(recording, 2)
    T = recording.frames
    rng = np.random.default_rng(params.seed)
    idx = fastica.warm_indices(T, rng)
    passes()
    stats = statistics(recording, block, indices=idx)
    wh = _whitening_sources(stats, params.sources)
    warm = None if stats.subsample is None else wh.whitening @ (stats.subsample - wh.mean[:, None])
    ortho = picard.choose_ortho(T, recording.sample_rate) if params.ortho is None else params.ortho
    Z = _WhitenedRecording(recording, wh, block, passes)
    settings = picard.Settings(ortho, params.extended, params.max_iter, params.tol)
    result = picard.fit(wh, Z, warm, rng, settings, callback)
    return picard.to_separation(result), wh


# ---------------------------------------------------------------------------------------------
# Applying the unmixing: peak pass, write pass


@dataclass
class _Moments:
    """Per-source peak and raw moments of ``s`` (for RMS and kurtosis), over passes of blocks."""

    n: int
    peak: np.ndarray = field(init=False)
    power: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.peak = np.zeros(self.n)
        self.power = np.zeros((4, self.n))

    def add(self, S: np.ndarray) -> None:
        self.peak = np.maximum(self.peak, np.max(np.abs(S), axis=1))
        s2 = S * S
        self.power[0] += S.sum(axis=1)
        self.power[1] += s2.sum(axis=1)
        self.power[2] += (s2 * S).sum(axis=1)
        self.power[3] += (s2 * s2).sum(axis=1)

    def kurtosis(self, T: int) -> list[float]:
        m1, m2, m3, m4 = self.power / T
        var = m2 - m1**2
        central4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        with np.errstate(invalid="ignore", divide="ignore"):
            kurt = central4 / var**2 - 3.0
        return [float(k) if np.isfinite(k) else 0.0 for k in kurt]


def stage_all(run: RunFolder, names: Sequence[str], write: Callable[[list[Path]], None]) -> None:
    """Stage every file of ``names`` at once: ``write(paths)`` writes them all in one pass.

    :meth:`RunFolder.stage` calls its writer at once with the staged path; nesting the calls gives
    every path to the innermost writer, which writes all files block by block.
    """

    def nest(i: int, paths: list[Path]) -> None:
        if i == len(names):
            write(paths)
            return
        run.stage(names[i], lambda tmp: nest(i + 1, [*paths, tmp]))

    nest(0, [])


def open_writer(path: Path, channels: int, rate: int, options: WriteOptions) -> sf.SoundFile:
    if options.fmt in audio.LOSSY:
        container, codec = audio.LOSSY[options.fmt]
        level = None if options.quality is None else 1.0 - options.quality
        return sf.SoundFile(path, "w", rate, channels, codec, format=container, compression_level=level)
    return sf.SoundFile(path, "w", rate, channels, options.subtype, format=options.fmt.upper())


# ---------------------------------------------------------------------------------------------
# The run


def plan_stream(spec: MethodSpec, job: Job) -> Plan | None:
    """A :class:`Plan` when ``job`` should stream (see the module docstring), else None (every
    registered method streams; a method without a ``stream`` kind always runs in memory)."""
    options = job.options
    channels, frames = input_shape(job.source, options.sample_rate, options.start, options.duration)
    need = frames * channels * 8 * spec.copies
    if spec.stream is None or need <= options.max_memory_mb * 2**20:
        return None
    return make_plan(channels, options.max_memory_mb)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MB"


def choose_plan(spec: MethodSpec, job: Job, stream: bool | None) -> Plan | None:
    """The plan ``run_job`` follows: streaming when asked (``stream`` True), never when False,
    and by :func:`plan_stream`'s rule when None."""
    if stream is None:
        return plan_stream(spec, job)
    if not stream:
        return None
    if spec.stream is None:
        raise ParameterError(f"method {spec.name} does not stream; it separates in memory")
    channels, _ = input_shape(job.source, job.options.sample_rate, job.options.start, job.options.duration)
    return make_plan(max(channels, 1), job.options.max_memory_mb)


def make_plan(channels: int, max_memory_mb: float = DEFAULT_MAX_MEMORY_MB) -> Plan:
    """The block size for ``channels`` (images of every source at every channel included)."""
    return Plan(block_samples(channels, channels * channels, max_memory_mb), float(max_memory_mb))


def run_streamed(
    job: Job, spec: MethodSpec, plan: Plan, *, callback: Callback | None = None
) -> dict[str, Any]:
    """``run_job`` for a streaming method: the same manifest, with ``streaming`` added."""
    from demix import pipeline

    if spec.stream == "bases":
        from demix.streaming_nmf import run_nmf_streamed

        return run_nmf_streamed(job, spec, plan, callback=callback)
    if spec.stream == "repetitions" and job.params.refine == "none":
        from demix.streaming_repet import run_repet_streamed

        return run_repet_streamed(job, spec, plan, callback=callback)
    if spec.stream in ("segments", "repetitions"):  # repet --refine nmf: its NMF fits need segments
        from demix.segmented import run_segmented

        return run_segmented(job, spec, plan, callback=callback)

    options = job.options
    with opened_run(job, spec) as opened:
        recording, record, images, timings = opened.recording, opened.record, opened.images, opened.timings
        rate = recording.sample_rate

        tic = time.perf_counter()
        passes = _Passes()
        block = plan.block_samples
        history = History(callback)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            separation, wh = fit_streamed(spec, recording, params=job.params, block=block, callback=history,
                                      passes=passes)  # fmt: skip
            model = separation.model
            assert isinstance(model, Instantaneous)
            U, mean = model.unmixing, wh.mean
            fit = check_model_fit(_excerpt_sources(recording, U, mean), rate)
            # Unit-variance sources: the energy finish() orders by is diag(U C U^T) = 1 each; a
            # two-sample stand-in with that variance gives it the sources' statistics exactly.
            variance = np.einsum("ij,jk,ik->i", U, wh.covariance, U)
            stand_in = np.sqrt(variance)[:, None] * np.array([[1.0, -1.0]])
            finished = finish(
                Separation(stand_in, "mono", model, 0, True, 0.0),
                ref_channel=options.ref_channel,
                scale=options.scale,
                images=images,
            )
        timings["separate_s"] = time.perf_counter() - tic

        assert finished.model is not None
        order = [int(i) for i in finished.order]
        unmixing = np.asarray(finished.model["unmixing"])
        mixing = np.asarray(finished.model["mixing"])
        tic = time.perf_counter()
        moments = _Moments(len(order))
        passes()
        for xb in recording.blocks(block):
            moments.add(unmixing @ (xb - mean[:, None]))
        column_peak = np.max(np.abs(mixing), axis=0) if images else np.ones(len(order))
        column_power = np.mean(mixing**2, axis=0) if images else np.ones(len(order))
        peaks = moments.peak * column_peak
        gain = 1.0 if options.scale == "unit" else run_gain([peaks])
        T = recording.frames
        rms = gain * np.sqrt(moments.power[1] / T * column_power)
        kurtosis = moments.kurtosis(T)

        names = (
            tuple(separation.names[i] for i in order)
            if separation.names is not None
            else tuple(f"source_{i + 1}" for i in range(len(order)))
        )
        facts = [separation.facts[i] for i in order] if separation.facts else [{} for _ in order]
        stem = input_stem(job.source)
        files = options.file_names(stem, names)

        manifest = pipeline.start_manifest(job, spec, record)
        outputs = [
            {
                "file": file,
                "role": "source",
                "rms": round(float(r), 6),
                "peak": round(float(gain * p), 6),
                "name": name,
                "kurtosis": round(kurt, 3),
                "method_index": index,
                **fact,
            }
            for file, name, r, p, kurt, index, fact in zip(
                files, names, rms, peaks, kurtosis, order, facts, strict=True
            )
        ]

        def write(paths: list[Path]) -> None:
            passes()
            scaled = gain * unmixing
            channels = recording.channels if images else 1
            handles = [open_writer(p, channels, rate, options) for p in paths]
            check_clip = options.subtype != "FLOAT" or options.fmt in audio.LOSSY
            try:
                for xb in recording.blocks(block):
                    S = scaled @ (xb - mean[:, None])
                    for i, handle in enumerate(handles):
                        frames = np.outer(S[i], mixing[:, i]) if images else S[i][:, None]
                        if check_clip and np.max(np.abs(frames), initial=0.0) > 1.0:
                            raise AudioError(f"{paths[i].name}: samples exceed full scale; refusing to clip")
                        handle.write(frames)
            finally:
                for handle in handles:
                    handle.close()

        with RunFolder(job.folder) as run:
            stage_all(run, files, write)
            timings["write_s"] = time.perf_counter() - tic
            manifest.update(
                outputs=outputs,
                **pipeline.result_record(separation, finished, gain, fit, caught, timings, history),
                streaming=plan.record(passes.count),
            )
            manifest = clean(manifest)
            run.commit(manifest)
    return manifest


def _excerpt_sources(recording: Recording, U: np.ndarray, mean: np.ndarray) -> Separation:
    """The method's sources on the model-fit check's excerpt (as :mod:`demix.model_fit` picks it)."""
    block = round(_BLOCK_S * recording.sample_rate)
    T = recording.frames
    if _MAX_BLOCKS * block >= T:
        starts, block = np.array([0]), T
    else:
        starts = np.linspace(0, T - block, _MAX_BLOCKS).astype(int)
    parts = [U @ (recording.read(int(a), block) - mean[:, None]) for a in starts]
    return Separation(np.concatenate(parts, axis=1).astype(np.float32), "mono", None, 0, True, 0.0)
