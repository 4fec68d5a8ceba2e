"""ffmpeg: which binary demix uses, and the one conversion it runs (any media → float32 WAV).

ffmpeg is the system's when one is on ``PATH``, otherwise the binary shipped in the
``imageio-ffmpeg`` wheel, so ``make install`` alone is enough. That wheel has no ffprobe and
nothing here needs one: :func:`probe` reads what ``ffmpeg -i`` prints. The WAV is 32-bit float:
decoded lossy audio is float and may exceed full scale between samples, so float keeps it
unclipped and adds no quantisation. Rate and channel changes are ffmpeg's (``-ar``, and its
standard downmix for ``-ac``: stereo to mono is ``(L + R) / √2``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from demix.errors import DemixError, FetchError, ParameterError

#: ``Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / …), 44100 Hz, stereo, fltp, …``
_AUDIO_STREAM = re.compile(r"^\s*Stream #[^:]+:\d+\S*: Audio: .*?, (\d+) Hz, ([^,]+)", re.MULTILINE)
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
#: Channels of the layouts ffmpeg names by a word; numbered ones (``5.1(side)``, ``7.1.4``) add up.
_NAMED_LAYOUTS = {
    "mono": 1, "stereo": 2, "binaural": 2, "downmix": 2, "quad": 4, "hexagonal": 6, "octagonal": 8,
    "cube": 8, "hexadecagonal": 16,
}  # fmt: skip


@dataclass(frozen=True)
class Ffmpeg:
    """The ffmpeg binary in use and where it came from (``system`` or ``imageio-ffmpeg``)."""

    path: str
    source: str


@dataclass(frozen=True)
class Conversion:
    """How the download becomes a WAV; every field is part of the cache key.

    ``None`` keeps the source's rate and channels; ``start``/``end`` (seconds) fetch one section.
    """

    sample_rate: int | None = None
    channels: int | None = None
    start: float | None = None
    end: float | None = None

    def validate(self) -> None:
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ParameterError(f"--sr must be a positive rate in Hz, got {self.sample_rate}")
        if self.channels is not None and self.channels < 1:
            raise ParameterError(f"--channels must be ≥ 1, got {self.channels}")
        if self.start is not None and self.start < 0:
            raise ParameterError(f"--start must be ≥ 0 seconds, got {self.start}")
        if self.end is not None and self.end <= (self.start or 0.0):
            raise ParameterError(f"--end ({self.end} s) must come after --start ({self.start or 0.0} s)")

    @property
    def sections(self) -> bool:
        return self.start is not None or self.end is not None


def find_ffmpeg() -> Ffmpeg:
    """The system's ffmpeg when one is on PATH, else the one in the imageio-ffmpeg wheel."""
    system = shutil.which("ffmpeg")
    if system:
        return Ffmpeg(system, "system")
    try:
        import imageio_ffmpeg

        return Ffmpeg(imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg")
    except (ImportError, RuntimeError):
        raise FetchError(
            "ffmpeg not found: install ffmpeg, or `pip install imageio-ffmpeg` for a bundled one"
        ) from None


def convert(
    ffmpeg: Ffmpeg,
    source: Path,
    dest: Path,
    conversion: Conversion,
    label: str,
    *,
    seek: bool = False,
    error: type[DemixError] = FetchError,
) -> None:
    """The first audio stream of ``source`` as a float32 WAV (RF64 beyond 4 GB).

    With ``seek`` the section starts at ``conversion.start`` (ffmpeg decodes from the nearest
    earlier key frame and drops samples up to the start, so the cut is sample-accurate); without
    it ``source`` already starts at the section (a download cut by yt-dlp, with a margin that
    ``-t`` trims). ``label`` names the source in errors, raised as ``error``.
    """
    cmd = [ffmpeg.path, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if seek and conversion.start:
        cmd += ["-ss", f"{conversion.start:.6f}"]
    cmd += ["-i", str(source), "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if conversion.end is not None:
        cmd += ["-t", f"{conversion.end - (conversion.start or 0.0):.6f}"]
    if conversion.channels is not None:
        cmd += ["-ac", str(conversion.channels)]
    if conversion.sample_rate is not None:
        cmd += ["-ar", str(conversion.sample_rate)]
    cmd += ["-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", str(dest)]
    done = _run(ffmpeg, cmd, error)
    if done.returncode != 0:
        raise error(_failure(label, done.stderr, done.returncode))


def probe(
    ffmpeg: Ffmpeg, source: Path, label: str, *, error: type[DemixError] = FetchError
) -> tuple[int, int, int]:
    """Sample rate, channels and frames of the first audio stream of ``source`` (as :func:`convert`
    decodes it), from what ``ffmpeg -i`` prints; no samples are decoded.

    Frames are the container's duration × rate: ffmpeg prints the duration to 10 ms, it covers
    every stream of a video, and it may count the codec's priming and padding, so the frames
    decoded differ from it by up to a few codec frames. A container that records no duration
    (a webm written live) is decoded to nothing to measure it.
    """
    text = _run(ffmpeg, [ffmpeg.path, "-nostdin", "-hide_banner", "-i", str(source)], error).stderr
    stream = _AUDIO_STREAM.search(text)
    if stream is None:
        raise error(f"{label}: holds no audio stream" if "Stream #" in text else _failure(label, text, 1))
    rate, channels = int(stream.group(1)), _layout_channels(stream.group(2))
    length = _DURATION.search(text)
    if length is None:
        seconds = _decoded_seconds(ffmpeg, source, label, error)
    else:
        hours, minutes, secs = length.groups()
        seconds = 3600 * int(hours) + 60 * int(minutes) + float(secs)
    return rate, channels, round(seconds * rate)


def _layout_channels(layout: str) -> int:
    """Channels of a layout as ffmpeg prints it: ``stereo``, ``5.1(side)``, ``6 channels``, ``FL+FR+LFE``."""
    name = re.sub(r"\(.*\)", "", layout).strip()
    counted = re.match(r"(\d+) channels", name)
    if counted:
        return int(counted.group(1))
    if re.fullmatch(r"\d+(\.\d+)+", name):
        return sum(int(part) for part in name.split("."))
    return _NAMED_LAYOUTS.get(name, name.count("+") + 1)


def _decoded_seconds(ffmpeg: Ffmpeg, source: Path, label: str, error: type[DemixError]) -> float:
    """Seconds of the first audio stream, decoded to ffmpeg's null muxer (no samples kept)."""
    cmd = [ffmpeg.path, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(source)]
    cmd += ["-map", "0:a:0", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    done = _run(ffmpeg, cmd, error)
    times = re.findall(r"^out_time_us=(\d+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not times:
        raise error(_failure(label, done.stderr, done.returncode))
    return int(times[-1]) / 1e6


def _run(ffmpeg: Ffmpeg, cmd: list[str], error: type[DemixError]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    except OSError as exc:
        raise error(f"cannot run ffmpeg ({ffmpeg.path}): {exc}") from None


def _failure(label: str, stderr: str, returncode: int) -> str:
    """Why ffmpeg could not read ``label``, from its error output."""
    if "matches no streams" in stderr:
        return f"{label}: holds no audio stream"
    if "Invalid data found" in stderr:
        return f"{label}: not audio or video that ffmpeg can read"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {returncode}"
    return f"{label}: ffmpeg could not decode it ({reason})"
