"""Separation quality: BSS Eval v3 (SDR, SIR, SAR), SI-SDR, the Amari index and source matching.

Everything here is pure numpy/scipy on arrays of shape ``(n_sources, n_samples)`` (a 1-D array is
one source); no file IO, no printing. Scores are in dB.

BSS Eval v3 follows ``mir_eval.separation`` (itself the MATLAB BSS_EVAL 3.0) number for number,
but computes the pairwise decomposition of every estimate against every reference with one shared
Gram matrix and one Cholesky factorisation (Levinson recursion for the per-reference Toeplitz
systems), from correlations taken by block FFT, so memory stays linear in the signal length and
the cost is a small fraction of mir_eval's.

Silent (all-zero) sources never raise: the affected scores are NaN and a ``UserWarning`` says which.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.linalg.blas

from demix.errors import ParameterError

__all__ = [
    "CEILING_DB",
    "PairwiseScores",
    "SourceScores",
    "StreamedBSSEval",
    "amari_index",
    "bss_eval_framewise",
    "bss_eval_pairwise",
    "bss_eval_sources",
    "match_sources",
    "si_sdr",
]

# Samples per FFT block when correlating long signals: bounds memory, keeps FFTs cache-friendly.
_BLOCK = 1 << 16
# Error energies come from quadratic forms in the Gram matrix, exact only to ~1e-14 of the
# estimate's energy; below this floor they are round-off, so scores saturate near +130 dB
# instead of jumping between ~140 dB and +inf for a perfect estimate.
REL_FLOOR = 1e-13
#: Highest score reported by ``demix eval`` (dB): what that floor gives a perfect estimate.
CEILING_DB = float(-10.0 * np.log10(REL_FLOOR))
# Largest Gram matrix (n_ref * filter_length) solved: 2 GiB, 32 references at 512 taps.
MAX_GRAM = 16384


@dataclass(frozen=True)
class PairwiseScores:
    """Every estimate scored against every reference taken as its target.

    Attributes
    ----------
    sdr, sir, sar : ndarray, (n_est, n_ref)
        Entry ``[j, i]`` scores estimate ``j`` with reference ``i`` as its target, in dB.
        NaN where estimate ``j`` or reference ``i`` is silent.
    """

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray


class SourceScores(NamedTuple):
    """Scores per reference, unpackable like mir_eval's ``(sdr, sir, sar, perm)``.

    Attributes
    ----------
    sdr, sir, sar : ndarray, (n_ref,) or (n_ref, n_frames)
        Scores in dB of the estimate matched to each reference; NaN where no estimate is matched,
        where a source is silent, or (framewise) in a frame where any source is silent.
    perm : ndarray of int, same shape
        ``perm[i]`` is the index of the estimate matched to reference ``i``; -1 where none is
        (fewer estimates than references, or a frame with a silent source).
    """

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    perm: np.ndarray


# --------------------------------------------------------------------------------------------
# BSS Eval v3
# --------------------------------------------------------------------------------------------


def bss_eval_pairwise(
    reference: np.ndarray, estimate: np.ndarray, *, filter_length: int = 512
) -> PairwiseScores:
    r"""SDR, SIR and SAR of every estimate against every reference (BSS Eval v3).

    An estimate :math:`\hat s_j` (zero-padded to :math:`T + L - 1` samples) is decomposed with
    orthogonal projections onto spans of delayed references, delays :math:`0 \dots L-1`:

    .. math::

        s_\mathrm{target} = P_{s_i}\hat s_j, \quad
        e_\mathrm{interf} = P_{\mathbf s}\hat s_j - P_{s_i}\hat s_j, \quad
        e_\mathrm{artif} = \hat s_j - P_{\mathbf s}\hat s_j,

    where :math:`P_{s_i}` projects onto the delays of reference :math:`i` and
    :math:`P_{\mathbf s}` onto the delays of all references; then

    .. math::

        \mathrm{SDR} = 10\log_{10}\frac{\|s_\mathrm{target}\|^2}
                                        {\|e_\mathrm{interf}+e_\mathrm{artif}\|^2},\quad
        \mathrm{SIR} = 10\log_{10}\frac{\|s_\mathrm{target}\|^2}{\|e_\mathrm{interf}\|^2},\quad
        \mathrm{SAR} = 10\log_{10}\frac{\|s_\mathrm{target}+e_\mathrm{interf}\|^2}
                                        {\|e_\mathrm{artif}\|^2}.

    With :math:`G` the Gram matrix of the delayed references, :math:`D` their inner products
    with the estimate and :math:`c = G^{-1}D`, every energy is a quadratic form
    (:math:`\|P_{\mathbf s}\hat s\|^2 = c^\top G c`, :math:`\|\hat s - P_{\mathbf s}\hat s\|^2 =
    \|\hat s\|^2 - 2D^\top c + c^\top G c`), exactly what mir_eval's time-domain
    ``_bss_decomp_mtifilt`` / ``_bss_source_crit`` evaluate, without building the signals.
    :math:`G` is factorised once (Cholesky; least squares if singular, like mir_eval) and shared
    by all estimates.

    Parameters
    ----------
    reference : ndarray, (n_ref, n_samples) or (n_samples,)
        True sources.
    estimate : ndarray, (n_est, n_samples) or (n_samples,)
        Estimated sources, same length; ``n_est`` may differ from ``n_ref``.
    filter_length : int, default 512
        Number of taps :math:`L` of the allowed time-invariant distortion filter.

    Returns
    -------
    PairwiseScores
        ``(n_est, n_ref)`` matrices. The SIR with a single (non-silent) reference is ``+inf``,
        as in mir_eval. Error energies below ``1e-13`` of the estimate's energy are round-off
        and are floored there, so a perfect estimate scores about +130 dB (mir_eval: ~+280 dB,
        also round-off). Silent sources give NaN with a ``UserWarning``; a silent reference
        spans nothing, so the other references are scored as if it were absent.

    Raises
    ------
    ParameterError
        Arrays that are empty, not 1-D/2-D, non-finite, or of different lengths.

    References
    ----------
    .. [1] E. Vincent, R. Gribonval, C. Févotte, "Performance measurement in blind audio source
       separation", IEEE Trans. Audio, Speech, Lang. Process. 14(4), 1462-1469, 2006.
    .. [2] C. Raffel et al., "mir_eval: a transparent implementation of common MIR metrics",
       ISMIR 2014 (``mir_eval.separation``).
    """
    ref, est = _validate_pair(reference, estimate)
    flen = _validate_filter_length(filter_length, ref.shape[0])
    _warn_silent(ref, est, stacklevel=2)
    return _pairwise(ref, est, flen)


def bss_eval_sources(
    reference: np.ndarray, estimate: np.ndarray, *, filter_length: int = 512
) -> SourceScores:
    """BSS Eval v3 per reference, estimates matched to references by maximal total SIR.

    A drop-in for ``mir_eval.separation.bss_eval_sources(reference, estimate)``: mir_eval picks
    the permutation with the largest mean SIR by trying them all; the Hungarian algorithm on the
    pairwise SIR matrix (:func:`match_sources`) finds the same one in polynomial time. Unlike
    mir_eval, the numbers of estimates and references may differ, and silent sources give NaN
    (with a warning) instead of an error.

    Parameters
    ----------
    reference : ndarray, (n_ref, n_samples) or (n_samples,)
    estimate : ndarray, (n_est, n_samples) or (n_samples,)
    filter_length : int, default 512
        Taps of the allowed distortion filter (see :func:`bss_eval_pairwise`).

    Returns
    -------
    SourceScores
        ``sdr, sir, sar, perm`` of shape ``(n_ref,)``: ``perm[i]`` is the estimate matched to
        reference ``i`` (-1 and NaN scores when there are fewer estimates than references).

    References
    ----------
    .. [1] E. Vincent, R. Gribonval, C. Févotte, "Performance measurement in blind audio source
       separation", IEEE Trans. Audio, Speech, Lang. Process. 14(4), 1462-1469, 2006.
    """
    ref, est = _validate_pair(reference, estimate)
    flen = _validate_filter_length(filter_length, ref.shape[0])
    _warn_silent(ref, est, stacklevel=2)
    scores = _pairwise(ref, est, flen)
    est_idx, ref_idx = match_sources(scores.sir)
    n_ref = ref.shape[0]
    perm = np.full(n_ref, -1, dtype=np.int64)
    perm[ref_idx] = est_idx
    picked = [np.full(n_ref, np.nan) for _ in range(3)]
    for out, full in zip(picked, (scores.sdr, scores.sir, scores.sar), strict=True):
        out[ref_idx] = full[est_idx, ref_idx]
    return SourceScores(picked[0], picked[1], picked[2], perm)


def bss_eval_framewise(
    reference: np.ndarray,
    estimate: np.ndarray,
    *,
    window: int,
    hop: int,
    filter_length: int = 512,
) -> SourceScores:
    """BSS Eval v3 on successive frames, estimate ``i`` scored against reference ``i``.

    Matches ``mir_eval.separation.bss_eval_sources_framewise(..., compute_permutation=False)``:
    frame ``k`` covers samples ``[k * hop, k * hop + window)`` for
    ``k < floor((n_samples - window + hop) / hop)``; a frame where any reference or estimate is
    silent gets NaN for every source (and perm -1). With fewer than two frames the whole signal
    is scored as one frame, as mir_eval does.

    Parameters
    ----------
    reference, estimate : ndarray, (n_sources, n_samples) or (n_samples,)
        Same shape: no matching is done, row ``i`` of each belong together.
    window, hop : int
        Frame length and frame step in samples.
    filter_length : int, default 512
        Taps of the allowed distortion filter.

    Returns
    -------
    SourceScores
        Arrays of shape ``(n_sources, n_frames)``; ``perm[i, k]`` is ``i`` (or -1 in a frame with
        a silent source).

    References
    ----------
    .. [1] E. Vincent, R. Gribonval, C. Févotte, "Performance measurement in blind audio source
       separation", IEEE Trans. Audio, Speech, Lang. Process. 14(4), 1462-1469, 2006.
    """
    ref, est = _validate_pair(reference, estimate)
    if ref.shape[0] != est.shape[0]:
        raise ParameterError(
            f"framewise evaluation pairs estimate i with reference i, so it needs as many "
            f"estimates as references; got {est.shape[0]} estimates and {ref.shape[0]} references"
        )
    flen = _validate_filter_length(filter_length, ref.shape[0])
    window = _validate_positive_int(window, "window")
    hop = _validate_positive_int(hop, "hop")
    n_src, n_samples = ref.shape
    n_frames = (n_samples - window + hop) // hop
    if n_frames < 2:
        _warn_silent(ref, est, stacklevel=2)
        frames = [slice(0, n_samples)]
    else:
        frames = [slice(k * hop, k * hop + window) for k in range(n_frames)]
    out = [np.full((n_src, len(frames)), np.nan) for _ in range(3)]
    perm = np.full((n_src, len(frames)), -1, dtype=np.int64)
    diag = np.arange(n_src)
    n_silent = 0
    for k, frame in enumerate(frames):
        r, e = ref[:, frame], est[:, frame]
        if len(frames) > 1 and (_silent_rows(r).any() or _silent_rows(e).any()):
            n_silent += 1
            continue
        scores = _pairwise(r, e, flen)
        for o, full in zip(out, (scores.sdr, scores.sir, scores.sar), strict=True):
            o[:, k] = full[diag, diag]
        perm[:, k] = diag
    if n_silent:
        warnings.warn(
            f"{n_silent} of {len(frames)} frames contain a silent (all-zero) reference or "
            "estimate; their scores are NaN",
            UserWarning,
            stacklevel=2,
        )
    return SourceScores(out[0], out[1], out[2], perm)


def match_sources(sir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match estimates to references maximising the total SIR (Hungarian algorithm).

    Parameters
    ----------
    sir : ndarray, (n_est, n_ref)
        Pairwise scores, larger is better (e.g. :attr:`PairwiseScores.sir`). NaN and ``-inf``
        count as worse than any finite score, ``+inf`` as better.

    Returns
    -------
    est_idx, ref_idx : ndarray of int, (min(n_est, n_ref),)
        Matched pairs, sorted by reference index: estimate ``est_idx[k]`` goes with reference
        ``ref_idx[k]``. With more estimates than references the extra estimates are left out;
        with fewer, some references are.

    Notes
    -----
    Maximising the sum of matched SIRs is mir_eval's criterion (largest mean SIR over all
    permutations) without the factorial search.

    References
    ----------
    .. [1] H. W. Kuhn, "The Hungarian method for the assignment problem", Naval Research
       Logistics Quarterly 2, 83-97, 1955.
    """
    from scipy.optimize import linear_sum_assignment  # lazy: only matching needs it

    score = np.asarray(sir, dtype=np.float64)
    if score.ndim != 2:
        raise ParameterError(f"sir must be a 2-D (n_est, n_ref) matrix, got shape {score.shape}")
    if score.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    finite = np.isfinite(score)
    lo, hi = (score[finite].min(), score[finite].max()) if finite.any() else (0.0, 0.0)
    # A margin larger than any difference of sums of finite entries keeps the order:
    # more +inf entries always win, more NaN/-inf entries always lose.
    margin = (hi - lo + 1.0) * (min(score.shape) + 1)
    safe = np.where(finite, score, lo - margin)
    safe[score == np.inf] = hi + margin
    rows, cols = linear_sum_assignment(safe, maximize=True)
    order = np.argsort(cols)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


# --------------------------------------------------------------------------------------------
# SI-SDR and the Amari index
# --------------------------------------------------------------------------------------------


def si_sdr(reference: np.ndarray, estimate: np.ndarray, *, zero_mean: bool = False) -> float | np.ndarray:
    r"""Scale-invariant signal-to-distortion ratio, row by row.

    .. math::

        \alpha = \frac{\langle \hat s, s\rangle}{\|s\|^2},\qquad
        \mathrm{SI\text{-}SDR} = 10\log_{10}\frac{\|\alpha s\|^2}{\|\hat s - \alpha s\|^2}.

    Invariant to any non-zero scaling (sign included) of the estimate.

    Parameters
    ----------
    reference, estimate : ndarray, (n_sources, n_samples) or (n_samples,)
        Same shape; row ``i`` of the estimate is scored against row ``i`` of the reference.
    zero_mean : bool, default False
        Subtract each row's mean first. Off by default, so a DC offset in the estimate counts as
        distortion (the choice of fast_bss_eval and torchmetrics); Le Roux et al. assume
        zero-mean signals, which audio normally is anyway.

    Returns
    -------
    float or ndarray, (n_sources,)
        SI-SDR in dB: a float for 1-D input. ``+inf`` for an exact scaled copy; NaN (with a
        ``UserWarning``) where the reference or the estimate is silent.

    References
    ----------
    .. [1] J. Le Roux, S. Wisdom, H. Erdogan, J. R. Hershey, "SDR - half-baked or well done?",
       ICASSP 2019, pp. 626-630.
    """
    ref_in, est_in = np.asarray(reference), np.asarray(estimate)
    if ref_in.shape != est_in.shape:
        raise ParameterError(
            f"reference and estimate must have the same shape, got {ref_in.shape} and {est_in.shape}"
        )
    ref, est = _validate_pair(ref_in, est_in)
    if zero_mean:
        ref = ref - ref.mean(axis=1, keepdims=True)
        est = est - est.mean(axis=1, keepdims=True)
    _warn_silent(ref, est, stacklevel=2)
    out = np.full(ref.shape[0], np.nan)
    for i, (s, e) in enumerate(zip(ref, est, strict=True)):
        energy = float(s @ s)
        if energy == 0.0 or not e.any():
            continue
        alpha = float(e @ s) / energy
        noise = e - alpha * s  # in the time domain: exact even when the noise is tiny
        out[i] = db_ratio(np.array(alpha * alpha * energy), np.array(noise @ noise))[0]
    return float(out[0]) if ref_in.ndim == 1 else out


def amari_index(P: np.ndarray) -> float:
    r"""Normalised Amari index of a global system ``P = W @ A``: 0 for a scaled permutation.

    .. math::

        d(P) = \frac{1}{2n(n-1)}\left[\sum_i\Bigl(\sum_j\frac{|p_{ij}|}{\max_k|p_{ik}|}-1\Bigr)
               + \sum_j\Bigl(\sum_i\frac{|p_{ij}|}{\max_k|p_{kj}|}-1\Bigr)\right] \in [0, 1].

    Parameters
    ----------
    P : ndarray, (n, n)
        Product of the unmixing and the true mixing matrix.

    Returns
    -------
    float
        0 for a perfect separation (any scaled permutation), 1 at worst; 0 when ``n == 1``.
        NaN with a ``UserWarning`` if a row or column of ``P`` is all zeros.

    References
    ----------
    .. [1] S. Amari, A. Cichocki, H. H. Yang, "A new learning algorithm for blind signal
       separation", NIPS 8, 1996.
    """
    M = np.asarray(P, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.size == 0:
        raise ParameterError(f"P must be a non-empty square matrix, got shape {M.shape}")
    if not np.isfinite(M).all():
        raise ParameterError("P contains NaN or infinite values")
    n = M.shape[0]
    if n == 1:
        return 0.0
    M = np.abs(M)
    row_max, col_max = M.max(axis=1), M.max(axis=0)
    if (row_max == 0).any() or (col_max == 0).any():
        warnings.warn(
            "the Amari index is undefined for a matrix with an all-zero row or column; returning NaN",
            UserWarning,
            stacklevel=2,
        )
        return float("nan")
    rows = (M / row_max[:, None]).sum(axis=1) - 1.0
    cols = (M / col_max[None, :]).sum(axis=0) - 1.0
    return float((rows.sum() + cols.sum()) / (2 * n * (n - 1)))


# --------------------------------------------------------------------------------------------
# private helpers
# --------------------------------------------------------------------------------------------


def _pairwise(ref: np.ndarray, est: np.ndarray, flen: int) -> PairwiseScores:
    """BSS Eval v3 decomposition energies of every (estimate, reference) pair, in dB."""
    silent_ref, silent_est = _silent_rows(ref), _silent_rows(est)
    if silent_ref.all() or silent_est.all():
        return _pairwise_from(np.zeros(0), silent_ref, silent_est, np.zeros(0), flen)
    corr = _correlations(ref, est, flen - 1)  # (n_ref, n_ref + n_est, 2L - 1)
    return _pairwise_from(corr, silent_ref, silent_est, np.einsum("ij,ij->i", est, est), flen)


class StreamedBSSEval:
    """BSS Eval v3 of long signals in bounded memory: its statistics accumulate block by block.

    v3 sees the signals only through correlations at lags ``|k| < filter_length`` (references with
    references and with estimates), the estimates' energies and which rows are silent. Feed
    consecutive blocks of references and estimates with :meth:`add`; each block is correlated
    joined to the last ``filter_length - 1`` samples before it, minus the pairs within those, so
    every pair of samples is counted once across block edges. :meth:`pairwise` then gives
    :func:`bss_eval_pairwise`'s scores of the whole signals (the same to round-off: 1e-9 dB on
    ordinary scores). Memory: two blocks and the ``(n_ref, n_ref + n_est, 2L - 1)`` correlations.
    """

    def __init__(self, n_ref: int, n_est: int, *, filter_length: int = 512) -> None:
        self.flen = _validate_filter_length(filter_length, n_ref)
        self.n_ref, self.n_est = n_ref, n_est
        self.corr = np.zeros((n_ref, n_ref + n_est, 2 * self.flen - 1))
        self.energy = np.zeros(n_est)
        self.loud_ref = np.zeros(n_ref, dtype=bool)
        self.loud_est = np.zeros(n_est, dtype=bool)
        self.n_samples = 0
        self._carry = (np.zeros((n_ref, 0)), np.zeros((n_est, 0)))

    def add(self, reference: np.ndarray, estimate: np.ndarray) -> None:
        """Add the next block: ``reference`` ``(n_ref, k)`` and ``estimate`` ``(n_est, k)``."""
        ref, est = _validate_pair(reference, estimate)
        if ref.shape[0] != self.n_ref or est.shape[0] != self.n_est:
            raise ParameterError(
                f"expected blocks of {self.n_ref} references and {self.n_est} estimates, "
                f"got {ref.shape[0]} and {est.shape[0]}"
            )
        max_lag = self.flen - 1
        carry_ref, carry_est = self._carry
        joined_ref = np.concatenate([carry_ref, ref], axis=1)
        joined_est = np.concatenate([carry_est, est], axis=1)
        self.corr += _correlations(joined_ref, joined_est, max_lag)
        if carry_ref.shape[1]:
            self.corr -= _correlations(carry_ref, carry_est, max_lag)
        self.energy += np.einsum("ij,ij->i", est, est)
        self.loud_ref |= ~_silent_rows(ref)
        self.loud_est |= ~_silent_rows(est)
        self.n_samples += ref.shape[1]
        keep = min(max_lag, joined_ref.shape[1])
        self._carry = (joined_ref[:, joined_ref.shape[1] - keep :].copy(),
                       joined_est[:, joined_est.shape[1] - keep :].copy())  # fmt: skip

    def si_sdr(self) -> np.ndarray:
        """:func:`si_sdr` of every estimate against every reference, ``(n_est, n_ref)``, from the
        lag-0 correlations: ``<s, e>^2 / (|s|^2 |e|^2 - <s, e>^2)``. The noise energy is a
        difference here (in memory it is summed in the time domain), so above ~100 dB the two
        differ by round-off; below 60 dB by less than 1e-6 dB."""
        lag0 = self.flen - 1
        ref_energy = np.diagonal(self.corr[:, : self.n_ref, lag0]).copy()
        cross = self.corr[:, self.n_ref :, lag0].T  # (n_est, n_ref): <s_i, e_j>
        target = cross**2 / np.where(ref_energy > 0, ref_energy, np.inf)[None, :]
        out = db_ratio(target, self.energy[:, None] - target).reshape(cross.shape)
        out[:, ~self.loud_ref] = np.nan
        out[~self.loud_est, :] = np.nan
        return out

    def pairwise(self) -> PairwiseScores:
        """:func:`bss_eval_pairwise` of everything added so far."""
        if self.n_samples == 0:
            raise ParameterError("no samples were added")
        silent_ref, silent_est = ~self.loud_ref, ~self.loud_est
        _warn_silent_rows(silent_ref, silent_est, stacklevel=2)
        return _pairwise_from(self.corr, silent_ref, silent_est, self.energy, self.flen)


def _pairwise_from(
    corr: np.ndarray, silent_ref: np.ndarray, silent_est: np.ndarray, est_energy: np.ndarray, flen: int
) -> PairwiseScores:
    """:func:`_pairwise` from the statistics: correlations ``(n_ref, n_ref + n_est, 2L - 1)``
    (:func:`_correlations`), silent rows and the estimates' energies."""
    n_ref, n_est = silent_ref.size, silent_est.size
    shape = (n_est, n_ref)
    sdr, sir, sar = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    active = np.flatnonzero(~silent_ref)
    live = np.flatnonzero(~silent_est)
    if active.size == 0 or live.size == 0:
        return PairwiseScores(sdr, sir, sar)

    G = block_toeplitz(corr[np.ix_(active, active)], flen)  # (nA L, nA L)
    D = corr[np.ix_(active, n_ref + live)][..., flen - 1 :]  # (nA, n_live, L)
    D = D.transpose(0, 2, 1).reshape(active.size * flen, live.size)
    energy = est_energy[live]

    C = _solve_psd(G, D)
    GC = _symm(G, C)
    proj_all = np.sum(C * GC, axis=0)  # ||P_s e||^2 = ||s_target + e_interf||^2
    floor = REL_FLOOR * energy
    artif = energy - 2.0 * np.sum(D * C, axis=0) + proj_all  # ||e - P_s e||^2
    sar_live = db_ratio(proj_all, np.maximum(artif, floor))
    for k, i in enumerate(active):
        blk = slice(k * flen, (k + 1) * flen)
        if active.size == 1:  # P_{s_i} = P_s: reuse, so e_interf is exactly zero
            Ci, GCi = C, GC
        else:
            Ci = _solve_toeplitz(G[blk, blk], D[blk])
            GCi = _symm(G[blk, blk], Ci)
        target = np.sum(Ci * GCi, axis=0)  # ||P_{s_i} e||^2
        distortion = energy - 2.0 * np.sum(D[blk] * Ci, axis=0) + target  # ||e - P_{s_i} e||^2
        delta = C.copy()
        delta[blk] -= Ci
        interf = np.sum(delta * _symm(G, delta), axis=0)  # ||P_s e - P_{s_i} e||^2
        sdr[live, i] = db_ratio(target, np.maximum(distortion, floor))
        # one reference: no interference by construction, +inf as in mir_eval
        sir[live, i] = db_ratio(target, interf if active.size == 1 else np.maximum(interf, floor))
        sar[live, i] = sar_live
    return PairwiseScores(sdr, sir, sar)


def _correlations(ref: np.ndarray, est: np.ndarray, max_lag: int) -> np.ndarray:
    """Correlations of each reference with every reference and estimate at small lags.

    ``out[i, j, max_lag + k] = sum_m ref[i, m] * y[j, m + k]`` for ``|k| <= max_lag``, where
    ``y`` stacks ``ref`` then ``est`` and is zero outside ``[0, n)``. Short signals take one FFT
    of each signal, ``max_lag`` longer than the signal so that no lag wraps around; long ones
    are cut into blocks (see :func:`_blockwise_correlations`) to keep memory bounded.
    """
    n = ref.shape[1]
    if n <= _BLOCK:
        nfft = scipy.fft.next_fast_len(n + max_lag, real=True)
        R = scipy.fft.rfft(ref, n=nfft, axis=1)
        Y = np.concatenate([R, scipy.fft.rfft(est, n=nfft, axis=1)])
        out = np.empty((ref.shape[0], Y.shape[0], 2 * max_lag + 1))
        for i in range(ref.shape[0]):  # one reference at a time bounds the temporaries
            xy = scipy.fft.irfft(R[i].conj() * Y, n=nfft, axis=-1)
            out[i, :, :max_lag] = xy[:, nfft - max_lag :]
            out[i, :, max_lag:] = xy[:, : max_lag + 1]
        return out
    return _blockwise_correlations(ref, (ref, est), max_lag)


def _blockwise_correlations(x: np.ndarray, ys: Sequence[np.ndarray], max_lag: int) -> np.ndarray:
    """Like :func:`_correlations` for ``x`` against the rows of ``ys``, block by block.

    Each block of ``x`` is correlated with the matching stretch of ``y`` extended by ``max_lag``
    on each side, so the FFT size is bounded and no circular wrap-around reaches the kept lags;
    the blocks' contributions add up.
    """
    n = x.shape[1]
    n_y = sum(y.shape[0] for y in ys)
    n_blocks = -(-n // _BLOCK)
    step = -(-n // n_blocks)
    nfft = scipy.fft.next_fast_len(step + 2 * max_lag, real=True)
    out = np.zeros((x.shape[0], n_y, 2 * max_lag + 1))
    ybuf = np.empty((n_y, nfft))
    for start in range(0, n, step):
        stop = min(start + step, n)
        X = scipy.fft.rfft(x[:, start:stop], n=nfft, axis=1)
        lo, a, b = start - max_lag, max(start - max_lag, 0), min(stop + max_lag, n)
        ybuf.fill(0.0)
        row = 0
        for y in ys:
            ybuf[row : row + y.shape[0], a - lo : b - lo] = y[:, a:b]
            row += y.shape[0]
        Y = scipy.fft.rfft(ybuf, axis=1)
        for i in range(x.shape[0]):
            out[i] += scipy.fft.irfft(X[i].conj() * Y, n=nfft, axis=-1)[:, : 2 * max_lag + 1]
    return out


def block_toeplitz(corr: np.ndarray, flen: int) -> np.ndarray:
    """Gram matrix ``G[(i, a), (j, b)] = r_ij[a - b]`` of references delayed by ``a, b < flen``.

    ``corr`` is ``(n, n, 2 flen - 1)`` with lag ``k`` at index ``flen - 1 + k``. Since
    ``r_ij[k] = r_ji[-k]``, the two FFT estimates are averaged so that ``G`` is exactly symmetric.
    """
    n = corr.shape[0]
    sym = 0.5 * (corr + corr.transpose(1, 0, 2)[..., ::-1])
    G = np.empty((n * flen, n * flen))
    for i in range(n):
        for j in range(n):
            # window p of the reversed lags holds r_ij[flen - 1 - p - b]; flipping p gives a - b
            windows = np.lib.stride_tricks.sliding_window_view(sym[i, j, ::-1], flen)
            G[i * flen : (i + 1) * flen, j * flen : (j + 1) * flen] = windows[::-1]
    return G


def _solve_toeplitz(T: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``T X = B`` for a symmetric Toeplitz Gram matrix by Levinson recursion, O(n^2)."""
    try:
        return scipy.linalg.solve_toeplitz(T[:, 0], B, check_finite=False)
    except np.linalg.LinAlgError:  # a singular leading minor: the general route
        return _solve_psd(T, B)


def _solve_psd(G: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``G X = B`` for a Gram matrix: Cholesky, or least squares when it is singular."""
    try:
        factor = scipy.linalg.cho_factor(G, check_finite=False)
    except np.linalg.LinAlgError:  # singular: minimum-norm solution, numpy's default cutoff
        cond = np.finfo(np.float64).eps * max(G.shape)
        return scipy.linalg.lstsq(G, B, cond=cond, check_finite=False)[0]
    return scipy.linalg.cho_solve(factor, B, check_finite=False)


def _symm(G: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``G @ B`` for symmetric ``G`` through scipy's BLAS, the library that also factorises ``G``.

    numpy and scipy wheels each bundle an OpenBLAS with its own thread pool; alternating between
    them leaves one pool's threads spinning while the other works, which on a busy machine makes
    the Cholesky factorisation many times slower.
    """
    return scipy.linalg.blas.dsymm(1.0, G.T, B)  # G.T: same values, Fortran order, no copy


def db_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``10 log10(num / den)``; +inf for a zero (or round-off negative) denominator, -inf for a
    zero numerator, NaN if both are zero."""
    num, den = np.atleast_1d(num), np.atleast_1d(den)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(np.maximum(num, 0.0) / np.maximum(den, 0.0))
    out[(num > 0) & (den <= 0)] = np.inf
    return out


def _silent_rows(x: np.ndarray) -> np.ndarray:
    """True for each all-zero row."""
    return ~np.any(x, axis=1)


def _warn_silent(ref: np.ndarray, est: np.ndarray, *, stacklevel: int) -> None:
    _warn_silent_rows(_silent_rows(ref), _silent_rows(est), stacklevel=stacklevel + 1)


def _warn_silent_rows(silent_ref: np.ndarray, silent_est: np.ndarray, *, stacklevel: int) -> None:
    parts = [
        f"{name} {np.flatnonzero(silent).tolist()}"
        for name, silent in (("references", silent_ref), ("estimates", silent_est))
        if silent.any()
    ]
    if parts:
        warnings.warn(
            f"silent (all-zero) {' and '.join(parts)}: their scores are NaN",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def real_array(x: np.ndarray, name: str, ndims: tuple[int, ...], expected: str) -> np.ndarray:
    """``x`` as float64 after checking its rank (one of ``ndims``, described by ``expected``),
    size, type and finiteness; every refusal is a :class:`ParameterError` naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim not in ndims:
        raise ParameterError(f"{name} must be {expected}, got shape {arr.shape}")
    if arr.size == 0:
        raise ParameterError(f"{name} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ParameterError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ParameterError(f"{name} contains NaN or infinite values")
    return arr


def _as_sources(x: np.ndarray, name: str) -> np.ndarray:
    """Check one array and view it as float64 ``(n_sources, n_samples)``."""
    arr = real_array(x, name, (1, 2), "1-D (n_samples,) or 2-D (n_sources, n_samples)")
    return arr[np.newaxis, :] if arr.ndim == 1 else arr


def _validate_pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _as_sources(reference, "reference"), _as_sources(estimate, "estimate")
    if ref.shape[1] != est.shape[1]:
        raise ParameterError(
            f"reference and estimate must have the same number of samples, got "
            f"{ref.shape[1]} and {est.shape[1]}; trim them to a common length first"
        )
    return ref, est


def _validate_filter_length(value: int, n_ref: int) -> int:
    flen = _validate_positive_int(value, "filter_length")
    if n_ref * flen > MAX_GRAM:
        raise ParameterError(
            f"{n_ref} references x filter_length {flen} = {n_ref * flen} delayed references: the "
            f"Gram matrix would need {(n_ref * flen) ** 2 * 8 / 2**30:.1f} GiB; at most "
            f"{MAX_GRAM} are supported (use fewer references or a shorter filter)"
        )
    return flen


def _validate_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
