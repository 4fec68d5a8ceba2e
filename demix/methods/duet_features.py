r"""DUET's per-bin spatial features of a stereo STFT, their pan × delay histogram, and its peaks.

A stereo anechoic mixture of panned and delayed sources is, per time-frequency bin,

.. math::

    \mathbf x(f, n) = \sum_k \mathbf h_k(f)\, s_k(f, n), \qquad
    \mathbf h_k(f) = \begin{bmatrix}\cos\theta_k \\ \sin\theta_k\, e^{-i\omega_f d_k}\end{bmatrix},

with :math:`\theta_k` the pan (0 is channel 0 only, 90° channel 1 only), :math:`d_k` the delay in
samples (positive: channel 1 hears the source later) and :math:`\omega_f = 2\pi f / n_{fft}`
radians per sample. Under W-disjoint orthogonality (Yilmaz & Rickard 2004) one source dominates
each bin, so the bin's level ratio and phase difference tell which: the pan
:math:`\hat\theta = \arctan(|x_1| / |x_0|)` (we use the angle rather than DUET's symmetric
attenuation :math:`a - 1/a`: the same information, bounded, with even resolution) and the phase
:math:`\varphi = \arg(\bar x_0 x_1) = -\omega_f d`.

DUET estimates the delay per bin as :math:`-\varphi / \omega_f`, which is unambiguous only while
:math:`|\omega_f d| < \pi`, i.e. below :math:`f_s / (2|d|)` (2.7 kHz for 3 samples at 16 kHz).
The histogram here needs no unwrapping: every bin votes for all delays :math:`d` with
:math:`\cos(\varphi + \omega_f d)` (maximal at its own delay modulo the phase wrap), and the votes
of one frequency are divided by that frequency's energy so that high frequencies, whose phase
pins the delay down, count as much as the loud low ones (the PHAT weighting of generalised
cross-correlation, Knapp & Carter 1976). Summed over frequencies the wraps cancel and only the
true delay adds up coherently.

References
----------
.. [1] Ö. Yilmaz and S. Rickard, "Blind separation of speech mixtures via time-frequency
   masking", IEEE Trans. Signal Processing 52(7), 1830-1847, 2004.
.. [2] C. Knapp and G. Carter, "The generalized correlation method for estimation of time
   delay", IEEE Trans. Acoustics, Speech, and Signal Processing 24(4), 320-327, 1976.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BinFeatures",
    "BinSums",
    "PanDelayHistogram",
    "Peaks",
    "bin_features",
    "bin_sums",
    "find_peaks",
    "histogram_from_sums",
    "pan_delay_histogram",
]

# Resolution of the histogram: pan in degrees, delay in samples.
PAN_STEP_DEG = 0.5
DELAY_STEP = 0.125
# Gaussian smoothing of the histogram along the pan axis, in degrees.
PAN_SMOOTH_DEG = 1.0
# Closest two sources may be in pan and still be told apart by the histogram, in degrees.
MIN_PAN_SEP_DEG = 4.0
# Floor of the histogram in dB below its highest point when measuring peak contrast: a source 30 dB
# below the loudest is not separable by masking anyway, and the floor keeps empty pans from making
# deep valleys around stray bins.
FLOOR_DB = -30.0


@dataclass(frozen=True)
class BinFeatures:
    """Per-bin quantities of a stereo STFT ``(2, F, N)``, flattened frequency-major.

    Attributes
    ----------
    omega : ndarray, (F,)
        Angular frequency of each STFT row, radians per sample.
    p0 : ndarray, (F, N)
        Share of the bin's energy in channel 0, :math:`|x_0|^2 / \\|x\\|^2` (channel 1's is ``1 - p0``).
    cross : ndarray, (F, N) complex
        Normalised cross-spectrum :math:`\\bar x_0 x_1 / \\|x\\|^2`; its magnitude is
        :math:`\\sqrt{p_0 (1 - p_0)}` and its phase :math:`-\\omega_f d`.
    energy : ndarray, (F, N)
        :math:`\\|x\\|^2`, the bin's weight.
    """

    omega: np.ndarray
    p0: np.ndarray
    cross: np.ndarray
    energy: np.ndarray

    @property
    def pan_deg(self) -> np.ndarray:
        """Per-bin pan :math:`\\arctan(|x_1|/|x_0|)` in degrees, ``(F, N)``."""
        return np.degrees(np.arctan2(np.sqrt(np.clip(1.0 - self.p0, 0.0, 1.0)), np.sqrt(self.p0)))


def bin_features(S: np.ndarray, n_fft: int) -> BinFeatures:
    """Features of every bin of a stereo STFT ``S`` ``(2, F, N)`` (see :class:`BinFeatures`).

    Silent bins (zero energy) get ``p0 = 1/2``, ``cross = 0`` and zero weight.
    """
    e0 = S[0].real ** 2 + S[0].imag ** 2
    e1 = S[1].real ** 2 + S[1].imag ** 2
    energy = e0 + e1
    silent = energy <= np.finfo(np.float64).tiny
    safe = np.where(silent, 1.0, energy)
    p0 = np.where(silent, 0.5, e0 / safe)
    cross = np.where(silent, 0.0, np.conj(S[0]) * S[1] / safe)
    omega = 2.0 * np.pi * np.arange(S.shape[1]) / n_fft
    return BinFeatures(omega=omega, p0=p0, cross=cross, energy=np.where(silent, 0.0, energy))


@dataclass(frozen=True)
class PanDelayHistogram:
    """The weighted pan × delay histogram.

    Attributes
    ----------
    pans_deg : ndarray, (P,)
        Centres of the pan bins, 0 … 90 degrees.
    delays : ndarray, (D,)
        Delays in samples, ``-max_delay … max_delay``.
    pan_energy : ndarray, (P,)
        Share of the mixture's energy in bins of each pan (smoothed), summing to about one.
    coherence : ndarray, (P, D)
        How well the phases of the bins of each pan agree with each delay, ``-1 … 1``
        (frequencies weighted equally).
    """

    pans_deg: np.ndarray
    delays: np.ndarray
    pan_energy: np.ndarray
    coherence: np.ndarray

    @property
    def values(self) -> np.ndarray:
        """The 2-D histogram ``(P, D)``: pan energy times the non-negative delay coherence."""
        return self.pan_energy[:, None] * np.maximum(self.coherence, 0.0)


@dataclass(frozen=True)
class BinSums:
    """The sums over frames a :class:`PanDelayHistogram` is made from: they add over segments.

    ``energy`` ``(P, F')`` and ``votes`` ``(P, F')`` complex: per pan bin and frequency (DC and
    Nyquist left out), the bins' energy and their energy-weighted unit cross-spectra;
    ``total`` the energy of every bin counted.
    """

    energy: np.ndarray
    votes: np.ndarray
    total: float

    def __add__(self, other: BinSums) -> BinSums:
        return BinSums(self.energy + other.energy, self.votes + other.votes, self.total + other.total)


def bin_sums(features: BinFeatures) -> BinSums:
    """Each bin's energy and phase vote, summed into its pan bin at its frequency."""
    n_pan = round(90.0 / PAN_STEP_DEG) + 1
    F = features.p0.shape[0]
    rows = slice(1, F - 1)
    n_f = F - 2
    energy = features.energy[rows]
    phase = features.cross[rows]
    votes = energy * phase / np.maximum(np.abs(phase), np.finfo(np.float64).tiny)
    pan_bin = np.rint(features.pan_deg[rows] / PAN_STEP_DEG).astype(np.int64)
    index = (pan_bin * n_f + np.arange(n_f)[:, None]).ravel()
    size = n_pan * n_f
    E = np.bincount(index, energy.ravel(), size).reshape(n_pan, n_f)
    P = np.bincount(index, votes.real.ravel(), size) + 1j * np.bincount(index, votes.imag.ravel(), size)
    return BinSums(E, P.reshape(n_pan, n_f), float(energy.sum()))


def pan_delay_histogram(features: BinFeatures, max_delay: float) -> PanDelayHistogram:
    r"""Weighted histogram of the bins' pan and delay, with phase votes instead of unwrapping.

    The pan axis is DUET's power-weighted histogram of :math:`\hat\theta`; the delay axis is,
    for the bins of each pan, the phase coherence

    .. math::

        C(\theta, d) = \frac{1}{|F_\theta|} \sum_{f \in F_\theta}
            \frac{\sum_{n:\,\hat\theta(f,n) \in \theta} \|x(f,n)\|^2
                   \cos\bigl(\varphi(f,n) + \omega_f d\bigr)}
                  {\sum_{n:\,\hat\theta(f,n) \in \theta} \|x(f,n)\|^2},

    each frequency :math:`f \in F_\theta` that has bins of that pan counting once. Both are
    smoothed along the pan axis by a Gaussian of :data:`PAN_SMOOTH_DEG`. The DC and Nyquist rows
    carry no phase and are left out.
    """
    return histogram_from_sums(bin_sums(features), features.omega, max_delay)


def histogram_from_sums(sums: BinSums, omega: np.ndarray, max_delay: float) -> PanDelayHistogram:
    """The :func:`pan_delay_histogram` of the bins ``sums`` adds up (of one STFT or of many
    segments' STFTs: the same histogram as of the whole)."""
    from scipy.ndimage import gaussian_filter1d

    n_pan = sums.energy.shape[0]
    pans = np.linspace(0.0, 90.0, n_pan)
    n_side = max(1, int(np.ceil(max_delay / DELAY_STEP)))
    delays = np.linspace(-max_delay, max_delay, 2 * n_side + 1)
    sigma = PAN_SMOOTH_DEG / PAN_STEP_DEG
    E = gaussian_filter1d(sums.energy, sigma, axis=0, mode="constant")
    P = gaussian_filter1d(sums.votes.real, sigma, axis=0, mode="constant") + 1j * gaussian_filter1d(
        sums.votes.imag, sigma, axis=0, mode="constant"
    )
    present = 1e-12 * max(float(E.max()), np.finfo(np.float64).tiny) < E
    unit = np.where(present, P / np.where(present, E, 1.0), 0.0)
    steer = np.exp(1j * np.outer(omega[1:-1], delays))  # (F', D)
    coherence = (unit @ steer).real / np.maximum(present.sum(axis=1, keepdims=True), 1)
    total = max(sums.total, np.finfo(np.float64).tiny)
    return PanDelayHistogram(
        pans_deg=pans, delays=delays, pan_energy=E.sum(axis=1) / total, coherence=coherence
    )


@dataclass(frozen=True)
class Peaks:
    """Candidate sources found in the histogram, highest first.

    Attributes
    ----------
    pans_deg, delays, heights : ndarray, (n,)
        Each peak's pan, the delay of highest coherence at that pan, and its height in the pan
        histogram (share of the mixture's energy per pan bin).
    contrast_db : ndarray, (n,)
        How far the peak stands above the higher of the two valleys that separate it from higher
        peaks (its topographic prominence, :func:`scipy.signal.peak_prominences`) on the
        histogram in dB, floored at :data:`FLOOR_DB` below the highest peak; the highest peak
        gets ``-FLOOR_DB``. A source makes a sharp peak; bins where two sources overlap spread
        between their pans and make low humps.
    """

    pans_deg: np.ndarray
    delays: np.ndarray
    heights: np.ndarray
    contrast_db: np.ndarray


def find_peaks(hist: PanDelayHistogram, *, min_pan_sep_deg: float = MIN_PAN_SEP_DEG) -> Peaks:
    """Every peak of the pan histogram at least ``min_pan_sep_deg`` from a higher one."""
    from scipy.signal import find_peaks as scipy_peaks
    from scipy.signal import peak_prominences

    # Zero padding at both ends lets a source panned hard left or right (0° or 90°) be a peak.
    padded = np.concatenate([[0.0], hist.pan_energy, [0.0]])
    top = max(float(padded.max()), np.finfo(np.float64).tiny)
    level_db = 10.0 * np.log10(np.maximum(padded, top * 10.0 ** (FLOOR_DB / 10.0)))
    idx, _ = scipy_peaks(level_db, distance=max(1, round(min_pan_sep_deg / PAN_STEP_DEG)))
    contrast = peak_prominences(level_db, idx)[0] if len(idx) else np.zeros(0)
    idx = idx - 1
    heights = hist.pan_energy[idx]
    order = np.argsort(-heights, kind="stable")
    idx = idx[order]
    delays = hist.delays[np.argmax(hist.coherence[idx], axis=1)]
    return Peaks(
        pans_deg=hist.pans_deg[idx], delays=delays, heights=heights[order], contrast_db=contrast[order]
    )
