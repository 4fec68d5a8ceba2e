"""Pictures of a run: spectrograms and waveforms, convergence, scores — as PNG bytes.

Everything here takes arrays (or an audio file) and returns PNG bytes, so the CLI can write them
into a run folder and the report can embed them. matplotlib (the optional extra ``demix[plot]``)
is imported only inside the functions that draw, with the Agg backend, so importing this module
costs nothing.

Long files are reduced before drawing: :func:`overview` reads a file block by block, takes the
STFT at the file's own rate (the spectrogram keeps its full band) and pools the frames' power over
time into at most ``max_columns`` columns (mean power), and the waveform into a min/max envelope
per column. Memory is bounded by the block size and the picture's width, not the file's length.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.fft

from demix.errors import ParameterError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_TOP_DB",
    "FigureFile",
    "Overview",
    "convergence_png",
    "db_range",
    "overview",
    "panel_count",
    "run_figures",
    "scores_png",
    "signals_png",
    "stage_figures",
]

DEFAULT_TOP_DB = 80.0
"""Colour range below the loudest bin of all panels, in dB."""
_BLOCK_SAMPLES = 1 << 19  # samples per block read: ~0.5 M, a few tens of MB of STFT in float32
_FLOOR = 1e-20
_CMAP = "magma"
_PANELS_KEY = "demix:panels"


@dataclass(frozen=True)
class Overview:
    """A signal reduced for pictures.

    Attributes
    ----------
    name : str
        Panel title.
    power : ndarray, (n_fft // 2 + 1, n_columns) float32
        Power spectrogram, averaged over channels and over the ``pool`` STFT frames of a column.
    low, high : ndarray, (n_columns,)
        The smallest and largest sample (over channels) within each column's span.
    sample_rate, n_fft, hop, pool, n_samples, n_channels
        The STFT (Hann window of ``n_fft``, frames ``hop`` apart, centred) and the pooling
        (``pool`` frames per column, so columns are ``hop * pool`` samples apart).
    """

    name: str
    power: np.ndarray
    low: np.ndarray
    high: np.ndarray
    sample_rate: int
    n_fft: int
    hop: int
    pool: int
    n_samples: int
    n_channels: int

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def peak(self) -> float:
        return float(max(np.max(np.abs(self.low), initial=0.0), np.max(np.abs(self.high), initial=0.0)))


def default_n_fft(sample_rate: int) -> int:
    """About 46 ms at 44.1 kHz and 64 ms at 16 kHz: a power of two near ``sample_rate / 21``."""
    return int(2 ** max(8, round(math.log2(sample_rate / 21.5))))


def overview(
    source: str | Path | np.ndarray,
    sample_rate: int | None = None,
    *,
    name: str | None = None,
    n_fft: int | None = None,
    hop: int | None = None,
    max_columns: int = 1000,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> Overview:
    """Pooled power spectrogram and waveform envelope of a file or an array, in bounded memory.

    Parameters
    ----------
    source : path or ndarray
        An audio file (read block by block with soundfile) or samples ``(n_samples,)``,
        ``(n_channels, n_samples)`` or ``(n_sources, n_channels, n_samples)`` flattened to channels.
    sample_rate : int, optional
        Needed for arrays; a file's own rate is used (never resampled).
    n_fft, hop : int, optional
        STFT frame and hop; default :func:`default_n_fft` and a quarter of it (half of it when
        more than four frames would be pooled into a column).
    max_columns : int
        Most time columns: consecutive frames are pooled (mean power) to stay within it.
    start_s, duration_s : float
        Show only this section (seconds; ``duration_s`` None: to the end).
    """
    if max_columns < 1:
        raise ParameterError(f"max_columns must be ≥ 1, got {max_columns}")
    read_all, total, n_channels, rate, label = _reader(source, sample_rate)
    offset = min(max(round(start_s * rate), 0), total)
    n_samples = (
        total - offset if duration_s is None else min(total - offset, max(round(duration_s * rate), 0))
    )
    if n_samples < 1:
        raise ParameterError(
            f"nothing to plot: the section starts at or after the end ({total / rate:.3f} s)"
        )

    def read(start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` of the section, zero outside it."""
        out = np.zeros((n_channels, stop - start), dtype=np.float32)
        a, b = max(start, 0), min(stop, n_samples)
        if b > a:
            out[:, a - start : b - start] = read_all(offset + a, offset + b)
        return out

    n_fft = n_fft or default_n_fft(rate)
    if hop is None:
        # 75 % overlap; 50 % once several frames are pooled per column anyway: half the FFTs,
        # and every sample still lies in two frames.
        hop = n_fft // 4 if 1 + n_samples // (n_fft // 4) <= 4 * max_columns else n_fft // 2
    n_frames = 1 + n_samples // hop  # centred frames, as demix.spectral.stft
    pool = -(-n_frames // max_columns)
    n_columns = -(-n_frames // pool)
    per_block = pool * max(1, _BLOCK_SAMPLES // (hop * pool))  # frames per block: whole columns
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa's
    power = np.empty((n_fft // 2 + 1, n_columns), dtype=np.float32)
    low = np.empty(n_columns, dtype=np.float32)
    high = np.empty(n_columns, dtype=np.float32)
    half = n_fft // 2
    for first in range(0, n_frames, per_block):
        k = min(per_block, n_frames - first)
        start = first * hop - half
        buf = read(start, start + (k - 1) * hop + n_fft)  # (C, ...) zero-padded outside the signal
        frames = np.lib.stride_tricks.sliding_window_view(buf, n_fft, axis=-1)[:, ::hop][:, :k]
        spec = scipy.fft.rfft(frames * window, axis=-1, overwrite_x=True)  # float32 in, complex64 out
        p = np.square(spec.real)
        p += np.square(spec.imag)
        p = p.sum(axis=0).T / np.float32(buf.shape[0])  # (F, k): mean power over channels
        col = first // pool
        starts = np.arange(0, k, pool)
        counts = np.minimum(pool, k - starts)
        power[:, col : col + len(starts)] = np.add.reduceat(p, starts, axis=1) / counts
        # the samples between this block's first frame centre and the next block's
        seg = buf[:, half : half + min(k * hop, max(n_samples - first * hop, 0))]
        lo, hi = _envelope(seg, pool * hop, len(starts))
        low[col : col + len(starts)] = lo
        high[col : col + len(starts)] = hi
    return Overview(
        name=name if name is not None else label,
        power=power,
        low=low,
        high=high,
        sample_rate=rate,
        n_fft=n_fft,
        hop=hop,
        pool=pool,
        n_samples=n_samples,
        n_channels=n_channels,
    )


Reader = Callable[[int, int], np.ndarray]


def _reader(source: str | Path | np.ndarray, sample_rate: int | None) -> tuple[Reader, int, int, int, str]:
    """``read(start, stop)`` → float32 ``(C, stop - start)`` zero outside, length, channels, rate."""
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ParameterError("an array needs its sample_rate")
        data = np.atleast_2d(source)
        data = data.reshape(-1, data.shape[-1])
        n = data.shape[1]

        def read_array(start: int, stop: int) -> np.ndarray:
            out = np.zeros((data.shape[0], stop - start), dtype=np.float32)
            a, b = max(start, 0), min(stop, n)
            if b > a:
                out[:, a - start : b - start] = data[:, a:b]
            return out

        return read_array, n, data.shape[0], int(sample_rate), ""
    import soundfile as sf

    path = Path(source)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        # formats only librosa reads: load whole (what demix's reader does for them anyway)
        from demix.audio import read_audio

        signal = read_audio(path)
        read, n, c, rate, _ = _reader(signal.data, signal.sample_rate)
        if n == 0:
            raise ParameterError(f"{path}: no audio ({exc})") from None
        return read, n, c, rate, path.stem
    n, channels = int(info.frames), int(info.channels)

    def read_file(start: int, stop: int) -> np.ndarray:
        out = np.zeros((channels, stop - start), dtype=np.float32)
        a, b = max(start, 0), min(stop, n)
        if b > a:
            with sf.SoundFile(str(path)) as f:
                f.seek(a)
                got = f.read(b - a, dtype="float32", always_2d=True)
            out[:, a - start : a - start + len(got)] = got.T
        return out

    return read_file, n, channels, int(info.samplerate), path.stem


def _envelope(seg: np.ndarray, span: int, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max over channels within consecutive ``span``-sample spans, ``n_columns`` of them
    (the last repeated when the samples run out before the frames do)."""
    lo = np.zeros(n_columns, dtype=np.float32)
    hi = np.zeros(n_columns, dtype=np.float32)
    if seg.shape[1]:
        starts = np.arange(0, seg.shape[1], span)[:n_columns]
        lo_got = np.minimum.reduceat(seg.min(axis=0), starts)
        hi_got = np.maximum.reduceat(seg.max(axis=0), starts)
        lo[: len(starts)], hi[: len(starts)] = lo_got, hi_got
        lo[len(starts) :], hi[len(starts) :] = lo_got[-1], hi_got[-1]
    return lo, hi


def db_range(overviews: Sequence[Overview], top_db: float = DEFAULT_TOP_DB) -> tuple[float, float]:
    """One colour scale for every panel: from ``top_db`` below the loudest bin of all to it (dB)."""
    top = max((float(np.max(o.power, initial=0.0)) for o in overviews), default=0.0)
    vmax = 10 * math.log10(max(top, _FLOOR))
    return vmax - top_db, vmax


def signals_png(
    overviews: Sequence[Overview],
    *,
    db: tuple[float, float] | None = None,
    peak: float | None = None,
    width: float = 10.0,
    dpi: int = 100,
) -> bytes:
    """Waveform and spectrogram of each signal, one panel per signal, stacked.

    All panels share one dB colour scale (``db``, default :func:`db_range` of these) and one
    amplitude scale (``peak``, default the largest), so quieter sources look quieter. Frequency
    is on a logarithmic axis from the first FFT bin to the Nyquist frequency. The PNG's text
    chunk ``demix:panels`` holds the panel count.
    """
    if not overviews:
        raise ParameterError("nothing to plot")
    Figure = _figure_class()
    vmin, vmax = db if db is not None else db_range(overviews)
    peak = peak if peak is not None else max(o.peak for o in overviews) or 1.0
    n = len(overviews)
    height = 2.6 * n + 0.5
    # Fixed margins in inches: constrained layout would double the drawing time.
    fig = Figure(figsize=(width, height), dpi=dpi)
    grid = fig.add_gridspec(
        n,
        2,
        width_ratios=[60, 1],
        left=0.75 / width,
        right=1 - 0.85 / width,
        top=1 - 0.3 / height,
        bottom=0.55 / height,
        hspace=0.3,
        wspace=0.02,
    )
    image = None
    for k, ov in enumerate(overviews):
        cell = grid[k, 0].subgridspec(2, 1, height_ratios=[1, 3], hspace=0.04)
        wave: Axes = fig.add_subplot(cell[0])
        spec: Axes = fig.add_subplot(cell[1], sharex=wave)
        t = np.arange(len(ov.low) + 1) * (ov.hop * ov.pool / ov.sample_rate)
        t[-1] = max(ov.duration, t[-2])
        wave.fill_between(
            t, np.append(ov.low, ov.low[-1]), np.append(ov.high, ov.high[-1]), step="post", color="#3b6ea8"
        )
        wave.set_xlim(0, float(t[-1]))
        wave.set_ylim(-peak * 1.05, peak * 1.05)
        wave.set_yticks([])
        wave.tick_params(labelbottom=False)
        wave.set_title(ov.name, loc="left", fontsize=10)
        rows, lo_hz, hi_hz = log_frequency_rows(ov)
        image = spec.imshow(
            10 * np.log10(np.maximum(rows, _FLOOR)),
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            extent=(0.0, float(t[-1]), math.log10(lo_hz), math.log10(hi_hz)),
            cmap=_CMAP,
            vmin=vmin,
            vmax=vmax,
        )
        _hz_ticks(spec, lo_hz, hi_hz)
        spec.set_xlim(0, float(t[-1]))
        spec.set_ylabel("Hz")
        if k == n - 1:
            spec.set_xlabel("time (s)")
    assert image is not None
    fig.colorbar(image, cax=fig.add_subplot(grid[:, 1]), format="%+.0f dB")
    return _png(fig, n, dpi)


def log_frequency_rows(ov: Overview, n_rows: int = 300) -> tuple[np.ndarray, float, float]:
    """The pooled power on ``n_rows`` log-spaced frequency bands from the first bin above 0 Hz to
    the Nyquist frequency: each band's mean power, taking the STFT bins as piecewise constant
    (a band narrower than a bin gets that bin's power). Returns rows and the band edges' ends."""
    n_freqs = ov.power.shape[0]
    bin_hz = ov.sample_rate / ov.n_fft
    # bin k spans (k ± ½) · bin_hz; below bin 2 a log axis would give most rows to two bins
    lo_hz, hi_hz = min(1.5, n_freqs - 1.5) * bin_hz, (n_freqs - 0.5) * bin_hz
    edges = np.geomspace(lo_hz, hi_hz, n_rows + 1) / bin_hz + 0.5  # in bin units from bin 0's edge
    cum = np.zeros((n_freqs + 1, ov.power.shape[1]))
    np.cumsum(ov.power, axis=0, out=cum[1:])
    index = np.minimum(edges.astype(int), n_freqs - 1)
    frac = (edges - index)[:, None]
    at = cum[index] + frac * (cum[index + 1] - cum[index])  # cumulative power at each edge
    rows = (at[1:] - at[:-1]) / np.diff(edges)[:, None]
    return rows.astype(np.float32), lo_hz, hi_hz


def _hz_ticks(ax: Axes, lo_hz: float, hi_hz: float) -> None:
    ticks = [f for f in (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000) if lo_hz <= f <= hi_hz]
    ax.set_yticks([math.log10(f) for f in ticks], [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])


def convergence_png(
    history: dict[str, Any], *, title: str = "", width: float = 10.0, dpi: int = 100
) -> bytes:
    """The change per iteration (log scale) and, when recorded, the objective, from
    :meth:`demix.history.History.record`'s lists. One panel, or two with an objective."""
    Figure = _figure_class()
    x = np.asarray(history.get("iteration") or history.get("step") or [], dtype=float)
    if not _increasing(x):
        x = np.asarray(history.get("step", range(len(x))), dtype=float)
    series = [("change", "change per iteration")]
    if history.get("objective") is not None:
        series.append(("objective", "objective"))
    fig = Figure(figsize=(width, 2.4 * len(series) + 0.3), dpi=dpi, layout="constrained")
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)
    for ax, (key, label) in zip(axes[:, 0], series, strict=True):
        y = np.array([np.nan if v is None else v for v in history.get(key, [])], dtype=float)
        ax.plot(x[: len(y)], y, marker="." if len(y) < 60 else None, color="#3b6ea8")
        positive = y[np.isfinite(y)]
        if key == "change" and positive.size and np.all(positive > 0):
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("iteration")
    if title:
        axes[0, 0].set_title(title, loc="left", fontsize=10)
    return _png(fig, len(series), dpi)


def scores_png(
    rows: Sequence[dict[str, Any]],
    *,
    metrics: Sequence[str] = ("sdr", "sir", "sar", "si_sdr"),
    width: float = 10.0,
    dpi: int = 100,
) -> bytes:
    """Grouped bars of each estimate's scores in dB (rows as ``demix eval --json``'s ``scores``)."""
    Figure = _figure_class()
    shown = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    if not rows or not shown:
        raise ParameterError("no scores to plot")
    labels = [Path(str(r.get("estimate", f"#{i + 1}"))).stem for i, r in enumerate(rows)]
    fig = Figure(figsize=(width, 0.25 * len(rows) * len(shown) + 1.8), dpi=dpi, layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(shown)
    y = np.arange(len(rows))
    for k, metric in enumerate(shown):
        values = [np.nan if r.get(metric) is None else float(r[metric]) for r in rows]
        ax.barh(
            y + (k - (len(shown) - 1) / 2) * height, values, height, label=metric.upper().replace("_", "-")
        )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("dB")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig, 1, dpi)


@dataclass(frozen=True)
class FigureFile:
    """A picture for a run folder: its file name, PNG bytes, panel count and what it shows."""

    file: str
    png: bytes
    panels: int
    shows: str

    def record(self) -> dict[str, Any]:
        """Its manifest entry (the bytes stay out)."""
        return {"file": self.file, "role": "figure", "panels": self.panels, "shows": self.shows}


def run_figures(
    mixture: np.ndarray,
    sources: Sequence[np.ndarray],
    names: Sequence[str],
    sample_rate: int,
    history: dict[str, Any] | None = None,
    *,
    title: str = "",
) -> list[FigureFile]:
    """The pictures ``--plot`` writes into a run folder.

    ``spectrograms.png``: the mixture and every source (``(n_samples,)``, ``(n_channels,
    n_samples)``), one panel each on one colour scale; ``convergence.png`` when ``history``
    (:meth:`demix.history.History.record`) holds any change.
    """
    overviews = [overview(mixture, sample_rate, name="mixture")]
    overviews += [overview(s, sample_rate, name=n) for s, n in zip(sources, names, strict=True)]
    figures = [
        FigureFile(
            "spectrograms.png",
            signals_png(overviews),
            len(overviews),
            "waveform and log-frequency spectrogram of the mixture and each source, one dB scale",
        )
    ]
    if history and any(v is not None for v in history.get("change", [])):
        panels = 2 if history.get("objective") is not None else 1
        figures.append(
            FigureFile(
                "convergence.png",
                convergence_png(history, title=title),
                panels,
                "change per iteration" + (" and objective" if panels == 2 else ""),
            )
        )
    return figures


def stage_figures(
    stage: Callable[[str, Callable[[Path], None]], object],
    mixture: np.ndarray,
    sources: Sequence[np.ndarray],
    names: Sequence[str],
    sample_rate: int,
    history: dict[str, Any] | None = None,
    *,
    title: str = "",
) -> list[dict[str, Any]]:
    """Draw :func:`run_figures` and hand each PNG to ``stage(file, writer)`` (a run folder's
    :meth:`~demix.outputs.RunFolder.stage`); return their manifest entries (``role: figure``)."""
    records = []
    for figure in run_figures(mixture, sources, names, sample_rate, history, title=title):
        stage(figure.file, lambda tmp, png=figure.png: tmp.write_bytes(png))  # type: ignore[misc]
        records.append(figure.record())
    return records


def panel_count(png: bytes) -> int | None:
    """The panel count recorded in a PNG written here (None for other PNGs)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        value = getattr(image, "text", {}).get(_PANELS_KEY)
    return None if value is None else int(value)


def _increasing(x: np.ndarray) -> bool:
    return bool(x.size) and bool(np.all(np.diff(x) > 0))


def _figure_class() -> type[Figure]:
    """matplotlib's Figure, drawn by Agg without pyplot (no global state, no GUI backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ParameterError(
            "pictures need matplotlib: pip install 'demix[plot]' (make install includes it)"
        ) from None
    return Figure


def _png(fig: Figure, panels: int, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={_PANELS_KEY: str(panels)})
    return buf.getvalue()
