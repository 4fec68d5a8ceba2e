r"""Grouping NMF components into sources, with the per-component facts behind each decision.

An NMF of a spectrogram gives ``k`` components (a basis ``w_k`` and its activation ``h_k``);
a source is a group of components. Three rules:

``percussive-harmonic``
    The median-filtering view of harmonic/percussive separation (Fitzgerald 2010) applied to
    the factors instead of the spectrogram: a harmonic component is *peaky across frequency*
    (partials) and *smooth in time* (sustained notes); a percussive one is smooth across
    frequency (noise, a broad bump) and *impulsive in time* (hits). Two features in
    :math:`[0, 1]` measure the energy that survives a median filter,

    .. math::

        S_k = \frac{\sum_f \min(w_{fk}, \tilde w_{fk})^2}{\sum_f w_{fk}^2}, \qquad
        T_k = \frac{\sum_n \min(h_{kn}, \tilde h_{kn})^2}{\sum_n h_{kn}^2},

    where :math:`\tilde w` is the median over ~300 Hz and :math:`\tilde h` over ~0.2 s. They are
    combined in the logit domain, time counting twice (it is the more reliable cue: a bass note
    with partials closer than the window's main lobe looks smooth across frequency),

    .. math::

        p_k = \sigma\!\left(\tfrac{2\,\mathrm{logit}(1 - T_k) + \mathrm{logit}(S_k)}{3}\right),

    and a component is percussive when :math:`p_k > 1/2` (each group keeps at least one
    component). Spectral flatness of the basis and kurtosis of the activation's first
    difference are reported too but not used: a note heard once has a very sparse difference.
``timbre``
    MFCCs of each basis (its mel power spectrum), standardised, clustered by seeded k-means
    into ``n`` non-empty groups, ordered by spectral centroid (low first).
``none``
    Every component is its own source.

References
----------
.. [1] D. Fitzgerald, "Harmonic/percussive separation using median filtering", DAFx 2010.
.. [2] T. Virtanen, "Monaural sound source separation by nonnegative matrix factorization with
   temporal continuity and sparseness criteria", IEEE TASLP 15(3), 2007.
.. [3] M. Spiertz and V. Gnann, "Source-filter based clustering for monaural blind source
   separation", DAFx 2009.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from demix.errors import ParameterError

__all__ = ["GROUPINGS", "Grouping", "check_grouping", "group_components", "split_transients"]

GROUPINGS = ("percussive-harmonic", "timbre", "none")
_SPECTRAL_WIDTH_HZ = 300.0
_TEMPORAL_WIDTH_S = 0.2
_CLIP = 0.02  # features are clipped to [_CLIP, 1 - _CLIP] before the logit


@dataclass(frozen=True)
class Grouping:
    """Components grouped into sources.

    Attributes
    ----------
    groups : list of list of int
        Component indices of each source (every component in exactly one group).
    names : tuple of str
        One name per group.
    features : list of dict
        Per component, JSON-serialisable facts (floats or lists of floats) behind the decision.
    rule : str
        One line saying how the groups were decided.
    """

    groups: list[list[int]]
    names: tuple[str, ...]
    features: list[dict[str, Any]]
    rule: str


def _median_survival(x: np.ndarray, width: int) -> np.ndarray:
    """Per row of ``x``, the fraction of energy under its running median of ``width`` samples."""
    from scipy.ndimage import median_filter

    med = median_filter(x, size=(1, width), mode="nearest")
    kept = np.sum(np.minimum(x, med) ** 2, axis=1)
    total = np.sum(x**2, axis=1)
    return np.where(total > 0, kept / np.maximum(total, 1e-300), 0.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def _odd(n: float) -> int:
    return max(3, round(n) // 2 * 2 + 1)


def _percussive_harmonic(W: np.ndarray, H: np.ndarray, sample_rate: int, n_fft: int, hop: int) -> Grouping:
    from scipy.stats import kurtosis

    spec_w = _odd(_SPECTRAL_WIDTH_HZ * n_fft / sample_rate)
    time_w = _odd(_TEMPORAL_WIDTH_S * sample_rate / hop)
    S = _median_survival(W.T, spec_w)
    T = _median_survival(H, time_w) if H.shape[1] >= 3 else np.ones(H.shape[0])
    score = 1 / (1 + np.exp(-(2 * _logit(1 - T) + _logit(S)) / 3))
    power = W**2
    flat = np.exp(np.mean(np.log(power + 1e-30), axis=0)) / np.maximum(power.mean(axis=0), 1e-30)
    with np.errstate(all="ignore"):
        kurt = np.nan_to_num(kurtosis(np.diff(H, axis=1), axis=1), nan=0.0)
    perc = score > 0.5
    if perc.all():  # both sources get something: the least percussive becomes harmonic
        perc[np.argmin(score)] = False
    elif not perc.any():
        perc[np.argmax(score)] = True
    features = [
        {
            "percussiveness": float(score[k]),
            "spectral_smoothness": float(S[k]),
            "temporal_smoothness": float(T[k]),
            "spectral_flatness": float(flat[k]),
            "activation_diff_kurtosis": float(kurt[k]),
        }
        for k in range(W.shape[1])
    ]
    groups = [np.flatnonzero(perc).tolist(), np.flatnonzero(~perc).tolist()]
    rule = (
        "percussive if sigmoid((2 logit(1 - temporal_smoothness) + logit(spectral_smoothness))"
        f" / 3) > 0.5; median widths {spec_w} bins, {time_w} frames"
    )
    return Grouping(groups, ("percussive", "harmonic"), features, rule)


def split_transients(H: np.ndarray, sample_rate: int, hop: int) -> tuple[np.ndarray, np.ndarray, int]:
    r"""Split activations into a sustained part and the transients riding on it.

    :math:`H^s = \min(H, \tilde H)` with :math:`\tilde H` the running median over ~0.2 s
    (the width used for :math:`T_k`), and :math:`H^t = H - H^s \ge 0`. For a harmonic
    component, :math:`H^t` is mostly drum energy its basis absorbed at the hits (the same cue
    median-filtering HPSS uses, applied per component).

    Returns
    -------
    sustained, transient : ndarray, like ``H``
    width : int
        Median width in frames.
    """
    from scipy.ndimage import median_filter

    width = _odd(_TEMPORAL_WIDTH_S * sample_rate / hop)
    sustained = np.minimum(H, median_filter(H, size=(1, width), mode="nearest"))
    return sustained, H - sustained, width


def _mfcc_of_bases(W: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """(k, 12) MFCCs 1..12 of every basis read as one power-spectrum frame."""
    import librosa

    n_mels = min(40, W.shape[0])
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    log_mel = librosa.power_to_db(mel @ W**2, ref=np.max, top_db=80.0)
    return np.asarray(librosa.feature.mfcc(S=log_mel, n_mfcc=13)[1:].T)


def _kmeans(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Seeded k-means labels with every one of the ``n`` clusters non-empty."""
    from scipy.cluster.vq import kmeans2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty clusters are repaired below
        centroids, labels = kmeans2(X, n, minit="++", seed=rng)
    labels = np.asarray(labels).copy()
    for c in range(n):
        if np.any(labels == c):
            continue
        dist = np.sum((X - centroids[labels]) ** 2, axis=1)
        sizes = np.bincount(labels, minlength=n)
        dist[sizes[labels] < 2] = -np.inf  # never empty another cluster
        labels[int(np.argmax(dist))] = c
    return labels


def _timbre(W: np.ndarray, n: int, sample_rate: int, n_fft: int, rng: np.random.Generator) -> Grouping:
    mfcc = _mfcc_of_bases(W, sample_rate, n_fft)
    z = (mfcc - mfcc.mean(axis=0)) / np.maximum(mfcc.std(axis=0), 1e-9)
    labels = _kmeans(z, n, rng) if n > 1 else np.zeros(W.shape[0], dtype=int)
    freqs = np.linspace(0, sample_rate / 2, W.shape[0])
    centroid = (freqs @ W) / np.maximum(W.sum(axis=0), 1e-300)
    order = np.argsort([centroid[labels == c].mean() for c in range(n)], kind="stable")
    groups = [np.flatnonzero(labels == c).tolist() for c in order]
    rank = {int(c): i for i, c in enumerate(order)}
    features = [
        {
            "cluster": rank[int(labels[k])],
            "spectral_centroid_hz": float(centroid[k]),
            "mfcc": [float(v) for v in mfcc[k]],
        }
        for k in range(W.shape[1])
    ]
    names = tuple(f"source_{i + 1}" for i in range(n))
    rule = "k-means (k-means++, seeded) on standardised MFCC 1-12 of the bases"
    return Grouping(groups, names, features, rule)


def group_components(
    W: np.ndarray,
    H: np.ndarray,
    n_sources: int,
    method: str = "percussive-harmonic",
    *,
    sample_rate: int,
    n_fft: int,
    hop: int,
    seed: int = 0,
) -> Grouping:
    """Group the ``k`` NMF components into ``n_sources`` sources.

    Parameters
    ----------
    W : ndarray, (n_freqs, k)
        Spectral bases (``n_freqs = n_fft // 2 + 1``).
    H : ndarray, (k, n_frames)
        Activations.
    n_sources : int
        Number of groups: 2 for ``percussive-harmonic``, ``k`` for ``none``, ``1..k`` for
        ``timbre``.
    method : {"percussive-harmonic", "timbre", "none"}
        Grouping rule (module docstring).
    sample_rate, n_fft, hop : int
        STFT parameters, to set filter widths in Hz and seconds.
    seed : int
        Seed of the k-means initialisation (``timbre``).

    Returns
    -------
    Grouping
        Groups, names (``("percussive", "harmonic")``, ``("source_1", …)`` or
        ``("component_1", …)``), and per-component features.
    """
    k = W.shape[1]
    check_grouping(method, n_sources, k)
    if method == "percussive-harmonic":
        return _percussive_harmonic(W, H, sample_rate, n_fft, hop)
    if method == "timbre":
        return _timbre(W, n_sources, sample_rate, n_fft, np.random.default_rng(seed))
    names = tuple(f"component_{i + 1}" for i in range(k))
    return Grouping([[i] for i in range(k)], names, [{} for _ in range(k)], "one per component")


def check_grouping(method: str, n_sources: int, k: int) -> None:
    """Raise :class:`~demix.errors.ParameterError` unless ``method`` can make ``n_sources`` of ``k``."""
    if method not in GROUPINGS:
        raise ParameterError(f"--group {method!r} is unknown; expected one of {', '.join(GROUPINGS)}")
    if method == "percussive-harmonic" and n_sources != 2:
        raise ParameterError(
            f"--group percussive-harmonic makes exactly 2 sources, got -n/--sources {n_sources}"
        )
    if method == "none" and n_sources != k:
        raise ParameterError(
            f"--group none makes one source per component: -n/--sources must equal "
            f"-k/--components {k}, got {n_sources}"
        )
    if not 1 <= n_sources <= k:
        raise ParameterError(
            f"-n/--sources {n_sources} is invalid; expected 1 to -k/--components {k}: "
            "every source needs a component"
        )
