"""ffmpeg: which binary demix uses, and the one conversion it runs (any media → float32 WAV).

ffmpeg is the system's when one is on ``PATH``, otherwise the binary shipped in the
``imageio-ffmpeg`` wheel, so ``make install`` alone is enough. That wheel has no ffprobe and
nothing here needs one. The WAV is 32-bit float: decoded lossy audio is float and may exceed full
scale between samples, so float keeps it unclipped and adds no quantisation. Rate and channel
changes are ffmpeg's (``-ar``, and its standard downmix for ``-ac``: stereo to mono is
``(L + R) / √2``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from demix.errors import DemixError, FetchError, ParameterError


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
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    except OSError as exc:
        raise error(f"cannot run ffmpeg ({ffmpeg.path}): {exc}") from None
    if done.returncode != 0:
        if "matches no streams" in done.stderr:
            raise error(f"{label}: holds no audio stream")
        if "Invalid data found" in done.stderr:
            raise error(f"{label}: not audio or video that ffmpeg can read")
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise error(f"{label}: ffmpeg could not decode it ({reason})")
