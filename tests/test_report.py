"""demix report and the pictures: history thinning, pooled spectrograms, PNG panels, the HTML page
(well-formed, self-contained, only existing files), and a headless-Chromium look at the page."""

from __future__ import annotations

import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

import numpy as np
import pytest

from demix import plots
from demix.audio import sha256
from demix.errors import ParameterError
from demix.history import History
from demix.outputs import RunFolder
from demix.report import build_report, write_report
from demix.spectral import stft
from demix.types import IterInfo
from tests.conftest import write_wav

RATE = 16000
CHROMIUM = Path("/usr/bin/chromium")


def _tone_and_noise(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) / RATE
    phase = 2 * np.pi * (220 * t + 150 * t**2)  # a gliding note with three harmonics
    tone = 0.25 * sum(np.sin(k * phase) / k for k in (1, 2, 3)) * (np.sin(2 * np.pi * 1.5 * t) > 0)
    noise = 0.1 * rng.standard_normal(n) * (np.sin(2 * np.pi * 0.7 * t) > 0)
    return tone, noise


def _run_folder(root: Path, *, history: bool = True, scores: bool = False, section: bool = False) -> Path:
    """A finished run folder as the pipeline writes it: two sources, a mixture input, a manifest."""
    rng = np.random.default_rng(0)
    tone, noise = _tone_and_noise(3 * RATE, rng)
    (root / "in").mkdir()
    mixture = write_wav(root / "in" / "mixture.wav", np.stack([tone + noise, 0.5 * tone + noise]))
    run = root / "run"
    run.mkdir()
    write_wav(run / "source_1.wav", tone, subtype="PCM_24")
    write_wav(run / "source_2.wav", noise, subtype="PCM_24")
    recorder = History(max_points=40)
    for i in range(1, 101):
        recorder(IterInfo(i, 200, 10.0 ** (-i / 20), objective=1.0 + 1.0 / i))
    manifest = {
        "demix_version": "0.1.0",
        "command": "ica",
        "params": {"method": "fastica", "max_iter": 200, "tol": 1e-4, "ref_channel": 0},
        "inputs": [
            {
                "path": str(mixture),
                "sha256": sha256(mixture),
                "sample_rate": RATE,
                "channels": 2,
                "frames": 3 * RATE,
            }
        ],
        "outputs": [
            {
                "file": "source_1.wav",
                "role": "source",
                "rms": 0.2,
                "peak": 0.4,
                "kurtosis": -1.5,
                "method_index": 1,
            },
            {"file": "source_2.wav", "role": "source", "rms": 0.07, "peak": 0.4, "components": [0, 3, 5]},
        ],
        "layout": "mono",
        "gain": 1.0,
        "model": {
            "kind": "instantaneous",
            "mixing": [[1.0, 1.0], [0.5, 1.0]],
            "unmixing": [[2, -2], [-1, 2]],
        },
        "convergence": {"n_iter": 100, "converged": True, "final_change": 1e-5},
        "warnings": [],
        "timings": {"load_s": 0.01, "separate_s": 0.1},
    }
    if history:
        manifest["convergence"]["history"] = recorder.record()
    if section:  # the run read 0.5-2.5 s of its input
        manifest["inputs"][0].update(start_s=0.5, duration_s=2.0, start_frame=RATE // 2)
    if scores:
        rows = [
            {
                "reference": "ref/a.wav",
                "estimate": str(run / "source_1.wav"),
                "sdr": 12.5,
                "sir": 30.0,
                "sar": 12.6,
            },
            {
                "reference": "ref/b.wav",
                "estimate": str(run / "source_2.wav"),
                "sdr": -3.0,
                "sir": None,
                "sar": 4.0,
            },
        ]
        (run / "scores.json").write_text(json.dumps({"kind": "scores", "scores": rows}))
    (run / "demix.json").write_text(json.dumps(manifest))
    return run


class _Page(HTMLParser):
    """Checks nesting and collects every src/href and element class."""

    VOID: ClassVar[set[str]] = {
        "meta",
        "img",
        "br",
        "hr",
        "link",
        "input",
        "source",
        "col",
        "area",
        "base",
        "wbr",
        "track",
    }

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    return page


def test_history_thins_forwards_and_keeps_first_and_last() -> None:
    seen: list[int] = []
    history = History(lambda info: seen.append(info.iteration), max_points=40)
    for i in range(1, 10_001):
        history(IterInfo(i, 10_000, 1.0 / i))
    record = history.record()
    assert seen == list(range(1, 10_001))
    assert record["n_reports"] == 10_000
    assert 20 <= len(record["step"]) <= 51
    assert record["iteration"][:10] == list(range(1, 11)) and record["iteration"][-1] == 10_000
    assert record["step"] == sorted(set(record["step"]))
    assert "objective" not in record
    steps = np.diff(record["step"][10:-1])
    assert steps.max() == steps.min()  # evenly thinned after the head
    with_objective = History()
    with_objective(IterInfo(1, 5, float("nan"), objective=2.0))
    assert with_objective.record() == {
        "n_reports": 1,
        "step": [0],
        "iteration": [1],
        "change": [None],
        "objective": [2.0],
    }


def test_overview_is_the_stft_pooled_and_the_file_read_in_blocks_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    x = np.stack(_tone_and_noise(RATE * 2 + 123, rng))
    full = plots.overview(x, RATE, max_columns=10**6)
    expected = (np.abs(stft(x, full.n_fft, full.hop)) ** 2).mean(axis=0)
    assert full.power.shape == expected.shape and full.pool == 1
    np.testing.assert_allclose(full.power, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert plots.overview(x, RATE, max_columns=20).hop == full.n_fft // 2  # many frames per column
    pooled = plots.overview(x, RATE, hop=full.hop, max_columns=20)
    assert pooled.power.shape[1] <= 20 and pooled.pool > 1
    p = pooled.pool
    np.testing.assert_allclose(pooled.power[:, 1], expected[:, p : 2 * p].mean(axis=1), rtol=1e-4)
    assert pooled.high.max() == pytest.approx(x.max(), abs=1e-6)
    assert pooled.low.min() == pytest.approx(x.min(), abs=1e-6)
    # a file read block by block (blocks forced small) gives the same picture as the array
    path = write_wav(tmp_path / "x.wav", x)
    monkeypatch.setattr(plots, "_BLOCK_SAMPLES", 3000)
    from_file = plots.overview(path, hop=full.hop, max_columns=20)
    np.testing.assert_allclose(from_file.power, pooled.power, rtol=1e-4, atol=1e-7 * expected.max())
    np.testing.assert_allclose(from_file.high, pooled.high, atol=1e-6)
    assert from_file.sample_rate == RATE and from_file.name == "x"
    section = plots.overview(path, hop=full.hop, max_columns=10**6, start_s=0.5, duration_s=1.0)
    alone = plots.overview(x[:, RATE // 2 : RATE // 2 + RATE], RATE, hop=full.hop, max_columns=10**6)
    assert section.n_samples == RATE
    np.testing.assert_allclose(section.power, alone.power, rtol=1e-4, atol=1e-7 * expected.max())


def test_pngs_have_their_panels(tmp_path: Path) -> None:
    from matplotlib.image import imread

    rng = np.random.default_rng(2)
    tone, noise = _tone_and_noise(RATE, rng)
    figures = plots.run_figures(
        tone + noise,
        [tone, noise],
        ["tone", "noise"],
        RATE,
        History().record(),  # no reports: no convergence figure
    )
    assert [f.file for f in figures] == ["spectrograms.png"]
    history = History()
    for i in range(1, 30):
        history(IterInfo(i, 30, 1.0 / i, objective=float(i)))
    figures = plots.run_figures(tone + noise, [tone, noise], ["tone", "noise"], RATE, history.record())
    assert [(f.file, f.panels) for f in figures] == [("spectrograms.png", 3), ("convergence.png", 2)]
    for figure in figures:
        assert plots.panel_count(figure.png) == figure.panels
        assert figure.record()["role"] == "figure"
    with RunFolder(tmp_path / "run") as run:  # as the pipeline stages them beside the sources
        records = plots.stage_figures(
            run.stage, tone + noise, [tone, noise], ["tone", "noise"], RATE, history.record()
        )
        run.commit({"command": "test", "outputs": records})
    assert [r["file"] for r in records] == ["spectrograms.png", "convergence.png"]
    assert plots.panel_count((tmp_path / "run" / "spectrograms.png").read_bytes()) == 3
    image = imread(io.BytesIO(figures[0].png))
    assert image.shape[:2] == (round((2.6 * 3 + 0.5) * 100), 1000)  # three panel rows at 100 dpi
    scores = plots.scores_png(
        [{"estimate": "a.wav", "sdr": 3.0, "sir": None}, {"estimate": "b.wav", "sdr": -1.0}]
    )
    assert plots.panel_count(scores) == 1
    with pytest.raises(ParameterError):
        plots.scores_png([{"estimate": "a.wav"}])


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report, built once for the tests that only read it."""
    run = _run_folder(tmp_path_factory.mktemp("report"), scores=True, section=True)
    out, report = write_report(run)
    assert (
        out == run / "report.html"
        and report.notes == []
        and (report.scores_from or "").startswith("scores.json")
    )
    return out


def test_report_is_well_formed_self_contained_and_links_existing_files(report_page: Path) -> None:
    out = report_page
    text = out.read_text()
    page = _parse(text)
    for url in page.urls:
        assert not re.match(r"(?i)\s*(https?:)?//", url), url
        if not url.startswith("data:"):
            assert (out.parent / unquote(url.split("#")[0])).is_file(), url
    assert "<script" not in text and "@import" not in text and "url(" not in text
    spectrograms = [a for tag, a in page.tags if tag == "img" and a.get("class") == "spectrogram"]
    audio = [a["src"] for tag, a in page.tags if tag == "audio"]
    assert len(spectrograms) == 3 and len(audio) == 3  # mixture + two sources
    assert audio == ["../in/mixture.wav#t=0.5,2.5", "source_1.wav", "source_2.wav"]
    assert "the section the run read" in text
    assert sum(1 for tag, a in page.tags if tag == "img" and a.get("class") == "convergence") == 1
    assert "fastica" in text and "components" in text and "[0,3,5]" in text  # params, facts
    assert "12.50" in text and 'class="neg"' in text  # scores.json with a negative SDR bar
    with pytest.raises(ParameterError, match="--force"):
        write_report(out.parent)


def test_report_scores_against_references_and_without_history(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, history=False)
    refs = tmp_path / "refs"
    refs.mkdir()
    rng = np.random.default_rng(0)
    tone, noise = _tone_and_noise(3 * RATE, rng)  # the same signals the run folder holds
    write_wav(refs / "noise.wav", noise)
    write_wav(refs / "tone.wav", tone)
    write_wav(tmp_path / "in" / "mixture.wav", np.stack([tone, noise]))  # not the run's input any more
    out = tmp_path / "pages" / "deep" / "r.html"  # a page away from its run: links still resolve
    report = build_report(run, out=out, reference=refs)
    assert report.panels == 2 and any("has changed" in note for note in report.notes)
    assert report.audio == ["../../run/source_1.wav", "../../run/source_2.wav"]
    assert all((out.parent / unquote(src)).resolve().is_file() for src in report.audio)
    assert report.scores_from is not None and report.scores_from.startswith("BSS Eval v3")
    rows = re.findall(r"<tr><td><code>(source_\d\.wav)</code></td><td><code>(\w+\.wav)</code>", report.html)
    assert sorted(rows) == [("source_1.wav", "tone.wav"), ("source_2.wav", "noise.wav")]
    sdrs = [float(v) for v in re.findall(r"</span></span>(-?[\d.]+)", report.html)]
    assert min(sdrs) > 60  # PCM_24 copies of the references: matched, and near perfect
    assert "No iteration history" in report.html


def test_report_command_embeds_small_audio_and_notes_a_missing_mixture(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from demix.cli import app

    run = _run_folder(tmp_path)
    (tmp_path / "in" / "mixture.wav").unlink()
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(out), "--embed-audio", "10", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["report"] == str(out) and summary["panels"] == 2
    assert any("no longer there" in note for note in summary["notes"])
    page = _parse(out.read_text())
    audio = [a["src"] or "" for tag, a in page.tags if tag == "audio"]
    assert len(audio) == 2 and all(src.startswith("data:audio/wav;base64,") for src in audio)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "error:" in result.output


def _colours(region: np.ndarray) -> int:
    """Distinct colours among the pixels that are not grey: a colour map has hundreds; an axis
    frame, white space and (grey-antialiased) text have none."""
    pixels = region.reshape(-1, region.shape[-1])[:, :3].astype(int)
    coloured = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 24]
    return len(np.unique(coloured, axis=0))


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless check needs Debian's chromium (/usr/bin/chromium)"
)
def test_report_in_headless_chromium_shows_every_spectrogram(report_page: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    width = 1100
    # Where the panels are: the same page plus a script that writes their boxes into the DOM.
    probe = report_page.with_name("probe.html")
    script = (
        "<script>window.addEventListener('load', () => { const r = [...document.querySelectorAll("
        "'img.spectrogram')].map(e => { const b = e.getBoundingClientRect(); return [b.left, b.top, "
        "b.width, b.height]; }); const p = document.createElement('pre'); p.id = 'boxes'; "
        "p.textContent = JSON.stringify({boxes: r, height: document.documentElement.scrollHeight}); "
        "document.body.appendChild(p); });</script>"
    )
    probe.write_text(report_page.read_text().replace("</body>", script + "</body>"))
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    base += [
        "--force-device-scale-factor=1",
        "--virtual-time-budget=5000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*base, f"--window-size={width},1000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    probe.unlink()
    found = re.search(r'<pre id="boxes">(.*?)</pre>', dom.stdout)
    assert found, dom.stderr[-2000:]
    layout = json.loads(found.group(1).replace("&quot;", '"'))
    boxes, height = layout["boxes"], int(layout["height"])
    assert len(boxes) == 3
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*base, f"--window-size={width},{height}", f"--screenshot={shot}", report_page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = (imread(shot)[..., :3] * 255).round().astype(np.uint8)
    assert pixels.shape[1] == width and pixels.shape[0] >= height - 1
    for left, top, w, h in boxes:
        assert w > 500 and h > 150
        # the spectrogram: below the waveform strip, inside the axes frame
        region = pixels[
            int(top + 0.35 * h) : int(top + 0.78 * h), int(left + 0.15 * w) : int(left + 0.85 * w)
        ]
        assert _colours(region) > 100, _colours(region)
    # the same measure on the page's header (text on a plain background) fails the check
    assert _colours(pixels[: int(boxes[0][1]) - 40]) < 30
