r"""Vocals and accompaniment by repetition: REPET-SIM with an optional NMF refinement.

The accompaniment of a song repeats (bars, riffs, choruses); the voice varies. REPET-SIM [1]_
models each frame of the accompaniment by the median of the frames most similar to it, wherever
they are in the song, so repetition need not be periodic:

1. ``X`` ``(n_channels, n_samples)`` → STFT :math:`X_c` (:mod:`demix.spectral`) and the
   channel-RMS magnitude :math:`V` ``(F, N)``.
2. **Similarity.** Frames are compared with their context: :math:`\bar S_{ij} = \cos(z_i, z_j)`
   where :math:`z_i` stacks the unit-norm spectra :math:`u_{i+t}` of :data:`_CONTEXT_TAPS`
   offsets ``t`` spanning ±:data:`CONTEXT_S` seconds (zero outside the signal), i.e. the mean of
   the frame cosines :math:`\cos(v_{i+t}, v_{j+t})` along the diagonal. What repeats in a song is
   a passage, not an isolated frame, so two frames count as repetitions when their surroundings
   match too. This keeps isolated look-alike frames of speech (the same vowel at the same pitch)
   from passing as repetition; measured against no context: the share of LibriSpeech readers'
   magnitude the model claims as accompaniment falls from 0.37-0.46 to 0.24-0.36 while music
   keeps 0.44-0.60, and the MUSDB excerpt's accompaniment gains 0.9 dB SDR (vocals −0.2 dB).
   The spectra are first projected on the :data:`_FEATURES` leading singular vectors of the
   normalised spectrogram (the same SDR to ±0.03 dB as the full 1025 bins, 32× fewer operations),
   and the matrix is computed in float32 blocks of rows, so memory is ``O(block · N)`` and time
   ``O(N²)``.
3. **Neighbours.** For frame ``i``: among frames at least ``min_distance`` seconds away whose
   similarity is a local maximum of row ``i`` within ±:data:`PEAK_SPACING_S` (so one repetition
   contributes one frame, as in [1]_), the ``similar_frames`` most similar.
4. **Repeating model.** :math:`W_{:,i} = \min(\operatorname{median}_{j \in \mathcal N_i} V_{:,j},
   V_{:,i})`, the accompaniment's magnitude; :math:`V - W` is the voice's.
5. **Refinement** (``refine="nmf"``): KL-NMF bases are fitted to the accompaniment model and to
   the voice residual (:func:`demix.methods.nmf.beta_nmf`), their activations refitted jointly
   on :math:`V` with the bases fixed, and the mask of these low-rank models is averaged with the
   REPET mask (measured on the MUSDB excerpt: +0.2 dB vocals, +0.4 dB accompaniment; NMF masks
   alone lost vocals).
6. **Masks.** ``soft``: :math:`M_{acc} = W / V` (REPET's ratio mask, :func:`~demix.spectral.
   soft_masks` with power 1); ``binary``: each bin to the larger model. Below ``high_pass`` Hz
   the voice mask is 0 (nothing there is voice). The two masks sum to one everywhere, so
   ``vocals + accompaniment`` equals the mixture to float rounding; every channel gets the same
   masks (stereo in, stereo out).

**Fit.** A repeated passage is a stripe in the similarity matrix: all its frames find their
neighbours at the same distance. ``repetition_structure`` is the share of (frame, neighbour) pairs
whose distance falls in the top 5 % of distance bins (:func:`_lag_structure`); ``repeat_lag_s``
is the commonest distance (a bar, or the distance between two choruses). Below
:data:`MIN_STRUCTURE` nothing repeats as passages (speech alone, a solo instrument, an orchestral
excerpt without a repeating accompaniment) and a ``UserWarning`` says so; the stems are still
written. Measured with the defaults on 2-30 s files: LibriSpeech and CMU ARCTIC speech 0.09-0.16,
solo trumpet and a robin 0.11-0.16, Brahms (orchestra, 10 s) 0.17, songs 0.21-0.44 (MUSDB 0.27,
"fishin" 0.33, Vibe Ace 0.25, Nutcracker 0.44, a synthetic melody over a drum loop 0.21). The
margins are narrow (0.17 against 0.21). ``explained_share`` (:math:`\sum W / \sum V` above
``high_pass``) is recorded too but does not decide: it is the accompaniment's share of the mix,
low for a loud voice or melody over sparse drums (0.07 for that synthetic song, which separates at
12.8 / 6.9 dB SDR) and 0.24-0.36 for speech alone.

**Long inputs.** Each frame is compared with every frame up to :data:`MAX_SEARCH_S` seconds of
audio (10 minutes); beyond that, each frame's neighbours are searched within ±half that span
around it, so time grows linearly; ``diagnostics["search_window_s"]`` records which applied.

References
----------
.. [1] Z. Rafii and B. Pardo, "Music/voice separation using the similarity matrix", ISMIR 2012.
.. [2] Z. Rafii and B. Pardo, "REpeating Pattern Extraction Technique (REPET): a simple method
   for music/voice separation", IEEE Trans. Audio, Speech, Lang. Process. 21(1), 2013.
.. [3] C. Févotte and J. Idier, "Algorithms for nonnegative matrix factorization with the
   β-divergence", Neural Computation 23(9), 2011.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from demix import checks
from demix.errors import ConvergenceWarning, ParameterError
from demix.methods.nmf import beta_nmf
from demix.spectral import apply_masks, magnitude, soft_masks, stft
from demix.types import Callback, IterInfo, Separation

__all__ = [
    "BLOCK_FRAMES",
    "CONTEXT_S",
    "MAX_SEARCH_S",
    "MIN_STRUCTURE",
    "PEAK_SPACING_S",
    "ArrayFrames",
    "Frames",
    "MaskTotals",
    "RepetParams",
    "RepetResult",
    "Repetitions",
    "accompaniment",
    "below_high_pass",
    "check_high_pass",
    "describe",
    "find_repetitions",
    "repet",
    "repet_masks",
    "separate",
]

NAMES = ("vocals", "accompaniment")
CONTEXT_S = 0.5  # half-width of the diagonal context of the similarity
_CONTEXT_TAPS = 11  # offsets averaged over that context
_FEATURES = 32  # dimensions of the projected spectra the similarity compares
PEAK_SPACING_S = 0.1  # neighbours are local maxima of the similarity within this distance
MAX_SEARCH_S = 600.0  # inputs up to this long compare every frame with every frame
MIN_STRUCTURE = 0.19  # below: nothing repeats as passages (warning)
_BLOCK_ENTRIES = 1 << 20  # similarity entries per row block: ~40 bytes of temporaries each, 40 MB
_MEDIAN_ENTRIES = 1 << 21  # gathered magnitudes per median block (8 MiB; the network copies them)
_NETWORK_CHUNK = 1 << 16  # columns per pass of the sorting network
_NMF_RANK = 20  # bases per source in the refinement
_MASK_FRAMES = 4096  # frames per block of the soft masks
BLOCK_FRAMES = 2048  # frames per block of the passes over the spectrogram


@dataclass(frozen=True)
class RepetResult:
    """What :func:`repet` returns.

    Attributes
    ----------
    stems : ndarray, (2, n_channels, n_samples)
        ``vocals`` then ``accompaniment``, each as heard at every channel; they sum to the input.
    names : tuple of str
        ``("vocals", "accompaniment")``.
    facts : tuple of dict
        Per stem, JSON-serialisable: its share of the mixture's energy and the mean of its mask;
        for the accompaniment also the similarity statistics that decided the masks.
    diagnostics : dict
        ``repetition_structure`` and ``fits`` (module docstring), ``explained_share``,
        ``repeat_lag_s``, ``median_similarity``,
        neighbour counts and distances, ``search_window_s`` and the STFT used.
    n_iter : int
        NMF iterations of the refinement (0 without it).
    converged : bool
        Whether every NMF fit of the refinement reached its tolerance (True without it).
    final_change : float
        The largest relative objective change of the NMF fits' last iterations (0 without them).
    """

    stems: np.ndarray
    names: tuple[str, ...] = NAMES
    facts: tuple[dict[str, Any], ...] = ()
    diagnostics: dict[str, Any] = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = True
    final_change: float = 0.0


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class RepetParams:
    """Parameters of :func:`repet` (``demix repet``), validated on construction.

    Attributes
    ----------
    similar_frames : int
        ``k``, the most similar frames whose median models a frame's accompaniment
        (``--similar-frames``).
    min_distance : float
        Seconds: a frame's neighbours are at least this far from it, so a held note is not
        mistaken for its own repetition (``--min-distance``).
    mask : {"soft", "binary"}
        Ratio masks ``W / V``, or each bin to the larger model (``--mask``).
    high_pass : float
        Hz; below it the voice mask is zero, 0 disables (``--high-pass``; below Nyquist).
    refine : {"none", "nmf"}
        Average the REPET mask with the mask of KL-NMF models learnt from the two estimates
        (``--refine``).
    n_fft, hop : int
        STFT size and hop in samples (``--n-fft``, ``--hop``).
    max_iter, tol : int, float
        Iterations and relative tolerance of each NMF fit of the refinement (``--max-iter``,
        ``--tol``; 0 runs exactly ``max_iter`` without a convergence warning).
    seed : int
        Seed of the NMF initialisation; REPET itself is deterministic (``--seed``).
    """

    similar_frames: int = 20
    min_distance: float = 0.5
    mask: str = "soft"
    high_pass: float = 100.0
    refine: str = "none"
    n_fft: int = 2048
    hop: int = 512
    max_iter: int = 200
    tol: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        checks.integer("--similar-frames", self.similar_frames, low=1, high=1000)
        checks.number("--min-distance", self.min_distance, low=0.0)
        checks.choice("--mask", self.mask, ("soft", "binary"))
        checks.number("--high-pass", self.high_pass, low=0.0)
        checks.choice("--refine", self.refine, ("none", "nmf"))
        n_fft = checks.integer("--n-fft", self.n_fft, low=16, high=65536)
        checks.integer("--hop", self.hop, low=1, high=n_fft // 2)
        checks.integer("--max-iter", self.max_iter, low=1)
        checks.number("--tol", self.tol, low=0.0)
        checks.integer("--seed", self.seed, low=0)


def check_high_pass(params: RepetParams, sample_rate: int) -> None:
    """``--high-pass`` must lie below the input's Nyquist frequency."""
    if params.high_pass >= sample_rate / 2:
        raise ParameterError(
            f"--high-pass {params.high_pass:g} is invalid; expected a frequency below the input's "
            f"Nyquist frequency {sample_rate / 2:g} Hz"
        )


def _check_input(X: object, sample_rate: object, params: RepetParams) -> np.ndarray:
    rate = checks.integer("sample_rate", sample_rate, low=1)
    check_high_pass(params, rate)
    arr = np.asarray(X)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ParameterError(f"the mixture must be a real (n_channels, n_samples) array, got {arr.shape}")
    if arr.shape[1] < params.n_fft:
        raise ParameterError(
            f"the input has {arr.shape[1]} samples, shorter than one frame (--n-fft {params.n_fft})"
        )
    if not np.all(np.isfinite(arr)):
        raise ParameterError("the mixture contains NaN or inf samples")
    if not np.any(arr):
        raise ParameterError("the input is silent (all samples are zero): nothing to separate")
    return np.asarray(arr, dtype=np.float64)


# --------------------------------------------------------------------------- similarity
class Frames(Protocol):
    """The magnitude spectrogram ``V`` ``(F, N)`` float32 as the search and the model read it:
    in memory (:class:`ArrayFrames`) or from a scratch file of a long recording
    (:mod:`demix.streaming_repet`)."""

    n_freqs: int
    n_frames: int

    def blocks(self) -> Iterator[np.ndarray]:
        """Consecutive column blocks ``(F, n)`` of ``V``, in order."""
        ...

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Frames ``rows`` (any shape of indices) as ``(*rows.shape, F)`` float32."""
        ...


class ArrayFrames:
    """:class:`Frames` of a spectrogram held in memory."""

    def __init__(self, V: np.ndarray) -> None:
        self.n_freqs, self.n_frames = V.shape
        self.V = V

    @functools.cached_property
    def rows(self) -> np.ndarray:
        """Frames as rows, made at the first gather (after the search): a gather copies whole rows."""
        return np.ascontiguousarray(self.V.T)

    def blocks(self) -> Iterator[np.ndarray]:
        for s in range(0, self.n_frames, BLOCK_FRAMES):
            yield self.V[:, s : s + BLOCK_FRAMES]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.rows[rows])


def _unit(V: np.ndarray) -> np.ndarray:
    """Frames scaled to unit norm (float64; a silent frame stays zero)."""
    U = V.astype(np.float64)
    U /= np.maximum(np.sqrt(np.einsum("fn,fn->n", U, U)), 1e-30)
    return U


def _block_sum(frames: Frames, term: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``Σ term(U_b)`` over the blocks ``U_b`` of unit-norm frames, in order."""
    total: np.ndarray | None = None
    for V in frames.blocks():
        part = term(_unit(V))
        total = part if total is None else total + part
    assert total is not None
    return total


def _leading_subspace(frames: Frames, r: int) -> np.ndarray:
    """Orthonormal ``(F, r)`` basis of the leading left singular subspace of the unit-norm frames.

    Randomised range finder with two power iterations (Halko, Martinsson & Tropp 2011), seeded
    so the result is deterministic: ``O(F N r)`` where a full eigendecomposition of ``U Uᵀ`` is
    ``O(F³)`` (0.9 s at F = 1025, more than all the rest of a 7 s excerpt). Every step is a sum
    over blocks of frames, so a recording on disk is read block by block, four times.
    """
    rng = np.random.default_rng(0)
    c = min(r + 10, frames.n_freqs, frames.n_frames)
    Q, _ = np.linalg.qr(_block_sum(frames, lambda U: U @ rng.standard_normal((U.shape[1], c))))
    for _ in range(2):
        basis = Q
        Q, _ = np.linalg.qr(_block_sum(frames, lambda U: U @ (U.T @ basis)))  # noqa: B023 (summed now)
    # left singular vectors of B = Qᵀ U: eigenvectors of B Bᵀ, largest first
    _, vectors = np.linalg.eigh(_block_sum(frames, lambda U: (B := Q.T @ U) @ B.T))
    return np.asarray(Q @ vectors[:, ::-1][:, :r])


def _projected(frames: Frames) -> np.ndarray:
    """The unit-norm frames projected on the :data:`_FEATURES` leading left singular vectors of
    the normalised spectrogram ``(min(F, _FEATURES), N)`` float32 (which keeps their inner
    products up to the discarded energy, measured at 1-3 %, and makes the similarity
    ``F / _FEATURES`` times cheaper): 128 bytes a frame, 40 MB for an hour at 44.1 kHz."""
    basis = _leading_subspace(frames, _FEATURES) if frames.n_freqs > _FEATURES else None
    P = np.empty((min(frames.n_freqs, _FEATURES), frames.n_frames), dtype=np.float32)
    s = 0
    for V in frames.blocks():
        U = _unit(V)
        P[:, s : s + V.shape[1]] = U if basis is None else basis.T @ U
        s += V.shape[1]
    return P


def _context_columns(P: np.ndarray, taps: np.ndarray, at: np.ndarray) -> np.ndarray:
    r"""Unit-norm context vectors ``(n_dims · n_taps, len(at))`` float32 of frames ``at``, whose
    inner products are :math:`\bar S_{ij}`, the diagonal mean of frame cosines (normalised by
    the taps inside): each frame's projection stacked with its shifts by each context offset
    (zero outside the signal)."""
    d, N = P.shape
    Z = np.zeros((d * taps.size, at.size), dtype=np.float32)
    for m, t in enumerate(taps):  # row block m holds frame n + t at the column of n
        src = at + t
        inside = (src >= 0) & (src < N)
        Z[m * d : (m + 1) * d, inside] = P[:, src[inside]]
    Z /= np.maximum(np.sqrt(np.einsum("ij,ij->j", Z, Z)), np.finfo(np.float32).tiny)
    return Z


class _ContextWindow:
    """Context vectors of every ``step``-th frame, built for a window of columns and kept while
    the search's window stays inside it (the whole input when it is shorter than the search
    window): memory ``O(window)`` whatever the input's length."""

    def __init__(self, P: np.ndarray, context: int, step: int, width: int) -> None:
        self.P, self.step = P, step
        self.taps = np.unique(np.round(np.linspace(-context, context, _CONTEXT_TAPS)).astype(np.int64))
        self.n = -(-P.shape[1] // step)
        self.span = width + width // 2
        self.lo = self.hi = 0
        self.Z = np.zeros((0, 0), dtype=np.float32)

    def columns(self, lo: int, hi: int) -> np.ndarray:
        if lo < self.lo or hi > self.hi:
            self.lo, self.hi = lo, min(self.n, max(hi, lo + self.span))
            self.Z = np.zeros((0, 0), dtype=np.float32)  # the old window goes before the new comes
            self.Z = _context_columns(self.P, self.taps, np.arange(self.lo, self.hi) * self.step)
        return self.Z[:, lo - self.lo : hi - self.lo]


def _neighbours(
    P: np.ndarray, k: int, min_gap: int, spacing: int, context: int, window: int, callback: Callback | None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(N, k)`` of each frame's most similar frames and their similarities (-inf: none),
    from the projected frames ``P`` (:func:`_projected`).

    With peaks spaced by 4 frames or more, the search runs on every second frame against every
    second frame (a quarter of the work) and frame ``2r + 1`` takes the neighbours of ``2r``
    shifted by one: along a repeated passage the distance to the repetition is constant.
    Measured on the MUSDB excerpt: the same SDR to 0.05 dB.
    """
    N = P.shape[1]
    step = 2 if spacing >= 4 else 1
    n, width = -(-N // step), window // step
    columns = _ContextWindow(P, context, step, min(n, width)).columns
    idx_d, sims_d = _search(columns, n, k, -(-min_gap // step), round(spacing / step), width, callback)
    if step == 1:
        return idx_d, sims_d
    frame = np.arange(N, dtype=np.int32)
    rows = frame // step
    idx = idx_d[rows] * step + (frame - rows * step)[:, None]
    sims = sims_d[rows]
    beyond = idx >= N  # a neighbour shifted past the last frame is none
    if beyond.any():
        sims[beyond] = -np.inf
        np.minimum(idx, N - 1, out=idx)
        cut = np.flatnonzero(beyond.any(axis=1))  # only these rows lost their order
        order = np.argsort(-sims[cut], axis=1, kind="stable")  # valid neighbours first again
        idx[cut] = np.take_along_axis(idx[cut], order, axis=1)
        sims[cut] = np.take_along_axis(sims[cut], order, axis=1)
    return idx, sims


def _search(
    columns: Callable[[int, int], np.ndarray],
    N: int,
    k: int,
    min_gap: int,
    spacing: int,
    window: int,
    callback: Callback | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_neighbours` on ``N`` context vectors (``columns(lo, hi)``: those of ``lo … hi - 1``):
    blocks of rows against the frames of their window."""
    w = max(1, spacing)  # cells of w frames; a peak within ±spacing is its cell's maximum
    width = min(N, window)
    n_cells = -(-width // w)
    k = min(k, n_cells)
    idx = np.zeros((N, k), dtype=np.int32)  # frame indices: 4 bytes each, 25 MB an hour
    sims = np.full((N, k), -np.inf, dtype=np.float32)
    block = int(np.clip(_BLOCK_ENTRIES // width, 8, N))
    # -inf margins of `spacing` columns on the left and at least that on the right
    buf = np.full((block, n_cells * w + 2 * spacing), -np.inf, dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(buf, 2 * spacing + 1, axis=1)
    n_blocks = -(-N // block)
    for b, i0 in enumerate(range(0, N, block)):
        i1 = min(N, i0 + block)
        n = i1 - i0
        c0 = max(0, min(i0 - (window - n) // 2, N - width))
        lo = min(i0, c0)  # the rows and their window
        Z = columns(lo, max(i1, c0 + width))
        np.matmul(
            Z[:, i0 - lo : i1 - lo].T, Z[:, c0 - lo : c0 - lo + width], out=buf[:n, spacing : spacing + width]
        )
        cells = buf[:n, spacing : spacing + n_cells * w].reshape(n, n_cells, w)
        local = np.argmax(cells, axis=2) + np.arange(n_cells) * w  # columns from c0
        val = np.take_along_axis(buf[:n], local + spacing, axis=1)
        # a neighbour is a local maximum of its row within ±spacing (Rafii & Pardo's peaks),
        # tested before the exclusion, which would make the zone's edge a false peak
        around = windows[np.arange(n)[:, None], local].max(axis=2)
        val[val < around] = -np.inf
        pos = local + c0
        val[np.abs(pos - np.arange(i0, i1)[:, None]) < min_gap] = -np.inf
        part = np.argpartition(-val, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(val, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx[i0:i1] = np.take_along_axis(np.take_along_axis(pos, part, axis=1), order, axis=1)
        sims[i0:i1] = np.take_along_axis(top, order, axis=1)
        if callback is not None:
            callback(IterInfo(iteration=b + 1, max_iter=n_blocks, change=math.nan))
    return idx, sims


@functools.lru_cache(maxsize=16)
def _median_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators of Batcher's odd-even merge sort on ``n`` wires, pruned to the median wires.

    After they run (each puts the smaller value on its first wire), wires ``(n - 1) // 2`` and
    ``n // 2`` hold the two middle order statistics. Vectorised over millions of columns this is
    about 7 times faster than ``np.median`` along a short axis, which partitions row by row.
    """
    m = 1 << max(0, (n - 1).bit_length())
    pairs = []
    p = 1
    while p < m:
        k = p
        while k >= 1:
            for j in range(k % p, m - k, 2 * k):
                for i in range(min(k, m - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    need, kept = {(n - 1) // 2, n // 2}, []
    for a, b in reversed(pairs):  # wires >= n carry +inf padding: their comparators do nothing
        if b < n and (a in need or b in need):
            kept.append((a, b))
            need |= {a, b}
    return tuple(reversed(kept))


def _columnwise_median(G: np.ndarray) -> np.ndarray:
    """Median over axis 0 of ``G`` ``(n, M)`` float32 (overwritten), by a sorting network."""
    n = G.shape[0]
    network = _median_network(n)
    out = np.empty(G.shape[1], dtype=G.dtype)
    spare_all = np.empty(min(G.shape[1], _NETWORK_CHUNK), dtype=G.dtype)
    for s in range(0, G.shape[1], _NETWORK_CHUNK):  # chunks that stay in cache
        rows = list(G[:, s : s + _NETWORK_CHUNK])
        spare = spare_all[: rows[0].size]
        for a, b in network:  # min into the spare buffer, which becomes wire a: two passes
            np.minimum(rows[a], rows[b], out=spare)
            np.maximum(rows[a], rows[b], out=rows[b])
            rows[a], spare = spare, rows[a]
        lo, hi = rows[(n - 1) // 2], rows[n // 2]
        np.add(lo, hi, out=out[s : s + lo.size])
        spare_all = spare if spare.size == spare_all.size else spare_all
    out *= 0.5
    return out


def _median_model(frames: Frames, own: np.ndarray, idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per frame, the median of the spectra of its valid neighbours (they come first in ``idx``
    ``(n, k)``, indices into ``frames``); ``own`` ``(F, n)`` are the frames' own spectra.

    A frame with ``c < k`` neighbours fills its free slots with -inf and +inf in equal numbers,
    which leaves the median unchanged; when ``k - c`` is odd the last slot is dropped (network
    on ``k - 1`` wires). A frame with no neighbour keeps itself: all accompaniment.
    """
    F = own.shape[0]
    k = idx.shape[1]
    M = np.array(own.T, dtype=np.float32, order="C")  # frames as rows (a copy: own is kept)
    for width in (k, k - 1):
        if width == 0:
            continue
        chosen = np.flatnonzero((counts > 0) & ((k - counts) % 2 == k - width))
        step = max(1, _MEDIAN_ENTRIES // (F * width))
        for s in range(0, chosen.size, step):
            sel = chosen[s : s + step]
            G = frames.gather(idx[sel, :width].T)  # (width, n_sel, F)
            for j in range(width):  # free slots alternate -inf, +inf from the first free one
                free = np.flatnonzero(counts[sel] <= j)
                odd = (j - counts[sel[free]]) % 2 == 1
                G[j, free] = np.where(odd, np.inf, -np.inf).astype(np.float32)[:, None]
            M[sel] = _columnwise_median(G.reshape(width, -1)).reshape(sel.size, F)
    return np.ascontiguousarray(M.T)


def _lag_structure(idx: np.ndarray, valid: np.ndarray, min_gap: int) -> tuple[float, int]:
    """How concentrated the distances between frames and their neighbours are, and the commonest.

    A repeated passage is a stripe of the similarity matrix: every frame of it finds its
    neighbour at the same distance. The distances of all (frame, neighbour) pairs are binned by
    two frames, each pair weighted by the inverse number of frame pairs at that distance (capped
    at four times the average, so the few pairs possible at the longest distances do not
    dominate); the share of the weight in the top 5 % of bins is near 0.05 when neighbours are
    look-alikes scattered at random distances and grows with every stripe. Returns that share
    and the centre of the heaviest bin in frames.
    """
    N = idx.shape[0]
    lags = np.abs(idx - np.arange(N)[:, None])[valid]
    if lags.size == 0:
        return 0.0, 0
    weights = 1.0 / np.maximum(N - lags, N / 4)
    first = min_gap // 2  # bins from the shortest distance allowed
    hist = np.bincount(lags // 2, weights=weights, minlength=N // 2 + 1)[first:]
    share = np.sort(hist)[::-1][: max(1, hist.size // 20)].sum() / hist.sum()
    return float(share), int(2 * (first + int(np.argmax(hist))) + 1)


# --------------------------------------------------------------------------- refinement
def _nmf_masks(
    V: np.ndarray, voice: np.ndarray, acc: np.ndarray, max_iter: int, tol: float, seed: int
) -> tuple[np.ndarray, int, bool, float]:
    """Voice/accompaniment masks of low-rank KL-NMF models learnt from the two REPET estimates."""
    kw: dict[str, Any] = {"beta": 1.0, "max_iter": max_iter, "tol": tol}
    floor = 1e-9 * float(V.mean())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit_acc = beta_nmf(acc + floor, _NMF_RANK, seed=seed, **kw)
        fit_voice = beta_nmf(voice + floor, _NMF_RANK, seed=seed + 1, **kw)
        W = np.concatenate([fit_acc.W, fit_voice.W], axis=1)
        joint = beta_nmf(V, 2 * _NMF_RANK, W_fixed=W, seed=seed, **kw)
    n_iter = fit_acc.n_iter + fit_voice.n_iter + joint.n_iter
    converged = fit_acc.converged and fit_voice.converged and joint.converged
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    r = _NMF_RANK
    models = [joint.W[:, r:] @ joint.H[r:], joint.W[:, :r] @ joint.H[:r]]
    change = max(fit_acc.final_change, fit_voice.final_change, joint.final_change)
    return soft_masks(models, power=1.0).astype(np.float32), n_iter, converged, change


# --------------------------------------------------------------------------- the method
def repet(
    X: np.ndarray,
    sample_rate: int,
    *,
    similar_frames: int = RepetParams.similar_frames,
    min_distance: float = RepetParams.min_distance,
    mask: str = RepetParams.mask,
    high_pass: float = RepetParams.high_pass,
    refine: str = RepetParams.refine,
    n_fft: int = RepetParams.n_fft,
    hop: int = RepetParams.hop,
    max_iter: int = RepetParams.max_iter,
    tol: float = RepetParams.tol,
    seed: int = RepetParams.seed,
    callback: Callback | None = None,
) -> RepetResult:
    """Split a song into vocals and accompaniment by REPET-SIM (module docstring: the steps).

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture; every channel gets the same masks.
    sample_rate : int
        In Hz.
    similar_frames, min_distance, mask, high_pass, refine, n_fft, hop, max_iter, tol, seed
        See :class:`RepetParams` (defaults and meaning; invalid values raise
        :class:`~demix.errors.ParameterError` naming the CLI option).
    callback : callable, optional
        Progress: :class:`~demix.types.IterInfo` per block of the similarity matrix.

    Returns
    -------
    RepetResult
        ``stems`` ``(2, n_channels, n_samples)`` (vocals, accompaniment), facts, diagnostics.

    Warns
    -----
    UserWarning
        When ``repetition_structure`` is below :data:`MIN_STRUCTURE`: nothing repeats.
    ConvergenceWarning
        When an NMF fit of the refinement stops at ``max_iter`` (``tol > 0``).
    """
    params = RepetParams(
        similar_frames=similar_frames, min_distance=min_distance, mask=mask, high_pass=high_pass,
        refine=refine, n_fft=n_fft, hop=hop, max_iter=max_iter, tol=tol, seed=seed,
    )  # fmt: skip
    return _repet(X, sample_rate, params, callback)


def separate(
    X: np.ndarray, sample_rate: int, params: RepetParams, callback: Callback | None = None
) -> Separation:
    """:func:`repet` as the registry runs it: named stems, as images (mono for a mono input)."""
    res = _repet(X, sample_rate, params, callback)
    mono = res.stems.shape[1] == 1
    return Separation(
        sources=res.stems[:, 0] if mono else res.stems,
        layout="mono" if mono else "images",
        model=None,
        n_iter=res.n_iter,
        converged=res.converged,
        final_change=res.final_change,
        facts=res.facts,
        names=res.names,
        diagnostics=res.diagnostics,
    )


# --------------------------------------------------------------------------- shared with streaming
@dataclass(frozen=True)
class Repetitions:
    """Every frame's neighbours, searched over the whole input (steps 2-3).

    Attributes
    ----------
    idx, sims : ndarray, (N, k)
        Neighbour frames, valid ones first, and their similarities (-inf: no neighbour).
    counts : ndarray, (N,)
        Valid neighbours per frame.
    frames_per_s : float
    min_gap : int
        The shortest distance to a neighbour, in frames.
    windowed : bool
        Whether the search was limited to ±``MAX_SEARCH_S / 2`` around each frame.
    """

    idx: np.ndarray
    sims: np.ndarray
    counts: np.ndarray
    frames_per_s: float
    min_gap: int
    windowed: bool


def find_repetitions(
    frames: Frames, sample_rate: int, params: RepetParams, callback: Callback | None
) -> Repetitions:
    """Steps 2-3 on a spectrogram in memory or on disk: the same neighbours either way."""
    frames_per_s = sample_rate / params.hop
    window = max(1, round(MAX_SEARCH_S * frames_per_s))
    min_gap = max(1, math.ceil(params.min_distance * frames_per_s))
    idx, sims = _neighbours(
        _projected(frames),
        params.similar_frames,
        min_gap=min_gap,
        spacing=round(PEAK_SPACING_S * frames_per_s),
        context=round(CONTEXT_S * frames_per_s),
        window=window,
        callback=callback,
    )
    counts = np.isfinite(sims).sum(axis=1)
    return Repetitions(idx, sims, counts, frames_per_s, min_gap, frames.n_frames > window)


def accompaniment(frames: Frames, found: Repetitions, V: np.ndarray, first: int) -> np.ndarray:
    """Step 4 for frames ``first …`` whose spectra are ``V`` ``(F, n)``: ``W = min(median, V)``."""
    last = first + V.shape[1]
    return np.minimum(_median_model(frames, V, found.idx[first:last], found.counts[first:last]), V)


def repet_masks(V: np.ndarray, W: np.ndarray, mask: str) -> np.ndarray:
    """Step 6: the ``(vocals, accompaniment)`` masks ``(2, F, n)`` float32 of the models ``V - W``
    and ``W``, before the high-pass."""
    voice = V - W
    if mask == "binary":
        return np.stack([voice > W, voice <= W]).astype(np.float32)
    masks = np.empty((2, *V.shape), dtype=np.float32)
    for f0 in range(0, V.shape[1], _MASK_FRAMES):  # soft_masks works in float64: in blocks
        cut = slice(f0, f0 + _MASK_FRAMES)
        masks[:, :, cut] = soft_masks([voice[:, cut], W[:, cut]], power=1.0)
    return masks


def below_high_pass(n_freqs: int, sample_rate: int, n_fft: int, high_pass: float) -> np.ndarray:
    """The bins below ``--high-pass`` (the vocals mask is zero there)."""
    return np.asarray(np.arange(n_freqs) * sample_rate / n_fft < high_pass)


@dataclass
class MaskTotals:
    """Sums over frames that the facts need: the models' magnitudes above the high-pass (the
    explained share) and each mask weighted by the energy of its bins (the mask means)."""

    model: float = 0.0
    mixture: float = 0.0
    weighted: np.ndarray = field(default_factory=lambda: np.zeros(2))
    weight: float = 0.0

    def add(self, V: np.ndarray, W: np.ndarray, masks: np.ndarray, above: np.ndarray) -> None:
        self.model += float(W[above].sum(dtype=np.float64))
        self.mixture += float(V[above].sum(dtype=np.float64))
        power = V * V
        self.weighted += [float(np.sum(m * power, dtype=np.float64)) for m in masks]
        self.weight += float(np.sum(power, dtype=np.float64))


def describe(
    found: Repetitions, totals: MaskTotals, energy_shares: np.ndarray, params: RepetParams
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """Per-stem facts and the run's diagnostics (:class:`RepetResult`); warns when nothing repeats."""
    idx, sims, frames_per_s = found.idx, found.sims, found.frames_per_s
    valid = np.isfinite(sims)
    explained = totals.model / max(totals.mixture, 1e-30)
    structure, lag = _lag_structure(idx, valid, found.min_gap)
    if structure < MIN_STRUCTURE:
        warnings.warn(
            f"the repetition model does not fit this input: only {structure:.2f} of the similar "
            f"frames lie at the few most common distances (songs measure 0.21-0.44, speech alone "
            f"0.09-0.16; below {MIN_STRUCTURE} nothing repeats as passages), so 'vocals' and "
            "'accompaniment' are unlikely to mean that",
            UserWarning,
            stacklevel=3,
        )
    distance = np.abs(idx - np.arange(idx.shape[0])[:, None])[valid] / frames_per_s
    median_sim = float(np.median(sims[valid])) if valid.any() else math.nan
    facts = []
    for j, name in enumerate(NAMES):
        fact: dict[str, Any] = {
            "energy_share": float(energy_shares[j]),
            "mask_mean": float(totals.weighted[j] / totals.weight) if totals.weight else math.nan,
        }
        if name == "accompaniment":
            fact.update(
                repetition_structure=structure,
                repeat_lag_s=lag / frames_per_s,
                explained_share=explained,
                median_similarity=median_sim,
                median_neighbour_distance_s=float(np.median(distance)) if distance.size else math.nan,
            )
        facts.append(fact)
    diagnostics: dict[str, Any] = {
        "repetition_structure": structure,
        "fits": structure >= MIN_STRUCTURE,
        "min_structure": MIN_STRUCTURE,
        "explained_share": explained,
        "repeat_lag_s": lag / frames_per_s,
        "median_similarity": median_sim,
        "mean_neighbours": float(found.counts.mean()),
        "frames_without_neighbours": int(np.sum(found.counts == 0)),
        "search_window_s": MAX_SEARCH_S if found.windowed else None,
        "n_fft": params.n_fft,
        "hop": params.hop,
        "n_frames": int(idx.shape[0]),
    }
    return tuple(facts), diagnostics


def _repet(X: np.ndarray, sample_rate: int, params: RepetParams, callback: Callback | None) -> RepetResult:
    X = _check_input(X, sample_rate, params)
    n_fft, hop, max_iter, tol = params.n_fft, params.hop, params.max_iter, params.tol
    # float32 spectra: half the memory of a 5-minute song's (the stems are still float64 and
    # exact in sum, and float32 rounding is far below the 24-bit output's)
    S = stft(X.astype(np.float32), n_fft, hop)
    V = magnitude(S).astype(np.float32)
    frames = ArrayFrames(V)
    found = find_repetitions(frames, sample_rate, params, callback)
    W = accompaniment(frames, found, V, 0)
    masks = repet_masks(V, W, params.mask)
    n_iter, converged, final_change = 0, True, 0.0
    if params.refine == "nmf":
        nmf_masks, n_iter, converged, final_change = _nmf_masks(V, V - W, W, max_iter, tol, params.seed)
        masks = 0.5 * (masks + nmf_masks)
    low = below_high_pass(V.shape[0], sample_rate, n_fft, params.high_pass)
    masks[0, low], masks[1, low] = 0.0, 1.0
    vocals = apply_masks(S, masks[:1], n_fft, hop, X.shape[1])[0].astype(np.float64)
    stems = np.stack([vocals, X - vocals])  # the masks sum to one: this is the accompaniment's
    totals = MaskTotals()
    totals.add(V, W, masks, ~low)
    energy = np.sum(stems**2, axis=(1, 2)) / float(np.sum(X**2))
    facts, diagnostics = describe(found, totals, energy, params)
    if not converged and tol > 0:
        warnings.warn(
            f"the NMF refinement did not converge in --max-iter {max_iter} (--tol {tol:g}); "
            "raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return RepetResult(stems, NAMES, facts, diagnostics, n_iter, converged, final_change)
