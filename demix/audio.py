"""The only module that reads or writes audio.

Reading goes through soundfile (WAV, FLAC, OGG, MP3 and the other libsndfile formats) and falls
back to librosa (audioread/ffmpeg) for anything else. Inside demix a signal is always
``(n_channels, n_samples)`` float64; this module alone converts from soundfile's
``(frames, channels)``.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from demix.errors import AudioError, ParameterError
from demix.types import Signal

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".webm", ".wv"}
)
FORMATS = ("wav", "flac")
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
# PCM_24 plays everywhere, its quantisation noise (-146 dBFS) lies far below any separation
# error, so scores do not move, and it is 25 % smaller than FLOAT. FLOAT is for --scale unit.
DEFAULT_SUBTYPE = "PCM_24"
# The loudest sample of a run is kept at or below this (-0.09 dBFS): PCM cannot hold 1.0 exactly.
PEAK_LIMIT = 0.99


def read_audio(path: str | Path, *, sample_rate: int | None = None) -> Signal:
    """Read an audio file as ``(n_channels, n_samples)`` float64, resampled if asked.

    Parameters
    ----------
    path : str or Path
        File to read; soundfile first, librosa for formats libsndfile does not know.
    sample_rate : int, optional
        Resample to this rate (soxr, high quality) when it differs from the file's.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        frames, rate = sf.read(path, dtype="float64", always_2d=True)
        data = np.ascontiguousarray(frames.T)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        data, rate = _read_with_librosa(path)
    if data.shape[1] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: the file holds NaN or infinite samples")
    if sample_rate is not None and sample_rate != rate:
        data = resample(data, int(rate), sample_rate)
        rate = sample_rate
    return Signal(data=data, sample_rate=int(rate))


def _read_with_librosa(path: Path) -> tuple[np.ndarray, int]:
    import librosa

    try:
        with warnings.catch_warnings():  # librosa announces its own audioread fallback
            warnings.simplefilter("ignore")
            data, rate = librosa.load(path, sr=None, mono=False, dtype=np.float64)
    except Exception as exc:  # audioread raises many unrelated types
        raise AudioError(f"{path}: not a readable audio file ({type(exc).__name__})") from None
    return np.atleast_2d(data), int(rate)


def resample(data: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``(n_channels, n_samples)`` audio with soxr's high-quality filter (via librosa)."""
    if target_sr <= 0:
        raise ParameterError(f"--sr must be a positive rate in Hz, got {target_sr}")
    import librosa

    return np.atleast_2d(librosa.resample(data, orig_sr=orig_sr, target_sr=target_sr, axis=-1))


def validate_output_format(fmt: str, subtype: str) -> None:
    """Refuse a format or subtype demix does not write, naming the choices."""
    if fmt not in FORMATS:
        raise ParameterError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if subtype not in SUBTYPES:
        raise ParameterError(f"--subtype {subtype!r} is not one of {', '.join(SUBTYPES)}")
    if fmt == "flac" and subtype == "FLOAT":
        raise ParameterError("--subtype FLOAT cannot be written as FLAC; use --format wav")


def write_audio(
    path: str | Path,
    data: np.ndarray,
    sample_rate: int,
    *,
    fmt: str = "wav",
    subtype: str = DEFAULT_SUBTYPE,
) -> None:
    """Encode ``(n_channels, n_samples)`` audio to ``path``; refuse to clip PCM silently.

    Atomicity is the caller's: :class:`demix.outputs.RunFolder` writes to a staged name and
    renames it into place once every output of a run is written.
    """
    data = np.atleast_2d(data)
    if subtype != "FLOAT" and np.max(np.abs(data), initial=0.0) > 1.0:
        raise AudioError(f"{Path(path).name}: samples exceed full scale; refusing to clip")
    sf.write(path, data.T, sample_rate, subtype=subtype, format=fmt.upper())


def probe(path: str | Path) -> tuple[int, int, int]:
    """Sample rate, channels and frames of an audio file, from its header (no samples read)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    return int(info.samplerate), int(info.channels), int(info.frames)


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks so long recordings do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
