r"""DUET: more sources than microphones, by time-frequency masking of a stereo mixture.

ICA, SOBI and IVA return as many sources as there are channels. Speech is sparse in the
time-frequency plane: each STFT bin is dominated by one source (W-disjoint orthogonality), and in
a stereo mix the bin's level ratio and phase difference say which. :func:`duet` finds the sources
as peaks of a pan × delay histogram of the bins (Yilmaz & Rickard 2004; see
:mod:`demix.methods.duet_features`), refines their pans and delays with a complex angular central
Gaussian mixture tied to pan/delay steering vectors, fitted by EM over the bins (Ito et al. 2016;
see :mod:`demix.methods.spatial_mixture`), and turns the posteriors into stereo source images
(:mod:`demix.methods.duet_output`): a multichannel Wiener filter (default), or the posterior
(soft) or arg-max (binary) masks applied to both channels. Every source comes out stereo, as the
two microphones heard it, and the sources sum to the mixture.

Measured on three panned and delayed speakers (10 s of LibriSpeech, mean SDR at channel 0, n_fft 1024):
plain DUET (histogram peaks, binary masks) 8.9 dB; EM and soft masks 9.0 dB (SIR 11 → 19 dB); the
Wiener output from the histogram's pans and delays 10.9 dB, after EM 14.1 dB. A Gaussian mixture
fitted to the DUET features instead (pan and unwrapped delay below 1 kHz, pan alone above) gave
3.4 dB with soft masks: its pan Gaussians, widened by the bins where sources overlap, are too
broad to make sharp masks.

Conventions: a source panned at :math:`\theta` with delay :math:`d` reaches the channels with
gains :math:`\cos\theta` and :math:`\sin\theta` (:math:`\theta = 0` is channel 0 only) and channel 1
hears it :math:`d` samples later. The histogram sees each source's pan through the bins' level
ratios, whatever the delay; its delay is where the phases of the bins at that pan agree best, at
most ``max_delay`` samples either way. The model needs no phase unwrapping: delays of a few samples
wrap the phase above :math:`f_s / (2|d|)` (2.7 kHz for 3 samples at 16 kHz) and the steering vector
wraps with it.

Limits: the model is anechoic. Two sources at the same pan (closer than
:data:`~demix.methods.duet_features.MIN_PAN_SEP_DEG`) are one peak even when their delays differ;
a delay longer than about a quarter of ``n_fft`` breaks the narrow-band model of the STFT; and
reverberation spreads every source over many pans, which masks cannot undo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from demix import checks
from demix.errors import ParameterError
from demix.methods.duet_features import (
    bin_features,
    bin_sums,
    find_peaks,
    histogram_from_sums,
    pan_delay_histogram,
)
from demix.methods.duet_output import Output, separate_images, steering_vectors
from demix.methods.spatial_mixture import MixtureFit, fit_spatial_mixture
from demix.spectral import Readable, n_frames, stft, stft_frames
from demix.types import Callback, Separation

__all__ = [
    "AUTO_CONTRAST_DB",
    "AUTO_FLOOR_DB",
    "WINDOW_SECONDS",
    "DuetParams",
    "DuetResult",
    "count_sources_streamed",
    "duet",
    "separate",
    "stft_size",
]

# n_sources="auto" keeps every peak of the pan histogram that stands at least AUTO_CONTRAST_DB above
# the higher valley around it. Measured on 3-10 s of two to four speakers, equal levels or up to
# 12 dB apart, n_fft 1024 and 2048 at 16 kHz: sources 4.2-18 dB, humps made by bins where two
# sources overlap 3.7 dB at most.
AUTO_CONTRAST_DB = 4.0
# ... and that is no more than AUTO_FLOOR_DB below the highest peak (stray bins in an empty pan
# range make small bumps of high contrast).
AUTO_FLOOR_DB = -20.0
MAX_AUTO_SOURCES = 8
# An explicit -n takes the peaks of highest contrast down to this (and within AUTO_FLOOR_DB of the
# highest), then pans far from them.
MIN_CONTRAST_DB = 1.0
MAX_SOURCES = 32
# Default STFT window, in seconds (then the nearest power of two in samples).
WINDOW_SECONDS = 0.1
# Frames of the STFT per section when a long recording's sources are counted from disk.
COUNT_FRAMES = 4096


def stft_size(sample_rate: int) -> int:
    """The power of two nearest :data:`WINDOW_SECONDS` at ``sample_rate`` (at least 64 samples)."""
    checks.integer("--sr", sample_rate, low=1)
    return max(64, 2 ** round(np.log2(WINDOW_SECONDS * sample_rate)))


@dataclass(frozen=True)
class DuetParams:
    """Parameters of :func:`duet` (``demix duet``), validated on construction.

    Attributes
    ----------
    sources : int or "auto"
        Sources to separate (``-n/--sources``).
    n_fft, hop : int or None
        STFT size and hop in samples (``--n-fft``, ``--hop``); None: about :data:`WINDOW_SECONDS`
        (:func:`stft_size`) and a quarter of it.
    mask : {"wiener", "soft", "binary"}
        How the fitted model becomes source images (``--mask``, see
        :mod:`demix.methods.duet_output`).
    max_delay : float
        Largest inter-channel delay searched, in samples either way (``--max-delay``).
    max_iter : int
        EM iterations; 0 keeps the histogram's pans and delays (``--max-iter``).
    tol : float
        Relative change of the log-likelihood that stops EM (``--tol``).
    """

    sources: int | str = "auto"
    n_fft: int | None = None
    hop: int | None = None
    mask: str = "wiener"
    max_delay: float = 8.0
    max_iter: int = 100
    tol: float = 1e-5

    def __post_init__(self) -> None:
        if self.sources != "auto":
            try:
                checks.integer("-n/--sources", self.sources, low=1, high=MAX_SOURCES)
            except ParameterError:
                raise ParameterError(
                    f"-n/--sources {self.sources!r} is invalid; expected 'auto' or an integer from 1 "
                    f"to {MAX_SOURCES}"
                ) from None
        n_fft = checks.optional_integer("--n-fft", self.n_fft, low=16, high=65536)
        checks.optional_integer("--hop", self.hop, low=1, high=None if n_fft is None else n_fft // 2)
        checks.choice("--mask", self.mask, ("wiener", "soft", "binary"))
        checks.number(
            "--max-delay", self.max_delay, low=0.0, high=None if n_fft is None else n_fft / 4, low_open=True
        )
        checks.integer("--max-iter", self.max_iter, low=0)
        checks.number("--tol", self.tol, low=0.0, low_open=True)


@dataclass(frozen=True)
class DuetResult:
    """What :func:`duet` returns.

    Attributes
    ----------
    images : ndarray, (n_sources, 2, n_samples)
        Each source as both channels heard it; they sum to the mixture (every ``mask``).
    masks : ndarray, (n_sources, F, N)
        The time-frequency masks (sum to one over sources): applied as they are for ``soft`` and
        ``binary``; for ``wiener`` the posteriors that set the filter's source variances.
    sources : list of dict
        Per-source facts, in the order of ``images``: ``pan_deg`` (0 is channel 0 only, 90
        channel 1 only), ``delay_samples`` (positive: channel 1 hears it later), ``weight``
        (share of the mixture's energy in the source's mask) and ``spread`` (the fitted
        :math:`\\varepsilon`: 0 is a perfectly point-like source).
    n_iter, converged, final_change
        EM convergence record.
    log_likelihood : list of float
        Energy-weighted mean log-likelihood per bin, before EM and after each iteration.
    diagnostics : dict
        ``n_sources_rule``: how the number of sources was chosen; ``histogram_peaks``: every
        candidate's pan, delay, height and contrast in dB.
    """

    images: np.ndarray
    masks: np.ndarray
    sources: list[dict[str, float]]
    n_iter: int
    converged: bool
    final_change: float
    log_likelihood: list[float]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def duet(
    X: np.ndarray,
    sample_rate: int,
    *,
    n_sources: int | Literal["auto"] = "auto",
    n_fft: int | None = DuetParams.n_fft,
    hop: int | None = DuetParams.hop,
    mask: Output = "wiener",
    max_delay: float = DuetParams.max_delay,
    max_iter: int = DuetParams.max_iter,
    tol: float = DuetParams.tol,
    callback: Callback | None = None,
) -> DuetResult:
    """Separate a stereo mixture of panned (and delayed) sources, any number of them.

    The method is deterministic (the histogram decides where EM starts), so it takes no seed.

    Parameters
    ----------
    X : ndarray, (2, n_samples)
        The stereo mixture.
    sample_rate : int
        Its rate in Hz (recorded; the method works in samples).
    n_sources : int or "auto"
        Sources to separate, any number (more than two is the point). ``"auto"``: one per peak of
        the pan histogram that stands at least :data:`AUTO_CONTRAST_DB` above the higher valley
        around it and within :data:`AUTO_FLOOR_DB` of the highest (at most
        :data:`MAX_AUTO_SOURCES`). A source's bins share one pan and make a
        sharp peak; bins where two sources overlap spread between their pans and make low humps,
        which this leaves out. Measured right on two to four speakers up to 12 dB apart; a source
        much quieter than its neighbours in pan can still be missed: give the number then. An
        explicit number takes the peaks of highest contrast (down to :data:`MIN_CONTRAST_DB`, within
        :data:`AUTO_FLOOR_DB`) and,
        if there are too few, the pans furthest from them.
    n_fft, hop : int or None
        STFT size and hop, see :mod:`demix.spectral`. None (default): the power of two nearest
        :data:`WINDOW_SECONDS` of audio (2048 at 16 kHz, 4096 at 44.1 and 48 kHz) and a quarter
        of it. Measured on three voices at 44.1 kHz: 1024 / 2048 / 4096 gave 11.4 / 13.2 /
        14.2 dB mean SDR; at 16 kHz 512 / 1024 / 2048 gave 12.2 / 13.9 / 14.1 dB: shorter windows
        break W-disjoint orthogonality (more bins hold two sources) and bias the pans.
    mask : {"wiener", "soft", "binary"}
        ``wiener`` (default): the multichannel Wiener filter of the local Gaussian model, best
        measured; ``soft``: posterior masks; ``binary``: the most probable source per bin. All sum
        to the mixture (:mod:`demix.methods.duet_output`).
    max_delay : float
        Largest inter-channel delay searched, in samples (either sign); at most ``n_fft / 4``.
    max_iter : int
        EM iterations; 0 keeps the histogram's pans and delays (plain DUET).
    tol : float
        Stop when the relative change of the log-likelihood falls below it.
    callback : callable, optional
        Called with :class:`~demix.types.IterInfo` after every EM iteration.

    Returns
    -------
    DuetResult
        Sources ordered by pan (channel 0's side first), then delay.

    Raises
    ------
    ParameterError
        ``X`` not stereo, shorter than ``n_fft``, not finite or silent; a bad parameter (the
        message names its CLI option).

    References
    ----------
    .. [1] Ö. Yilmaz and S. Rickard, "Blind separation of speech mixtures via time-frequency
       masking", IEEE Trans. Signal Processing 52(7), 1830-1847, 2004.
    .. [2] N. Ito, S. Araki and T. Nakatani, "Complex angular central Gaussian mixture model for
       directional statistics in mask-based microphone array signal processing", EUSIPCO 2016.
    .. [3] N. Q. K. Duong, E. Vincent and R. Gribonval, "Under-determined reverberant audio source
       separation using a full-rank spatial covariance model", IEEE TASLP 18(7), 2010.
    """
    params = DuetParams(
        sources=n_sources, n_fft=n_fft, hop=hop, mask=mask, max_delay=max_delay, max_iter=max_iter, tol=tol
    )
    return _duet(X, sample_rate, params, callback)


def separate(
    X: np.ndarray, sample_rate: int, params: DuetParams, callback: Callback | None = None
) -> Separation:
    """:func:`duet` as the registry runs it: stereo images, per-source pan and delay facts."""
    res = _duet(X, sample_rate, params, callback)
    diagnostics = {
        **res.diagnostics,
        "log_likelihood": [round(v, 6) for v in res.log_likelihood],
    }
    return Separation(
        sources=res.images,
        layout="images",
        model=None,
        n_iter=res.n_iter,
        converged=res.converged,
        final_change=res.final_change,
        facts=tuple(res.sources),
        diagnostics=diagnostics,
    )


def _frame(sample_rate: int, params: DuetParams) -> tuple[int, int]:
    """The STFT size and hop of a run, checked against each other and ``--max-delay``."""
    n_fft = params.n_fft if params.n_fft is not None else stft_size(sample_rate)
    hop = params.hop if params.hop is not None else n_fft // 4
    if hop > n_fft // 2:
        raise ParameterError(
            f"--hop {hop} is invalid; expected an integer from 1 to {n_fft // 2} (--n-fft / 2)"
        )
    if params.max_delay > n_fft / 4:
        raise ParameterError(
            f"--max-delay {params.max_delay:g} is invalid; expected at most {n_fft / 4:g} (--n-fft / 4)"
        )
    return n_fft, hop


def _duet(X: np.ndarray, sample_rate: int, params: DuetParams, callback: Callback | None) -> DuetResult:
    n_fft, hop = _frame(sample_rate, params)
    X = _check_mixture(X, n_fft)
    S = stft(X, n_fft, hop)
    features = bin_features(S, n_fft)
    hist = pan_delay_histogram(features, params.max_delay)
    peaks = find_peaks(hist)
    pans_deg, delays, rule = _choose_sources(
        peaks.pans_deg, peaks.delays, peaks.heights, peaks.contrast_db, params.sources
    )

    def fit(pans: np.ndarray, delays: np.ndarray) -> MixtureFit:
        return fit_spatial_mixture(
            features,
            pans,
            delays,
            max_delay=params.max_delay,
            max_iter=params.max_iter,
            tol=params.tol,
            callback=callback,
        )

    model = fit(np.radians(pans_deg), delays)

    order = np.lexsort((model.delays, model.pans))
    steering = steering_vectors(model.pans[order], model.delays[order], features.omega)
    mask: Output = params.mask  # type: ignore[assignment]
    images, masks = separate_images(S, model.posterior[order], steering, mask, n_fft, hop, X.shape[1])

    energy = features.energy
    share = (masks * energy).sum(axis=(1, 2)) / float(energy.sum())
    facts = [
        {
            "pan_deg": float(np.degrees(model.pans[k])),
            "delay_samples": float(model.delays[k]),
            "weight": float(share[i]),
            "spread": float(model.spreads[k]),
        }
        for i, k in enumerate(order)
    ]
    diagnostics: dict[str, Any] = {
        "n_fft": n_fft,
        "hop": hop,
        "n_sources_rule": rule,
        "histogram_peaks": [
            {"pan_deg": float(p), "delay_samples": float(d), "height": float(h), "contrast_db": float(c)}
            for p, d, h, c in zip(peaks.pans_deg, peaks.delays, peaks.heights, peaks.contrast_db, strict=True)
        ][: MAX_AUTO_SOURCES * 2],
    }
    return DuetResult(
        images=images,
        masks=masks,
        sources=facts,
        n_iter=model.n_iter,
        converged=model.converged,
        final_change=model.final_change,
        log_likelihood=model.log_likelihood,
        diagnostics=diagnostics,
    )


def count_sources_streamed(recording: Readable, sample_rate: int, params: DuetParams) -> int:
    """The sources ``-n auto`` finds in a recording read from disk a section at a time.

    The pan × delay histogram is made of sums over frames (:class:`BinSums`), so the sums of
    sections of :data:`COUNT_FRAMES` frames of the whole STFT give the whole recording's
    histogram exactly, and the same count as in memory, without holding its STFT.
    """
    n_fft, hop = _frame(sample_rate, params)
    _require_stereo((recording.channels, recording.frames))
    total = n_frames(recording.frames, hop)
    sums = None
    for f0 in range(0, total, COUNT_FRAMES):
        part = bin_sums(
            bin_features(stft_frames(recording, f0, min(f0 + COUNT_FRAMES, total), n_fft, hop), n_fft)
        )
        sums = part if sums is None else sums + part
    assert sums is not None
    omega = 2.0 * np.pi * np.arange(n_fft // 2 + 1) / n_fft
    peaks = find_peaks(histogram_from_sums(sums, omega, params.max_delay))
    pans, _, _ = _choose_sources(peaks.pans_deg, peaks.delays, peaks.heights, peaks.contrast_db, "auto")
    return len(pans)


def _choose_sources(
    pans_deg: np.ndarray,
    delays: np.ndarray,
    heights: np.ndarray,
    contrast_db: np.ndarray,
    n_sources: int | str,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Initial pans (degrees) and delays of the sources, and the rule that chose them."""
    tall = heights >= (heights.max() if len(heights) else 0.0) * 10.0 ** (AUTO_FLOOR_DB / 10.0)
    by_contrast = np.argsort(-contrast_db, kind="stable")
    by_contrast = by_contrast[tall[by_contrast]]
    if n_sources == "auto":
        keep = by_contrast[contrast_db[by_contrast] >= AUTO_CONTRAST_DB][:MAX_AUTO_SOURCES]
        if len(keep) == 0:
            return np.array([45.0]), np.array([0.0]), "auto: no peak, one source"
        rule = (
            f"auto: {len(keep)} histogram peak(s) standing >= {AUTO_CONTRAST_DB:g} dB above their valleys, "
            f"within {-AUTO_FLOOR_DB:g} dB of the highest"
        )
        return pans_deg[keep], delays[keep], rule
    n = int(n_sources)
    chosen = by_contrast[contrast_db[by_contrast] >= MIN_CONTRAST_DB][:n]
    pans, dels = list(pans_deg[chosen]), list(delays[chosen])
    rule = f"given: {n}"
    if len(pans) < n:
        # Fewer peaks than asked for: add the pans furthest from those we have.
        grid = np.linspace(0.0, 90.0, 181)
        while len(pans) < n:
            dist = np.min(np.abs(grid[:, None] - np.asarray(pans)[None, :]), axis=1) if pans else grid
            pans.append(float(grid[int(np.argmax(dist))]))
            dels.append(0.0)
        rule += f" ({n - len(chosen)} beyond the histogram's peaks, spaced in pan)"
    return np.asarray(pans), np.asarray(dels), rule


def _require_stereo(shape: tuple[int, ...]) -> None:
    if len(shape) != 2 or shape[0] != 2:
        raise ParameterError(
            f"duet needs a stereo mixture (2, n_samples), got shape {shape}; "
            "for mono use nmf, for more channels ica or decorr"
        )


def _check_mixture(X: object, n_fft: int) -> np.ndarray:
    """Validated stereo ``(2, n_samples)`` float64 mixture."""
    arr = np.asarray(X)
    _require_stereo(arr.shape)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ParameterError(f"the mixture must be real numbers, got dtype {arr.dtype}")
    if arr.shape[1] < n_fft:
        raise ParameterError(
            f"the input has {arr.shape[1]} samples, shorter than one frame (--n-fft {n_fft}); "
            "use a longer file or a smaller --n-fft"
        )
    if not np.all(np.isfinite(arr)):
        raise ParameterError("the mixture contains NaN or inf samples")
    if not np.any(arr):
        raise ParameterError("the input is silent (all samples are zero): nothing to separate")
    return arr.astype(np.float64, copy=False)
