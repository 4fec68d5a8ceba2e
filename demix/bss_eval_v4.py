"""BSS Eval v4 (museval's ``mode="v4"``): framewise SDR, ISR, SIR and SAR of source images.

Music separation is scored by the SiSEC/MUSDB community with ``museval.evaluate(references,
estimates, win, hop, mode="v4")``; :func:`bss_eval_v4` computes the same numbers. Every channel of
a source is its *image*; the allowed distortion is a multichannel FIR filter (``filter_length``
taps, every reference channel to every estimate channel) that, unlike BSS Eval v3, is fitted
**once over the whole signal** and then applied frame by frame.

Shapes follow demix's convention, channels before samples: references and estimates are
``(n_targets, n_channels, n_samples)`` (museval's are ``(n_targets, n_samples, n_channels)``); a
2-D array is ``(n_targets, n_samples)`` mono images. Estimate ``j`` is scored against reference
``j`` (no permutation search, as in ``museval.evaluate``).

How it differs from museval's code, not from its numbers: the correlations come from block FFTs
(:mod:`demix.metrics`), the Gram matrix of the delayed references is factorised once (Cholesky)
and shared by all estimates, and each frame's projections are convolutions done by FFT for all
channels at once, so the cost is one factorisation plus a few FFTs per frame.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.linalg

from demix.errors import ParameterError

# Private helpers of the v3 implementation, shared rather than duplicated.
from demix.metrics import MAX_GRAM, REL_FLOOR, block_toeplitz, db_ratio, real_array

__all__ = ["METRICS", "V4Scores", "bss_eval_v4"]

METRICS = ("sdr", "isr", "sir", "sar")
# Output samples per FFT block when a frame is long: bounds memory for whole-signal frames.
_BLOCK = 1 << 16


@dataclass(frozen=True)
class V4Scores:
    """Framewise BSS Eval v4 scores.

    Attributes
    ----------
    sdr, isr, sir, sar : ndarray, (n_targets, n_frames)
        Signal to distortion, image to spatial distortion, source to interference and sources to
        artifacts ratios in dB; NaN in every frame where any reference or any estimate is silent.
    frame_starts : ndarray of int, (n_frames,)
        First sample of each frame.
    frame_length : int
        Samples per frame: the window, or the whole signal when the window is not shorter.
    """

    sdr: np.ndarray
    isr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    frame_starts: np.ndarray
    frame_length: int

    def medians(self) -> dict[str, np.ndarray]:
        """Median over frames of each metric, ignoring NaN frames (museval's track score).

        Returns
        -------
        dict of str to ndarray, (n_targets,)
            Keys ``"sdr"``, ``"isr"``, ``"sir"``, ``"sar"``; NaN for a target with no scored
            frame. Same as museval's ``TrackStore`` aggregation (``np.nanmedian``).
        """
        out = {}
        for name in METRICS:
            values = getattr(self, name)
            with warnings.catch_warnings():  # an all-NaN row is a legitimate NaN median
                warnings.simplefilter("ignore", RuntimeWarning)
                out[name] = np.nanmedian(values, axis=1) if values.shape[1] else np.full(len(values), np.nan)
        return out


def bss_eval_v4(
    references: np.ndarray,
    estimates: np.ndarray,
    *,
    window: int,
    hop: int,
    filter_length: int = 512,
) -> V4Scores:
    r"""BSS Eval v4 of source images on successive frames, with time-invariant distortion filters.

    For target :math:`j` with reference image :math:`s_j` and estimate :math:`\hat s_j` (all
    channels), the least-squares filters are fitted once on the whole signal,

    .. math::

        C = \arg\min_C \bigl\|\hat s_j - \textstyle\sum_{i, c} C_{ic} * s_{ic}\bigr\|^2,\qquad
        C^{(j)} = \arg\min_C \bigl\|\hat s_j - \textstyle\sum_{c} C_{c} * s_{jc}\bigr\|^2,

    (every reference channel to every estimate channel, delays :math:`0 \dots L-1`; normal
    equations :math:`(G + \epsilon I) C = D` as in museval). In each frame, with :math:`s`,
    :math:`\hat s` the frame's samples (zero-padded by :math:`L-1`), :math:`P_j = C^{(j)} * s_j`
    and :math:`P = C * \mathbf s` the frame's references filtered by those fixed filters,

    .. math::

        \mathrm{SDR} = 10\log_{10}\frac{\|s_j\|^2}{\|\hat s - s_j\|^2},\quad
        \mathrm{ISR} = 10\log_{10}\frac{\|s_j\|^2}{\|P_j - s_j\|^2},\quad
        \mathrm{SIR} = 10\log_{10}\frac{\|P_j\|^2}{\|P - P_j\|^2},\quad
        \mathrm{SAR} = 10\log_{10}\frac{\|P\|^2}{\|\hat s - P\|^2},

    norms summed over channels. This is ``museval.evaluate(references, estimates, win=window,
    hop=hop, mode="v4")`` (``museval.metrics.bss_eval`` with ``framewise_filters=False``,
    ``bsseval_sources_version=False``, no permutation), number for number.

    Parameters
    ----------
    references : ndarray, (n_targets, n_channels, n_samples) or (n_targets, n_samples)
        True source images, e.g. the stereo stems of a song. Channels come before samples
        (transpose museval-style ``(n_targets, n_samples, n_channels)`` arrays).
    estimates : ndarray, same shape as ``references``
        Estimated images; estimate ``j`` is scored against reference ``j``.
    window, hop : int
        Frame length and frame step in samples (museval's default: one second of each, i.e.
        ``int(1.0 * rate)``). Frame ``k`` covers samples ``[k hop, k hop + window)`` for
        ``k < floor((n_samples - window + hop) / hop)``; the samples after the last whole frame are
        not scored. A window not shorter than the signal gives one frame: the whole signal.
    filter_length : int, default 512
        Taps :math:`L` of the allowed distortion filters.

    Returns
    -------
    V4Scores
        ``(n_targets, n_frames)`` arrays; :meth:`V4Scores.medians` gives museval's per-target
        median. Edge cases:

        * a frame in which any reference or any estimate is silent (all channels all-zero) is NaN
          for every target, as in museval (a ``UserWarning`` counts such frames). museval tests
          the sum over channels, so it would also call an exactly anti-phase stereo frame silent.
          A reference or estimate that is silent throughout makes every score NaN (museval raises
          ``ValueError``);
        * with a single target the SIR is ``+inf`` (no interference by construction, as museval);
        * error energies below ``1e-13`` of the frame's estimate energy are round-off and are
          floored there, so a perfect estimate scores about +130 dB (museval: SDR ``+inf``, the
          others round-off values beyond +200 dB), like :func:`demix.metrics.bss_eval_sources`.

    Raises
    ------
    ParameterError
        Arrays that are not 2-D/3-D, empty, non-finite or of different shapes; a ``window`` or
        ``hop`` that is not a positive integer; too many ``n_targets * n_channels *
        filter_length`` delayed references for the Gram matrix (at most 16384).

    References
    ----------
    .. [1] A. Liutkus, F.-R. Stöter, N. Ito, "The 2018 Signal Separation Evaluation Campaign",
       LVA/ICA 2018, LNCS 10891, pp. 293-305 (BSS Eval v4, ``museval``).
    .. [2] E. Vincent, R. Gribonval, C. Févotte, "Performance measurement in blind audio source
       separation", IEEE Trans. Audio, Speech, Lang. Process. 14(4), 1462-1469, 2006.
    """
    ref, est = _validate(references, estimates)
    window = _positive_int(window, "--window", "the frame length in samples")
    hop = _positive_int(hop, "--hop", "the frame step in samples")
    flen = _positive_int(filter_length, "filter_length", "the number of distortion filter taps")
    n_targets, n_chan, n_samples = ref.shape
    if n_targets * n_chan * flen > MAX_GRAM:
        raise ParameterError(
            f"{n_targets} targets x {n_chan} channels x filter_length {flen} = "
            f"{n_targets * n_chan * flen} delayed references: the Gram matrix would need "
            f"{(n_targets * n_chan * flen) ** 2 * 8 / 2**30:.1f} GiB; at most {MAX_GRAM} are supported"
        )
    if window < n_samples:
        n_frames, length = (n_samples - window + hop) // hop, window
    else:
        n_frames, length = 1, n_samples
    starts = np.arange(n_frames, dtype=np.int64) * hop
    scores = np.full((4, n_targets, n_frames), np.nan)

    silent = _silent(ref) | _silent(est)  # (n_targets,)
    if silent.any():
        warnings.warn(
            f"silent (all-zero) references or estimates for targets {np.flatnonzero(silent).tolist()}: "
            "every frame is NaN",
            UserWarning,
            stacklevel=2,
        )
        return _scores(scores, starts, length)

    filters = _distortion_filters(ref.reshape(-1, n_samples), est.reshape(-1, n_samples), n_targets, flen)
    nfft = scipy.fft.next_fast_len(min(length + flen - 1, _BLOCK) + flen - 1, real=True)
    filters_f = scipy.fft.rfft(filters, n=nfft, axis=-1)
    n_silent = 0
    for k, start in enumerate(starts):
        frame = slice(int(start), int(start) + length)
        if (_silent(ref[:, :, frame]) | _silent(est[:, :, frame])).any():
            n_silent += 1
            continue
        scores[:, :, k] = _frame_scores(ref[:, :, frame], est[:, :, frame], filters_f, nfft, flen)
    if n_silent:
        warnings.warn(
            f"{n_silent} of {n_frames} frames contain a silent (all-zero) reference or estimate; "
            "their scores are NaN for every target",
            UserWarning,
            stacklevel=2,
        )
    return _scores(scores, starts, length)


# --------------------------------------------------------------------------------------------
# private helpers
# --------------------------------------------------------------------------------------------


def _distortion_filters(ref: np.ndarray, est: np.ndarray, n_targets: int, flen: int) -> np.ndarray:
    """Time-invariant projection filters of every estimate channel, fitted on the whole signal.

    ``ref`` and ``est`` are ``(n_targets * n_channels, n_samples)``, target-major. Returns
    ``H`` of shape ``(n_rows, 2 n_rows, flen)`` with ``n_rows = n_targets * n_channels``:
    ``H[r, e]`` filters reference row ``r`` into the projection of estimate row ``e`` onto all
    references (``P``), and ``H[r, n_rows + e]`` into its projection onto its own target's
    references only (``P_j``; zero for ``r`` outside that target).

    A reference channel that is an exact multiple of another channel of the same target (a mono
    stem stored as stereo) adds nothing to the spans, only a singular Gram matrix: it is left out
    of the least squares (its filters are zero), which changes no projection.
    """
    n_rows = ref.shape[0]
    n_chan = n_rows // n_targets
    keep = _independent_rows(ref, n_targets)
    n_keep = keep.size
    corr = _lag_correlations(ref, keep, est, flen - 1)
    G = block_toeplitz(corr[:, :n_keep], flen)  # (n_keep flen, n_keep flen), rows (r, delay)
    G[np.diag_indices_from(G)] += np.finfo(np.float64).eps  # museval solves (G + eps I) C = D
    D = corr[:, n_keep:, flen - 1 :].transpose(0, 2, 1).reshape(n_keep * flen, n_rows)

    H = np.zeros((n_rows, 2 * n_rows, flen))
    H[keep, :n_rows] = _solve_gram(G, D).reshape(n_keep, flen, n_rows).transpose(0, 2, 1)
    for j in range(n_targets):
        cols = slice(n_rows + j * n_chan, n_rows + (j + 1) * n_chan)
        mine = np.flatnonzero(keep // n_chan == j)  # positions in ``keep`` of target j's rows
        if n_targets == 1:  # the same system: reuse it, so the interference is exactly zero
            H[:, cols] = H[:, :n_rows]
            continue
        blk = (mine[:, None] * flen + np.arange(flen)).ravel()
        Cj = _solve_gram(G[np.ix_(blk, blk)], D[blk, j * n_chan : (j + 1) * n_chan])
        H[keep[mine], cols] = Cj.reshape(mine.size, flen, n_chan).transpose(0, 2, 1)
    return H


def _independent_rows(ref: np.ndarray, n_targets: int) -> np.ndarray:
    """Indices of the reference rows to keep: all but exact multiples of an earlier channel of
    the same target (relative residual energy below 1e-24, i.e. equal to float round-off)."""
    n_chan = ref.shape[0] // n_targets
    keep = []
    for j in range(n_targets):
        kept: list[int] = []
        for r in range(j * n_chan, (j + 1) * n_chan):
            x = ref[r]
            energy = float(x @ x)
            redundant = energy == 0.0 and bool(kept)
            for k in kept:
                if redundant:
                    break
                y = ref[k]
                residual = x - (float(x @ y) / float(y @ y)) * y
                redundant = float(residual @ residual) <= 1e-24 * energy
            if not redundant:
                kept.append(r)
        keep += kept
    return np.asarray(keep, dtype=np.int64)


def _lag_correlations(ref: np.ndarray, rows: np.ndarray, est: np.ndarray, max_lag: int) -> np.ndarray:
    """``out[i, j, max_lag + k] = sum_m x[i, m] y[j, m + k]`` for ``|k| <= max_lag``, where
    ``x = ref[rows]`` and ``y`` stacks ``ref[rows]`` then ``est`` (zero outside ``[0, n)``), by
    blocks whose cross-spectra are summed before one inverse FFT (no copy of the signals).

    Each block of ``x`` meets the stretch of ``y`` it overlaps, extended by ``max_lag`` on each
    side, in an FFT long enough that no kept lag wraps around; inverse FFTs being linear, the
    blocks' spectra add up. Short FFTs (16384 points for 512 taps) keep both the transforms and
    the accumulator cheap; the extension costs ``2 max_lag / nfft`` more work.
    """
    n_x, n_y, n = rows.size, rows.size + est.shape[0], ref.shape[1]
    nfft = scipy.fft.next_fast_len(max(32 * max_lag, min(n + 2 * max_lag, 1 << 14)), real=True)
    step = nfft - 2 * max_lag
    acc = np.zeros((n_x, n_y, nfft // 2 + 1), dtype=np.complex128)
    xbuf, ybuf = np.zeros((n_x, nfft)), np.zeros((n_y, nfft))
    for start in range(0, n, step):
        stop = min(start + step, n)
        xbuf.fill(0.0)
        xbuf[:, : stop - start] = ref[rows, start:stop]
        lo, a, b = start - max_lag, max(start - max_lag, 0), min(stop + max_lag, n)
        ybuf.fill(0.0)
        ybuf[: rows.size, a - lo : b - lo] = ref[rows, a:b]
        ybuf[rows.size :, a - lo : b - lo] = est[:, a:b]
        X, Y = scipy.fft.rfft(xbuf, axis=1).conj(), scipy.fft.rfft(ybuf, axis=1)
        for i in range(n_x):
            acc[i] += X[i] * Y
    # circular lag k + max_lag of the extended window is linear lag k
    return scipy.fft.irfft(acc, n=nfft, axis=-1)[..., : 2 * max_lag + 1]


def _solve_gram(G: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``G X = B`` for a regularised Gram matrix: Cholesky, else LU, else least squares.

    museval uses ``np.linalg.solve`` (LU) and least squares when that fails; Cholesky gives the
    same solution in half the work whenever ``G`` is numerically positive definite.
    """
    try:
        factor = scipy.linalg.cho_factor(G, check_finite=False)
        return scipy.linalg.cho_solve(factor, B, check_finite=False)
    except np.linalg.LinAlgError:  # round-off made a tiny eigenvalue negative
        pass
    try:
        with warnings.catch_warnings():  # ill-conditioned is normal here (band-limited stems)
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            return scipy.linalg.solve(G, B, check_finite=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(G, B, check_finite=False)[0]


def _frame_scores(ref: np.ndarray, est: np.ndarray, Hf: np.ndarray, nfft: int, flen: int) -> np.ndarray:
    """SDR, ISR, SIR, SAR ``(4, n_targets)`` of one frame ``(n_targets, n_channels, width)``.

    The frame's references are filtered by the filters whose ``nfft``-point spectra are ``Hf``
    (see :func:`_distortion_filters`): linear convolution, ``width + flen - 1`` output samples,
    by overlap-save FFT blocks of ``nfft - flen + 1`` outputs. The energies are accumulated in
    the time domain, so differences of nearly equal signals stay exact.
    """
    n_targets, n_chan, width = ref.shape
    n_rows = n_targets * n_chan
    s, e = ref.reshape(n_rows, width), est.reshape(n_rows, width)
    n_out = width + flen - 1
    step = nfft - (flen - 1)
    # energies per row: |s|^2, |e - s|^2, |Pj - s|^2, |Pj|^2, |P - Pj|^2, |P|^2, |e - P|^2
    acc = np.zeros((7, n_rows))
    acc[0] = np.einsum("ij,ij->i", s, s)
    diff = e - s
    acc[1] = np.einsum("ij,ij->i", diff, diff)
    buf_s = np.zeros((n_rows, nfft))
    for b0 in range(0, n_out, step):
        b1 = min(b0 + step, n_out)
        # buffer index i holds frame sample b0 - (flen - 1) + i; zero outside the frame
        lo, hi = max(b0 - (flen - 1), 0), min(b1, width)
        buf_s.fill(0.0)
        buf_s[:, lo - (b0 - (flen - 1)) : hi - (b0 - (flen - 1))] = s[:, lo:hi]
        out = scipy.fft.irfft(_filter_spectra(Hf, scipy.fft.rfft(buf_s, axis=-1), n_chan), n=nfft, axis=-1)
        valid = slice(flen - 1, flen - 1 + b1 - b0)
        P, Pj = out[:n_rows, valid], out[n_rows:, valid]
        s_blk = buf_s[:, valid]
        e_blk = np.zeros_like(s_blk)
        if b0 < width:
            e_blk[:, : min(b1, width) - b0] = e[:, b0 : min(b1, width)]
        for idx, x in enumerate((Pj - s_blk, Pj, P - Pj, P, e_blk - P), start=2):
            acc[idx] += np.einsum("ij,ij->i", x, x)
    energy = acc.reshape(7, n_targets, n_chan).sum(axis=2)  # sum over channels
    e_energy = np.einsum("tcn,tcn->t", est, est)
    floor = REL_FLOOR * e_energy
    interf = energy[4] if n_targets == 1 else np.maximum(energy[4], floor)
    return np.stack(
        [
            db_ratio(energy[0], np.maximum(energy[1], floor)),
            db_ratio(energy[0], np.maximum(energy[2], floor)),
            db_ratio(energy[3], interf),
            db_ratio(energy[5], np.maximum(energy[6], floor)),
        ]
    )


def _filter_spectra(Hf: np.ndarray, S: np.ndarray, n_chan: int) -> np.ndarray:
    """Spectra of ``[P; P_j]`` from the references' spectra ``S`` (n_rows, F): every reference
    row feeds ``P``, only a target's own rows feed its ``P_j`` (the rest of ``Hf`` is zero)."""
    n_rows = S.shape[0]
    out = np.zeros((2 * n_rows, S.shape[1]), dtype=np.complex128)
    for r in range(n_rows):
        own = slice(n_rows + r // n_chan * n_chan, n_rows + (r // n_chan + 1) * n_chan)
        out[:n_rows] += Hf[r, :n_rows] * S[r]
        out[own] += Hf[r, own] * S[r]
    return out


def _scores(values: np.ndarray, starts: np.ndarray, length: int) -> V4Scores:
    sdr, isr, sir, sar = values
    return V4Scores(sdr=sdr, isr=isr, sir=sir, sar=sar, frame_starts=starts, frame_length=length)


def _silent(x: np.ndarray) -> np.ndarray:
    """True for each target whose channels are all zero, ``(n_targets,)``."""
    return ~np.any(x, axis=(1, 2))


def _validate(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _as_images(references, "references"), _as_images(estimates, "estimates")
    if ref.shape != est.shape:
        raise ParameterError(
            f"references and estimates must have the same (targets, channels, samples) shape, got "
            f"{ref.shape} and {est.shape}; match channels and pad or trim the estimates to the "
            "references' length first"
        )
    return ref, est


def _as_images(x: np.ndarray, name: str) -> np.ndarray:
    """Check one array and view it as float64 ``(n_targets, n_channels, n_samples)``."""
    arr = real_array(x, name, (2, 3), "(n_targets, n_channels, n_samples) or (n_targets, n_samples)")
    return arr[:, np.newaxis, :] if arr.ndim == 2 else arr


def _positive_int(value: int, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} ({what}) must be a positive integer, got {value!r}")
    return int(value)
