"""`demix fetch` and URL inputs, against an HTTP server on 127.0.0.1 that the tests start.

Nothing here reaches the internet. The media are made by the tests: WAV with soundfile, MP3 and
Opus/WebM with the same ffmpeg demix uses (the imageio-ffmpeg binary), never a system package.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from demix.cli import app
from demix.errors import ParameterError
from demix.fetch import Media, find_ffmpeg, looks_like_url, parse_time, url_stem
from demix.inputs import expand_sources
from tests.conftest import write_wav

runner = CliRunner()
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RATE = 16000
TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".webm": "audio/webm", ".html": "text/html"}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.root`` with byte ranges (ffmpeg seeks by them for --start), and
    ``/drop/<file>``: announces the whole file, sends half, then closes the connection."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        self.server.requests.append(self.path)
        name = self.path.lstrip("/")
        drop = name.startswith("drop/")
        path = self.server.root / name.removeprefix("drop/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if drop:
            self._head(200, path, len(data))
            if body:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            first = int(match[1])
            last = int(match[2]) if match[2] else len(data) - 1
            part = data[first : last + 1]
            self._head(206, path, len(part), f"bytes {first}-{first + len(part) - 1}/{len(data)}")
        else:
            part = data
            self._head(200, path, len(part))
        if body:
            self.wfile.write(part)

    def _head(self, status: int, path: Path, length: int, content_range: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", TYPES.get(path.suffix, "text/plain"))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[str] = []

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up on /drop is the point of that route, not news."""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-microphone mixture of two Laplacian sources (WAV), a stereo 44.1 kHz MP3 and a 48 kHz
    Opus/WebM of two chirps (so a section's position can be checked), an HTML page, a text file."""
    root = tmp_path_factory.mktemp("www")
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(2, 2 * RATE))
    write_wav(root / "mix.wav", np.array([[0.8, 0.4], [0.3, 0.7]]) @ S / 10, RATE)
    t = np.arange(int(2.5 * 44100)) / 44100
    chirps = 0.3 * np.stack(
        [np.sin(2 * np.pi * (200 + 300 * t) * t), np.sin(2 * np.pi * (300 + 500 * t) * t)]
    )
    write_wav(root / "tone.wav", chirps, 44100)
    _ffmpeg("-i", root / "tone.wav", "-c:a", "libmp3lame", "-b:a", "128k", root / "tone.mp3")
    _ffmpeg("-i", root / "tone.wav", "-c:a", "libopus", "-b:a", "96k", "-ar", "48000", root / "tone.webm")
    (root / "page.html").write_text("<!doctype html><html><body><p>no media here</p></body></html>")
    (root / "notes.txt").write_text("just text\n")
    return root


@pytest.fixture(scope="module")
def server(media: Path) -> Iterator[_Server]:
    srv = _Server(media)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache, so no test sees another's downloads."""
    path = tmp_path / "cache"
    monkeypatch.setenv("DEMIX_CACHE_DIR", str(path))
    return path


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def fetch_json(*args: str | Path) -> dict:
    """The one fetched file's record from ``fetch --json`` (a runs document with one run)."""
    code, out, err = run("fetch", *args, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["summary"]["failed"] == [] and len(document["runs"]) == 1
    return document["runs"][0]


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def cache_files(cache: Path) -> list[str]:
    """Everything in the cache but yt-dlp's own folder: entries and any leftover work files."""
    if not cache.exists():
        return []
    return sorted(
        str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and "yt-dlp" not in p.parts
    )


# --- demix fetch ---------------------------------------------------------------------------------


def test_fetch_wav_is_sample_exact_and_cached(
    server: _Server, media: Path, tmp_path: Path, cache: Path
) -> None:
    result = fetch_json(server.url("mix.wav"), "-o", tmp_path / "out" / "clip.wav")
    assert result["file"] == str(tmp_path / "out" / "clip.wav")
    assert (result["sample_rate"], result["channels"], result["frames"]) == (RATE, 2, 2 * RATE)
    assert {k: result[k] for k in ("id", "title", "extractor")} == {
        "id": "mix",
        "title": "mix",
        "extractor": "generic",
    }
    assert result["cached"] is False
    fetched, rate = sf.read(tmp_path / "out" / "clip.wav", always_2d=True)
    original, _ = sf.read(media / "mix.wav", always_2d=True)
    # float WAV in, float WAV out, rate and channels kept: the samples are the same numbers
    assert rate == RATE and np.array_equal(fetched, original)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.wav"]
    assert [Path(f).suffix for f in cache_files(cache)] == [".json", ".wav"]


@pytest.mark.parametrize("name", ["tone.mp3", "tone.webm"])
def test_fetch_compressed_with_rate_channels_and_section(
    server: _Server, media: Path, tmp_path: Path, name: str
) -> None:
    requests = len(server.requests)
    result = fetch_json(
        server.url(name),
        "-o",
        tmp_path,
        "--sr",
        "16000",
        "--channels",
        "1",
        "--start",
        "0.5",
        "--end",
        "0:01.75",
    )
    assert (result["sample_rate"], result["channels"]) == (16000, 1)
    # the section is trimmed by the converter to the sample: exactly end - start
    assert result["frames"] == round(1.25 * 16000)
    assert Path(result["file"]) == tmp_path / "tone.wav"
    section, rate = sf.read(tmp_path / "tone.wav")
    assert rate == 16000 and section.ndim == 1
    # The same ffmpeg decoding the whole file gives the reference. The section must be that
    # reference from 0.5 s on: chirps make a wrong position show as a low correlation. Stream copy
    # starts at a codec packet, so allow a lag of up to 40 ms (an MP3 frame is 26 ms).
    _ffmpeg("-i", media / name, "-ac", "1", "-ar", "16000", "-c:a", "pcm_f32le", tmp_path / "ref.wav")
    reference = sf.read(tmp_path / "ref.wav")[0][8000:28000]
    inner = slice(1600, -1600)  # skip the edges, where a codec's priming and the cut disturb
    lag, corr = max(
        ((k, _corr(section[inner], np.roll(reference, k)[inner])) for k in range(-640, 641)),
        key=lambda item: item[1],
    )
    assert corr > 0.98, (lag, corr)
    assert server.requests[requests:], "the section was fetched from the server"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def test_second_fetch_is_served_from_the_cache(server: _Server, tmp_path: Path, cache: Path) -> None:
    first = fetch_json(server.url("tone.mp3"), "-o", tmp_path / "a.wav")
    requests = len(server.requests)
    second = fetch_json(server.url("tone.mp3"), "-o", tmp_path / "b.wav")
    assert len(server.requests) == requests, "a cache hit must not touch the network"
    assert first["cached"] is False and second["cached"] is True
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    # other conversion settings are another entry; --no-cache downloads and stores nothing
    entries = cache_files(cache)
    fetch_json(server.url("tone.mp3"), "-o", tmp_path / "c.wav", "--no-cache")
    assert len(server.requests) > requests and cache_files(cache) == entries
    fetch_json(server.url("tone.mp3"), "-o", tmp_path / "d.wav", "--sr", "8000")
    assert len(cache_files(cache)) == len(entries) + 2


def test_existing_output_needs_force_and_is_checked_first(server: _Server, tmp_path: Path) -> None:
    target = tmp_path / "clip.wav"
    target.write_bytes(b"keep me")
    requests = len(server.requests)
    code, _, err = run("fetch", server.url("mix.wav"), "-o", target)
    assert_one_line_error(code, err, "--force")
    assert target.read_bytes() == b"keep me" and len(server.requests) == requests
    code, _, err = run("fetch", server.url("mix.wav"), "-o", target, "--force", "-q")
    assert code == 0, err
    assert sf.info(target).frames == 2 * RATE
    # a folder target names the file from title and id, and refuses to replace it too
    assert run("fetch", server.url("mix.wav"), "-o", tmp_path)[0] == 0
    code, _, err = run("fetch", server.url("mix.wav"), "-o", tmp_path)
    assert_one_line_error(code, err, "mix.wav", "--force")


def test_verbose_names_the_ffmpeg_in_use(server: _Server, tmp_path: Path) -> None:
    code, _, err = run("fetch", server.url("mix.wav"), "-o", tmp_path / "x.wav", "-v")
    assert code == 0, err
    ffmpeg = find_ffmpeg()
    assert f"({ffmpeg.source})" in err.replace("\n", "") and ffmpeg.source in ("system", "imageio-ffmpeg")


def test_works_with_the_wheel_ffmpeg_and_no_ffprobe(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an empty PATH hides any system ffmpeg/ffprobe: the imageio-ffmpeg binary alone must do
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_ffmpeg().source == "imageio-ffmpeg"
    result = fetch_json(server.url("tone.mp3"), "-o", tmp_path / "x.wav", "--start", "1", "--channels", "1")
    assert result["ffmpeg"]["source"] == "imageio-ffmpeg" and result["channels"] == 1
    assert result["frames"] == pytest.approx(1.5 * 44100, abs=0.03 * 44100)


# --- URL inputs to separating commands ----------------------------------------------------------


def test_ica_on_a_url_matches_ica_on_the_file(server: _Server, media: Path, tmp_path: Path) -> None:
    assert run("ica", media / "mix.wav", "-o", tmp_path / "local")[0] == 0
    code, _, err = run("ica", server.url("mix.wav"), "-o", tmp_path / "remote")
    assert code == 0, err
    local = json.loads((tmp_path / "local" / "demix.json").read_text())
    remote = json.loads((tmp_path / "remote" / "demix.json").read_text())
    record = remote["inputs"][0]
    assert {k: record[k] for k in ("url", "id", "title", "extractor")} == {
        "url": server.url("mix.wav"),
        "id": "mix",
        "title": "mix",
        "extractor": "generic",
    }
    assert [record[k] for k in ("sample_rate", "channels", "frames")] == [RATE, 2, 2 * RATE]
    # the same samples and seed give the same separation, written to the same 24-bit files
    for entry in local["outputs"]:
        a, _ = sf.read(tmp_path / "local" / entry["file"])
        b, _ = sf.read(tmp_path / "remote" / entry["file"])
        assert np.max(np.abs(a - b)) < 1e-6


def test_batch_of_urls_names_folders_by_title_and_id(server: _Server, media: Path, tmp_path: Path) -> None:
    code, out, err = run(
        "ica",
        server.url("mix.wav"),
        media / "mix.wav",
        server.url("missing.wav"),
        "-o",
        tmp_path / "o",
        "--json",
    )
    assert code == 4, err
    summary = json.loads(out)["summary"]
    assert summary["succeeded"] == [server.url("mix.wav"), str(media / "mix.wav")]
    assert [f["path"] for f in summary["failed"]] == [server.url("missing.wav")]
    assert "404" in summary["failed"][0]["error"]
    # the URL's title and id are both "mix" for a direct link; the local file clashes with it
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["mix", "mix_2"]


def test_url_that_fails_leaves_no_run_folder(server: _Server, tmp_path: Path, cache: Path) -> None:
    code, _, err = run("ica", server.url("missing.wav"), "-o", tmp_path / "o")
    assert_one_line_error(code, err, "404")
    assert not (tmp_path / "o").exists() and cache_files(cache) == []


def test_other_commands_refuse_urls_with_a_pointer(tmp_path: Path) -> None:
    code, _, err = run("mix", "http://127.0.0.1:1/a.wav", "http://127.0.0.1:1/b.wav", "-o", tmp_path / "m")
    assert_one_line_error(code, err, "demix fetch")


# --- errors: one line, exit 2, nothing left in the output folder or the cache -------------------


@pytest.mark.parametrize(
    ("name", "extra", "fragment"),
    [
        ("missing.wav", [], "HTTP error 404"),
        ("drop/mix.wav", [], "cut off"),
        ("drop/mix.wav", ["--start", "0.5"], "cut off"),
        ("page.html", [], "unsupported URL"),
        ("notes.txt", [], "not audio or video"),
    ],
)
def test_download_errors(
    server: _Server, tmp_path: Path, cache: Path, name: str, extra: list[str], fragment: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run("fetch", server.url(name), "-o", out, *extra)
    assert_one_line_error(code, err, fragment, server.url(name))
    assert list(out.iterdir()) == [] and cache_files(cache) == []


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///etc/passwd", "not file:"),
        ("ftp://127.0.0.1/a.wav", "not ftp:"),
        ("data:audio/wav;base64,UklGRg==", "not data:"),
        ("http:///no-host.wav", "no host"),
    ],
)
def test_only_http_urls_are_accepted(tmp_path: Path, cache: Path, url: str, fragment: str) -> None:
    for command in (["fetch", url, "-o", tmp_path / "f.wav"], ["ica", url, "-o", tmp_path / "o"]):
        code, _, err = run(*command)
        assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "f.wav").exists() and not (tmp_path / "o").exists() and not cache.exists()


def test_no_network_is_one_line(tmp_path: Path, cache: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run("fetch", f"http://127.0.0.1:{port}/a.wav", "-o", tmp_path / "x.wav")
    assert_one_line_error(code, err, "cannot connect", "network")
    assert not (tmp_path / "x.wav").exists() and cache_files(cache) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--start", "2", "--end", "1"], "--end"),
        (["--start", "soon"], "--start"),
        (["-o", "clip.mp3"], "WAV"),
    ],
)
def test_bad_options_are_refused_before_any_request(server: _Server, args: list[str], fragment: str) -> None:
    requests = len(server.requests)
    code, _, err = run("fetch", server.url("mix.wav"), *args)
    assert_one_line_error(code, err, fragment)
    assert len(server.requests) == requests


# --- the small pieces ------------------------------------------------------------------------------


def test_names_times_and_schemes() -> None:
    media = Media("https://example.org/watch?v=abc", "abc-123", "Café: live/2024 [HD]", "youtube")
    assert media.stem == "Cafe_live_2024_HD_abc-123"
    assert Media("http://h/x.wav", "x", "x", "generic").stem == "x"
    assert Media("http://h/x.wav", "", "", "generic").stem == "x"
    assert url_stem("https://example.org/a/b/Song%20One.mp3") == "Song_20One"
    assert parse_time("90", "--start") == 90 and parse_time("1:02:03.5", "--end") == 3723.5
    assert parse_time(None, "--start") is None
    assert looks_like_url("file:///x") and looks_like_url("https://x") and not looks_like_url("C:\\a.wav")
    assert expand_sources(["https://example.org/a.wav"]) == ["https://example.org/a.wav"]
    with pytest.raises(ParameterError, match="not file:"):
        expand_sources(["file:///etc/passwd"])
