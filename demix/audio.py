"""The only module that reads or writes audio.

Reading goes through soundfile (WAV, FLAC, OGG, MP3 and the other libsndfile formats) and falls
back to ffmpeg (the bundled one when the system has none) for any other container or codec.
Inside demix a signal is always ``(n_channels, n_samples)`` float64; this module alone converts
from soundfile's ``(frames, channels)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from demix.errors import AudioError, DemixError, ParameterError
from demix.types import Signal

if TYPE_CHECKING:
    from demix.ffmpeg import Ffmpeg

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".webm", ".wv"}
)
FORMATS = ("wav", "flac", "ogg", "opus", "mp3")
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
#: Lossy formats: (libsndfile container, codec). ``--subtype`` does not apply to them.
LOSSY = {"ogg": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}
#: Most channels each format holds (libsndfile's limits, checked before any work).
MAX_CHANNELS = {"wav": 1024, "flac": 8, "ogg": 255, "opus": 255, "mp3": 2}
#: The only sample rates the Opus codec takes.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# PCM_24 plays everywhere, its quantisation noise (-146 dBFS) lies far below any separation
# error, so scores do not move, and it is 25 % smaller than FLOAT. FLOAT is for --scale unit.
DEFAULT_SUBTYPE = "PCM_24"
# The loudest sample of a run is kept at or below this (-0.09 dBFS): PCM cannot hold 1.0 exactly.
PEAK_LIMIT = 0.99


def read_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> Signal:
    """Read an audio file (or a section of it) as ``(n_channels, n_samples)`` float64.

    Parameters
    ----------
    path : str or Path
        File to read: soundfile first (WAV, FLAC, OGG, MP3 …), then ffmpeg (the system's or the
        one bundled in the ``imageio-ffmpeg`` wheel) for any other container or codec: m4a/AAC,
        opus, and the audio track of mp4/mkv/webm video. Channel order is kept.
    sample_rate : int, optional
        Resample to this rate (soxr, high quality) when it differs from the file's.
    start, duration : float
        The section to read, in seconds of the file. soundfile seeks to the first sample, so
        only the section is read; through ffmpeg, ``-ss`` decodes from the key frame before it.
        A section that starts past the end, or ends past it, is refused with the file's length.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = _read_with_soundfile(path, start, duration)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        data, rate = _read_with_ffmpeg(path, start, duration)
    if data.shape[1] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: the file holds NaN or infinite samples")
    if sample_rate is not None and sample_rate != rate:
        data = resample(data, int(rate), sample_rate)
        rate = sample_rate
    return Signal(data=data, sample_rate=int(rate))


def _section(
    path: Path, rate: int, total: int | None, start: float, duration: float | None
) -> tuple[int, int]:
    """First frame and frame count (``-1``: to the end) of a section; refuse one outside the file."""
    first = round(start * rate)
    count = -1 if duration is None else round(duration * rate)
    if duration is not None and count < 1:
        raise ParameterError(f"--duration {duration:g} s is shorter than one sample at {rate} Hz")
    if total and (first >= total or (count > 0 and first + count > total)):
        end = "" if duration is None else f" to {start + duration:g} s"
        raise ParameterError(
            f"--start {start:g} s{end} is outside {path.name}, which lasts {total / rate:.3f} s"
        )
    return first, count


def _read_with_soundfile(path: Path, start: float, duration: float | None) -> tuple[np.ndarray, int]:
    with sf.SoundFile(path) as handle:
        rate = int(handle.samplerate)
        first, count = _section(path, rate, handle.frames, start, duration)
        if first:
            handle.seek(first)
        frames = handle.read(count, dtype="float64", always_2d=True)
    return np.ascontiguousarray(frames.T), rate


def _read_with_ffmpeg(path: Path, start: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode with ffmpeg into a float32 WAV in a private temporary folder, then read that."""
    import tempfile

    from demix.ffmpeg import Conversion, convert

    end = None if duration is None else start + duration
    ffmpeg = _ffmpeg_for(path)
    with tempfile.TemporaryDirectory(prefix="demix-decode-") as work:
        wav = Path(work) / "decoded.wav"
        section = Conversion(start=start or None, end=end)
        convert(ffmpeg, path, wav, section, str(path), seek=True, error=AudioError)
        frames, rate = sf.read(wav, dtype="float64", always_2d=True)
    data = np.ascontiguousarray(frames.T)
    if start and data.shape[1] == 0:
        raise ParameterError(f"--start {start:g} s is outside {path.name}")
    if duration is not None and data.shape[1] < round(duration * rate):
        raise ParameterError(
            f"--start {start:g} s to {start + duration:g} s is outside {path.name}, which ends at "
            f"{start + data.shape[1] / rate:.3f} s"
        )
    return data, int(rate)


def _ffmpeg_for(path: Path) -> Ffmpeg:
    """The ffmpeg that decodes what soundfile cannot, or an :class:`AudioError` naming ``path``."""
    from demix.ffmpeg import find_ffmpeg

    try:
        return find_ffmpeg()
    except DemixError:
        raise AudioError(f"{path}: not a format soundfile reads, and no ffmpeg to decode it") from None


def resample(data: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``(n_channels, n_samples)`` audio with soxr's high-quality filter (via librosa)."""
    if target_sr <= 0:
        raise ParameterError(f"--sr must be a positive rate in Hz, got {target_sr}")
    import librosa

    return np.atleast_2d(librosa.resample(data, orig_sr=orig_sr, target_sr=target_sr, axis=-1))


def validate_output_format(fmt: str, subtype: str, quality: float | None = None) -> None:
    """Refuse a format, subtype or quality demix does not write, naming the choices."""
    if fmt not in FORMATS:
        raise ParameterError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if subtype not in SUBTYPES:
        raise ParameterError(f"--subtype {subtype!r} is not one of {', '.join(SUBTYPES)}")
    if fmt == "flac" and subtype == "FLOAT":
        raise ParameterError("--subtype FLOAT cannot be written as FLAC; use --format wav")
    if quality is not None:
        if fmt not in LOSSY:
            raise ParameterError(f"--quality applies to the lossy formats ({', '.join(LOSSY)}), not {fmt}")
        if not 0.0 <= quality <= 1.0:
            raise ParameterError(f"--quality {quality:g} is invalid; expected a number from 0 to 1")


def check_format_limits(fmt: str, channels: int, sample_rate: int) -> None:
    """Refuse, before separating, audio that ``fmt`` cannot hold (channels, Opus rates)."""
    if channels > MAX_CHANNELS[fmt]:
        raise ParameterError(
            f"--format {fmt} holds at most {MAX_CHANNELS[fmt]} channel(s); these sources have {channels}: "
            "use --format wav" + (" or --no-images" if fmt == "mp3" else "")
        )
    if fmt == "opus" and sample_rate not in OPUS_RATES:
        rates = ", ".join(str(r // 1000) for r in OPUS_RATES)
        raise ParameterError(
            f"--format opus takes only {rates} kHz; this input is {sample_rate} Hz: add --sr 48000 "
            "(or 16000) to resample it"
        )


def write_audio(
    path: str | Path,
    data: np.ndarray,
    sample_rate: int,
    *,
    fmt: str = "wav",
    subtype: str = DEFAULT_SUBTYPE,
    quality: float | None = None,
) -> None:
    """Encode ``(n_channels, n_samples)`` audio to ``path``; refuse to clip silently.

    Lossy formats use their codec (``subtype`` is ignored) at ``quality`` from 0 (smallest) to 1
    (best), libsndfile's default when None. Atomicity is the caller's:
    :class:`demix.outputs.RunFolder` writes to a staged name and renames it into place once every
    output of a run is written.
    """
    data = np.atleast_2d(data)
    if (subtype != "FLOAT" or fmt in LOSSY) and np.max(np.abs(data), initial=0.0) > 1.0:
        raise AudioError(f"{Path(path).name}: samples exceed full scale; refusing to clip")
    if fmt in LOSSY:
        container, codec = LOSSY[fmt]
        level = None if quality is None else 1.0 - quality
        sf.write(path, data.T, sample_rate, subtype=codec, format=container, compression_level=level)
        return
    sf.write(path, data.T, sample_rate, subtype=subtype, format=fmt.upper())


def probe(path: str | Path) -> tuple[int, int, int]:
    """Sample rate, channels and frames of an audio file, from its header (no samples read)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    return int(info.samplerate), int(info.channels), int(info.frames)


def probe_any(path: str | Path) -> tuple[int, int, int]:
    """Sample rate, channels and frames of any file :func:`read_audio` reads, without decoding it.

    soundfile's header first; for the files only ffmpeg decodes (m4a/AAC, opus in webm, video),
    what ``ffmpeg -i`` prints (:func:`demix.ffmpeg.probe`): the frames are then the container's
    duration × rate, within about 10 ms plus the codec's priming and padding of the frames
    :func:`read_audio` returns.
    """
    from demix import ffmpeg

    try:
        return probe(path)
    except AudioError:
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"{path}: no such file") from None
        return ffmpeg.probe(_ffmpeg_for(path), path, str(path), error=AudioError)


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks so long recordings do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
