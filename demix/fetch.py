"""The only network code: a URL's best audio stream, downloaded by yt-dlp, converted to WAV, cached.

``URL ─yt-dlp─▶ best audio stream ─ffmpeg─▶ WAV (float32, --sr, --channels) ─▶ cache ─▶ file``

yt-dlp is driven through its Python API and imported inside the functions that use it, so
``demix --help`` stays instant. ffmpeg is the system's when one is on ``PATH``, otherwise the
binary shipped in the ``imageio-ffmpeg`` wheel. That wheel has no ffprobe and nothing here needs
one: yt-dlp uses ffmpeg only to download sections (``--start``/``--end``), and demix converts the
download itself with one ffmpeg call.

The WAV is 32-bit float: decoded lossy audio is float and may exceed full scale between samples,
so float keeps it unclipped and adds no quantisation. Rate and channel changes are ffmpeg's
(``-ar``, and its standard downmix for ``-ac``: stereo to mono is ``(L + R) / √2``).

The cache (``$DEMIX_CACHE_DIR``, else ``$XDG_CACHE_HOME/demix`` or ``~/.cache/demix``) holds one
WAV and one JSON sidecar per URL and conversion settings. A download runs in a private folder
inside the cache that is removed whatever happens; the WAV is renamed into place and the sidecar
written last, so an entry with a sidecar is complete and nothing partial is ever left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demix.audio import AUDIO_EXTENSIONS, probe
from demix.errors import FetchError, OutputError, ParameterError
from demix.ffmpeg import Conversion, Ffmpeg, convert, find_ffmpeg
from demix.outputs import safe_name, write_atomically

SCHEMES = ("http", "https")
# Bump when the conversion changes, so older cache entries are not mistaken for new ones.
_CACHE_VERSION = 1
_STALE_S = 24 * 3600
_SECTION_MARGIN_S = 0.5
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONNECTION = re.compile(r"^\w*Connection(?:Pool)?\([^)]*\):\s*")


@dataclass(frozen=True)
class Media:
    """What the extractor said about a URL: the manifest's record of a URL input."""

    url: str
    id: str
    title: str
    extractor: str

    @property
    def stem(self) -> str:
        """A file-system-safe name from the title and the id (the id alone when they agree)."""
        title = safe_name(self.title, default="")[:80].strip("._-")
        ident = safe_name(self.id, default="")
        if not title or title == ident:
            return ident or url_stem(self.url)
        return f"{title}_{ident}" if ident else title

    def record(self) -> dict[str, str]:
        return {"url": self.url, "id": self.id, "title": self.title, "extractor": self.extractor}


@dataclass(frozen=True)
class Fetched:
    """A URL's audio as a local WAV (in the cache, or where :func:`fetch_to_file` put it)."""

    media: Media
    path: Path
    sample_rate: int
    channels: int
    frames: int
    cached: bool

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class FetchProgress:
    """One report to a progress hook: ``stage`` is ``download`` (bytes) or ``convert``."""

    url: str
    title: str
    stage: str
    done: int = 0
    total: int | None = None


ProgressHook = Callable[[FetchProgress], None]
Log = Callable[[str], None]


def looks_like_url(spec: str) -> bool:
    """True when ``spec`` starts with a URL scheme (``http:``, ``file:``, ``ftp:``…), not a path.

    One-letter schemes are Windows drives (``C:``), so they do not count.
    """
    return _SCHEME.match(spec) is not None


def check_url(url: str) -> str:
    """Accept only ``http(s)://host…`` URLs: ``file:``, ``ftp:`` and the rest are refused."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        scheme = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise ParameterError(f"{url}: only http:// and https:// URLs can be fetched, not {scheme}")
    if not parts.hostname:
        raise ParameterError(f"{url}: the URL names no host")
    return url


def url_stem(url: str) -> str:
    """A safe name from the URL alone (its last path segment, or its host), for when no title is known."""
    parts = urlsplit(url)
    segment = Path(parts.path).stem or parts.hostname or "url"
    return safe_name(segment, default="url")


def parse_time(text: str | None, option: str) -> float | None:
    """Seconds from ``"90"``, ``"1:30"`` or ``"1:02:03.5"``; the error names ``option``."""
    if text is None:
        return None
    try:
        seconds = 0.0
        for part in text.strip().split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise ParameterError(f"{option} {text!r} is not a time: give seconds (90) or [hh:]mm:ss") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ParameterError(f"{option} {text!r} must be a finite time ≥ 0")
    return seconds


def cache_dir() -> Path:
    """``$DEMIX_CACHE_DIR``, else ``$XDG_CACHE_HOME/demix``, else ``~/.cache/demix``."""
    if env := os.environ.get("DEMIX_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "demix"


def fetch_audio(
    url: str,
    conversion: Conversion | None = None,
    *,
    cache: Path | None = None,
    ffmpeg: Ffmpeg | None = None,
    progress: ProgressHook | None = None,
    log: Log | None = None,
    check: Callable[[Media], None] | None = None,
) -> Fetched:
    """Download ``url``'s best audio stream as a WAV in the cache, or find it there.

    Parameters
    ----------
    url : str
        An http(s) URL that yt-dlp knows (a video page) or a direct link to audio or video.
    conversion : Conversion, optional
        Rate, channels and section; the default keeps the source's rate and channels, whole.
    cache : Path, optional
        Cache folder; default :func:`cache_dir`. A temporary folder gives a throwaway cache.
    progress, log : callable, optional
        Receive download/convert progress, and yt-dlp's messages (for ``--verbose``).
    check : callable, optional
        Called with the media's id and title once known and before anything is downloaded (so
        an output name can be refused early); whatever it raises propagates.

    Raises
    ------
    FetchError
        No network, an unsupported URL, an unavailable video, a download cut off, no audio.
    """
    url = check_url(url)
    conversion = conversion or Conversion()
    conversion.validate()
    root = cache if cache is not None else cache_dir()
    key = _cache_key(url, conversion)
    entry = root / "audio" / f"{key}.wav"
    hit = _lookup(entry)
    if hit is not None:
        if check is not None:
            check(hit.media)
        return hit
    ffmpeg = ffmpeg or find_ffmpeg()
    with _workdir(root) as work:
        media, download = _download(url, conversion, work, root, ffmpeg, progress, log, check)
        if progress is not None:
            progress(FetchProgress(url, media.title, "convert"))
        wav = work / "audio.wav"
        convert(ffmpeg, download, wav, conversion, f"{url}: the download")
        rate, channels, frames = probe(wav)
        if frames == 0:
            where = " between --start and --end" if conversion.sections else ""
            raise FetchError(f"{url}: no audio{where}: the media is shorter, or holds no sound")
        sidecar = {**media.record(), "sample_rate": rate, "channels": channels, "frames": frames}
        sidecar["conversion"] = dataclasses.asdict(conversion)
        entry.parent.mkdir(parents=True, exist_ok=True)
        os.replace(wav, entry)
        try:
            _write_json(entry.with_suffix(".json"), sidecar, work)
        except BaseException:
            entry.unlink(missing_ok=True)
            raise
    return Fetched(media, entry, rate, channels, frames, cached=False)


def fetch_to_file(
    url: str,
    out: Path,
    conversion: Conversion | None = None,
    *,
    force: bool = False,
    use_cache: bool = True,
    ffmpeg: Ffmpeg | None = None,
    progress: ProgressHook | None = None,
    log: Log | None = None,
) -> Fetched:
    """``demix fetch``: write ``url``'s audio to ``out`` (a ``.wav`` file, or a folder).

    In a folder the file is named from the title and id. An existing file is replaced only with
    ``force``; a named file is checked before anything is downloaded. The file is written under
    a hidden temporary name and renamed into place, so a failure leaves nothing in ``out``.
    """
    target = output_target(out)
    if target is not None:
        _check_output(target, force)

    def check(media: Media) -> None:
        _check_output(target or out / f"{media.stem}.wav", force)

    with contextlib.ExitStack() as stack:
        cache = None if use_cache else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        fetched = fetch_audio(
            url, conversion, cache=cache, ffmpeg=ffmpeg, progress=progress, log=log, check=check
        )
        dest = target or out / f"{fetched.media.stem}.wav"
        _check_output(dest, force)
        if dest.resolve() == fetched.path.resolve():
            raise OutputError(f"output {dest} is the cached download itself; choose another place")
        write_atomically(dest, lambda tmp: shutil.copyfile(fetched.path, tmp))
    return dataclasses.replace(fetched, path=dest)


def output_target(out: Path) -> Path | None:
    """``out`` itself when it names a ``.wav`` file, None when it is a folder to name a file in."""
    if out.is_dir():
        return None
    suffix = out.suffix.lower()
    if suffix == ".wav":
        return out
    if suffix in AUDIO_EXTENSIONS:
        raise ParameterError(f"-o {out}: demix fetch writes WAV; name the file .wav or give a folder")
    return None


# --- the download --------------------------------------------------------------------------------


def _download(
    url: str,
    conversion: Conversion,
    work: Path,
    root: Path,
    ffmpeg: Ffmpeg,
    progress: ProgressHook | None,
    log: Log | None,
    check: Callable[[Media], None] | None,
) -> tuple[Media, Path]:
    """yt-dlp's best audio stream of ``url`` into ``work/download/``; the media and the file."""
    import yt_dlp
    from yt_dlp.utils import YoutubeDLError

    folder = work / "download"
    title = url

    def hook(status: dict[str, Any]) -> None:
        if progress is None or status.get("status") not in ("downloading", "finished"):
            return
        done = int(status.get("downloaded_bytes") or 0)
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        progress(FetchProgress(url, title, "download", done, int(total) if total else None))

    options = _ydl_options(conversion, folder, root, ffmpeg, hook, log)
    try:
        with _ffmpeg_for_ytdlp(ffmpeg), yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
            media = _media(url, info)
            title = media.title
            if check is not None:
                check(media)
            ydl.process_ie_result(info, download=True)
    except YoutubeDLError as exc:
        raise FetchError(_explain(url, exc)) from None
    files = [p for p in folder.glob("*") if p.is_file() and p.suffix not in (".part", ".ytdl")]
    if len(files) != 1:
        raise FetchError(f"{url}: yt-dlp reported success but left {len(files)} file(s) instead of one")
    return media, files[0]


def _ydl_options(
    conversion: Conversion,
    folder: Path,
    root: Path,
    ffmpeg: Ffmpeg,
    hook: Callable[[dict[str, Any]], None],
    log: Log | None,
) -> dict[str, Any]:
    from yt_dlp.utils import download_range_func

    options: dict[str, Any] = {
        "format": "bestaudio/best",
        "outtmpl": {"default": str(folder / "media.%(ext)s")},
        "noplaylist": True,
        "extract_flat": "in_playlist",  # a playlist URL is refused without resolving every entry
        "quiet": True,
        "no_warnings": log is None,
        "noprogress": True,
        "no_color": True,
        "logger": _Logger(log),
        "progress_hooks": [hook],
        "ffmpeg_location": ffmpeg.path,
        # ffmpeg downloads sections and exits 0 on a dropped connection unless told otherwise
        "external_downloader_args": {"ffmpeg_o": ["-xerror"]},
        "cachedir": str(root / "yt-dlp"),
        "retries": 3,
        "fragment_retries": 3,
        "socket_timeout": 30,
        "continuedl": False,
        "overwrites": True,
    }
    if conversion.sections:
        # Stream copy cuts at packet boundaries and may stop short of --end: fetch a little more
        # and let the conversion trim to the sample.
        end = conversion.end + _SECTION_MARGIN_S if conversion.end is not None else float("inf")
        options["download_ranges"] = download_range_func(None, [(conversion.start or 0.0, end)])
    return options


@contextlib.contextmanager
def _ffmpeg_for_ytdlp(ffmpeg: Ffmpeg) -> Iterator[None]:
    """Point yt-dlp's class-level ffmpeg lookup at ours, as its own command line does.

    ``ffmpeg_location`` reaches the postprocessors, but yt-dlp decides whether sections can be
    downloaded with a check that reads only this context variable.
    """
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
    if location is None:
        yield
        return
    token = location.set(ffmpeg.path)
    try:
        yield
    finally:
        location.reset(token)


def _media(url: str, info: dict[str, Any] | None) -> Media:
    if not info:
        raise FetchError(f"{url}: yt-dlp found nothing to download")
    if info.get("_type") == "playlist" or "entries" in info:
        raise FetchError(f"{url} is a playlist; give the URL of one video")
    ident = str(info.get("id") or "")
    return Media(url, ident, str(info.get("title") or ident), str(info.get("extractor") or "generic"))


class _Logger:
    """yt-dlp's messages go to ``log`` (shown with ``--verbose``); errors arrive as exceptions."""

    def __init__(self, log: Log | None) -> None:
        self._log = log

    def debug(self, message: str) -> None:
        if self._log is not None and not message.startswith("[debug] "):
            self._log(_clean(message))

    info = debug

    def warning(self, message: str) -> None:
        if self._log is not None:
            self._log(f"yt-dlp warning: {_clean(message)}")

    def error(self, message: str) -> None:
        """Reported once, by the CLI, from the DownloadError that follows."""


def _explain(url: str, exc: Exception) -> str:
    """yt-dlp's error as one line that says what went wrong, starting with the URL."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import UnsupportedError

    cause = getattr(exc, "exc_info", None)
    cause = cause[1] if cause else exc
    if isinstance(cause, UnsupportedError):
        return f"{url}: unsupported URL: no yt-dlp extractor knows it, and it links to no audio or video"
    if isinstance(cause, HTTPError):
        return f"{url}: HTTP error {cause.status} ({cause.reason})"
    if isinstance(cause, TransportError):
        host = urlsplit(url).hostname
        reason = _CONNECTION.sub("", _clean(str(cause.cause or cause)))
        return f"{url}: cannot connect to {host} ({reason}); check the network connection"
    message = _clean(str(exc))
    if "more expected" in message or "ffmpeg exited" in message:
        return f"{url}: the download was cut off ({message}); try again"
    return f"{url}: {message}"


def _clean(message: str) -> str:
    """First line, no colours, no ``ERROR:``/``[download]`` prefixes, no ``caused by`` tail."""
    for line in _ANSI.sub("", message).replace("\r", "\n").splitlines():
        text = re.sub(r"^\s*(?:(?:ERROR|WARNING):\s*)?(?:\[download\]\s*)?", "", line).strip()
        if text:
            return re.sub(r"\s*\(caused by .*\)$", "", text)
    return message.strip()


# --- cache and output ----------------------------------------------------------------------------


def _cache_key(url: str, conversion: Conversion) -> str:
    """The cache entry's name: URL and every conversion setting (and the cache layout's version)."""
    fields = {"v": _CACHE_VERSION, "url": url, **dataclasses.asdict(conversion)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _lookup(entry: Path) -> Fetched | None:
    try:
        meta = json.loads(entry.with_suffix(".json").read_text())
        media = Media(meta["url"], meta["id"], meta["title"], meta["extractor"])
        if not entry.is_file():
            return None
        return Fetched(media, entry, meta["sample_rate"], meta["channels"], meta["frames"], cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _workdir(root: Path) -> Iterator[Path]:
    """A private folder under ``root/tmp`` for one download, removed whatever happens."""
    parent = root / "tmp"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=parent))
    except OSError as exc:
        raise FetchError(f"cannot use the cache folder {root} ({exc}); set DEMIX_CACHE_DIR") from None
    _sweep(parent)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sweep(parent: Path) -> None:
    """Remove work folders a killed process left behind (older than a day, so never a live one)."""
    cutoff = time.time() - _STALE_S
    for old in parent.glob("fetch-*"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, payload: dict[str, Any], work: Path) -> None:
    tmp = work / "sidecar.json"
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def _check_output(dest: Path, force: bool) -> None:
    if dest.is_dir():
        raise OutputError(f"output {dest} is a folder")
    if dest.exists() and not force:
        raise OutputError(f"output {dest} already exists; use --force to replace it")


def convert_file(
    source: Path, out: Path, conversion: Conversion, *, force: bool = False, ffmpeg: Ffmpeg | None = None
) -> Fetched:
    """``demix fetch LOCAL_FILE``: convert (and cut) a local audio or video file to a float32 WAV.

    The same conversion as for a download, sample-accurate from ``conversion.start`` (ffmpeg
    seeks in the file); ``out`` is a ``.wav`` file or a folder for ``<stem>.wav``. The source is
    never written over, and the WAV is written atomically.
    """
    if not source.is_file():
        raise ParameterError(f"{source}: no such file (and not an http:// or https:// URL)")
    dest = output_target(out) or out / f"{safe_name(source.stem)}.wav"
    if dest.exists() and dest.resolve() == source.resolve():
        raise OutputError(f"output {dest} is the input itself; choose another name")
    _check_output(dest, force)
    ffmpeg = ffmpeg or find_ffmpeg()
    write_atomically(dest, lambda tmp: convert(ffmpeg, source, tmp, conversion, str(source), seek=True))
    rate, channels, frames = probe(dest)
    wanted = None if conversion.end is None else round((conversion.end - (conversion.start or 0.0)) * rate)
    if frames == 0 or (wanted is not None and frames < wanted):
        dest.unlink()
        raise ParameterError(
            f"--start/--end {conversion.start or 0:g}-{conversion.end or 0:g} s lies outside {source} "
            f"({frames / rate:.3f} s of it were there)"
        )
    media = Media(url=str(source), id=safe_name(source.stem), title=source.stem, extractor="local file")
    return Fetched(media=media, path=dest, sample_rate=rate, channels=channels, frames=frames, cached=False)
