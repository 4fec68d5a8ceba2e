r"""The one STFT convention of demix, and soft masks on it.

Every time-frequency method (``nmf``, and the spatial and masking methods) goes through these
functions, so a spectrogram means the same thing everywhere: librosa's STFT with a periodic Hann
window of ``n_fft`` samples, hop ``hop``, ``center=True`` (frames centred on ``t · hop``, the
signal padded by ``n_fft // 2`` at both ends); shape ``(..., n_freqs, n_frames)`` with
``n_freqs = n_fft // 2 + 1``. :func:`istft` inverts it to exactly ``length`` samples; with
``hop ≤ n_fft // 2`` the window satisfies the overlap-add condition, so ``istft(stft(x)) = x``
to float rounding.

Masks that sum to one over the sources (:func:`soft_masks`) make the separated sources sum back
to the mixture, because the inverse STFT is linear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = [
    "Readable",
    "apply_masks",
    "istft",
    "magnitude",
    "n_frames",
    "overlap_add_section",
    "soft_masks",
    "stft",
    "stft_frames",
]


class Readable(Protocol):
    """A recording read from disk a section at a time (:class:`demix.streaming.Recording`)."""

    @property
    def frames(self) -> int: ...

    @property
    def channels(self) -> int: ...

    def read(self, start: int, count: int) -> np.ndarray: ...


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """STFT of the last axis: ``(..., n_samples)`` real → ``(..., n_fft // 2 + 1, n_frames)`` complex."""
    import librosa

    return np.asarray(librosa.stft(x, n_fft=n_fft, hop_length=hop, center=True))


def istft(S: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft`: ``(..., n_freqs, n_frames)`` → ``(..., length)`` real."""
    import librosa

    return np.asarray(librosa.istft(S, hop_length=hop, n_fft=n_fft, length=length))


def stft_frames(recording: Readable, f0: int, f1: int, n_fft: int, hop: int) -> np.ndarray:
    """Frames ``f0 … f1 - 1`` of the recording's :func:`stft` ``(C, F, f1 - f0)``, read from disk.

    Only the samples those frames cover are read; the zeros :func:`stft` pads the signal's ends
    with are added where the frames reach beyond them, so the frames equal the whole STFT's.
    """
    import librosa

    first = f0 * hop - n_fft // 2
    stop = (f1 - 1) * hop - n_fft // 2 + n_fft  # the last frame's last sample, plus one
    lo, hi = max(first, 0), min(stop, recording.frames)
    x = np.zeros((recording.channels, stop - first))
    if hi > lo:
        x[:, lo - first : hi - first] = recording.read(lo, hi - lo)
    return np.asarray(librosa.stft(x, n_fft=n_fft, hop_length=hop, center=False))


def overlap_add_section(S: np.ndarray, f0: int, a: int, b: int, n_fft: int, hop: int) -> np.ndarray:
    """Samples ``a … b`` of the inverse :func:`stft` of frames ``f0 …`` of a recording; every frame
    overlapping those samples must be in ``S``, so they equal the whole inverse's."""
    import librosa

    y = np.asarray(librosa.istft(S, hop_length=hop, n_fft=n_fft, center=False))
    first = f0 * hop - n_fft // 2
    return y[..., a - first : b - first]


def n_frames(n_samples: int, hop: int) -> int:
    """Frames :func:`stft` makes from ``n_samples`` samples (``center=True``)."""
    return 1 + n_samples // hop


def magnitude(S: np.ndarray) -> np.ndarray:
    """Channel-RMS magnitude ``(n_freqs, n_frames)`` of a multichannel STFT ``(C, F, N)``."""
    P = np.einsum("cfn,cfn->fn", S.real, S.real) + np.einsum("cfn,cfn->fn", S.imag, S.imag)
    return np.sqrt(P / S.shape[0])


def soft_masks(models: Sequence[np.ndarray], power: float = 2.0) -> np.ndarray:
    r"""Masks :math:`M_j = m_j^p / \sum_i m_i^p` from non-negative models ``(F, N)`` each.

    ``power = 2`` on magnitude models is the Wiener filter of Gaussian sources; ``1`` is the
    ratio mask. Where every model is zero the masks share the bin equally, so they always sum
    to one. Returns ``(n_sources, F, N)``.
    """
    powered = np.power(np.stack([np.asarray(m, dtype=np.float64) for m in models]), power)
    total = powered.sum(axis=0)
    empty = total <= np.finfo(np.float64).tiny
    powered[:, empty] = 1.0
    total[empty] = len(models)
    return powered / total


def apply_masks(S: np.ndarray, masks: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Every mask ``(n_sources, F, N)`` on every channel of ``S`` ``(C, F, N)``, inverted.

    Returns ``(n_sources, C, length)``: each source as heard at every microphone.
    """
    out = np.empty((masks.shape[0], S.shape[0], length))
    for j, mask in enumerate(masks):
        out[j] = istft(S * mask, n_fft, hop, length)
    return out
