"""``demix report``: one self-contained HTML page that shows and plays a run.

The page is built from the run folder's ``demix.json`` alone: the command and its parameters,
the mixture's and every source's waveform and spectrogram (one colour scale for all panels, so
they compare), an audio player for each, the convergence history, each source's facts from its
``outputs[i]`` entry, the model, and, when ``scores.json`` lies beside the estimates or
references are given, the scores with bars.

Self-contained means nothing is fetched: no script, no font, no remote address. Pictures are
PNG ``data:`` URIs; audio is linked by a path relative to the page (so the page keeps working
as long as it stays beside the run folder) or, for files under a size limit, embedded too.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from demix import plots
from demix.errors import ParameterError
from demix.manifest import read_manifest
from demix.outputs import write_atomically

__all__ = ["Report", "SignalFile", "build_report", "signal_files", "write_report"]

SCORES_FILE = "scores.json"
_HASH_LIMIT = 1 << 30  # bytes: hashing a larger input to check it would take seconds
_METRICS = ("sdr", "isr", "sir", "sar", "si_sdr", "sdri", "si_sdri")
_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


@dataclass(frozen=True)
class SignalFile:
    """One signal shown in the report: its title, its file and its manifest entry (if any)."""

    title: str
    path: Path
    role: str
    entry: dict[str, Any] = field(default_factory=dict)
    start_s: float = 0.0
    duration_s: float | None = None

    @property
    def fragment(self) -> str:
        """A media fragment (``#t=start,end``) that plays only the section the run read."""
        if not self.start_s and self.duration_s is None:
            return ""
        end = "" if self.duration_s is None else f",{self.start_s + self.duration_s:g}"
        return f"#t={self.start_s:g}{end}"


@dataclass
class Report:
    """The page and what it shows, for the CLI's summary and for tests."""

    html: str
    panels: int
    audio: list[str]
    scores_from: str | None
    notes: list[str]

    def summary(self, path: Path) -> dict[str, Any]:
        return {
            "report": str(path),
            "panels": self.panels,
            "audio": self.audio,
            "scores_from": self.scores_from,
            "notes": self.notes,
        }


def signal_files(folder: Path, manifest: dict[str, Any]) -> tuple[list[SignalFile], list[str]]:
    """The mixture (when its file still exists) and the sources a manifest names, and notes.

    A run folder's mixture is its ``inputs[0].path`` when that file still has the recorded
    SHA-256; a ``demix mix`` folder's is its own ``mixture`` output, and its references are
    shown as its sources.
    """
    notes: list[str] = []
    outputs = [o for o in manifest.get("outputs", []) if isinstance(o, dict) and "file" in o]
    own_mixture = [o for o in outputs if o.get("role") == "mixture"]
    signals: list[SignalFile] = []
    if own_mixture:
        signals.append(SignalFile("mixture", folder / own_mixture[0]["file"], "mixture", own_mixture[0]))
    elif manifest.get("inputs"):
        record = manifest["inputs"][0]
        path = _find_input(Path(str(record.get("path", ""))), folder)
        if path is None:
            notes.append(f"the mixture {record.get('path')} is no longer there: not shown")
        elif not _unchanged(path, record):
            notes.append(f"the mixture {path} has changed since the run: not shown")
        else:
            start, duration = float(record.get("start_s") or 0.0), record.get("duration_s")
            section = "" if not start and duration is None else ", the section the run read"
            signals.append(
                SignalFile(f"mixture ({path.name}{section})", path, "mixture", {}, start, duration)
            )
    role = "reference" if own_mixture else "source"
    for entry in outputs:
        if entry.get("role") != role:
            continue
        path = folder / entry["file"]
        if path.is_file():
            signals.append(SignalFile(Path(entry["file"]).stem, path, role, entry))
        else:
            notes.append(f"{entry['file']} is missing from {folder}")
    return signals, notes


def build_report(
    folder: Path,
    *,
    out: Path,
    reference: Path | None = None,
    embed_audio_under: int = 0,
    max_columns: int = 1000,
) -> Report:
    """The report page for the run ``folder``, to be written at ``out``.

    Parameters
    ----------
    folder : Path
        A finished demix run folder (or a ``demix mix`` folder).
    out : Path
        Where the page will live; audio links are relative to its folder.
    reference : Path, optional
        References to score the run against (a ``demix mix`` folder or a folder of files);
        without it, ``scores.json`` in the run folder is shown when there is one.
    embed_audio_under : int
        Embed audio files of at most this many bytes in the page; larger ones are linked.
    max_columns : int
        Time columns of each spectrogram (STFT frames are pooled to fit).
    """
    manifest = read_manifest(folder)
    signals, notes = signal_files(folder, manifest)
    overviews = [
        plots.overview(
            s.path, name=s.title, max_columns=max_columns, start_s=s.start_s, duration_s=s.duration_s
        )
        for s in signals
    ]
    db = plots.db_range(overviews)
    peak = max((o.peak for o in overviews), default=0.0) or 1.0
    scores, scores_from = _scores(folder, manifest, reference, notes)

    parts = [_head(folder, manifest), _run_section(folder, manifest, notes)]
    audio: list[str] = []
    if signals:
        parts.append("<section>\n<h2>Signals</h2>\n")
        parts.append(
            f'<p class="note">One colour scale for every panel ({db[0]:+.0f} to {db[1]:+.0f} dB) and '
            "one amplitude scale, so quieter sources look quieter. Frequency is logarithmic, up to "
            "half the sample rate.</p>\n"
        )
        for signal, ov in zip(signals, overviews, strict=True):
            png = plots.signals_png([ov], db=db, peak=peak)
            src, linked = _audio_src(signal.path, out, embed_audio_under)
            src += signal.fragment
            audio.append(src if linked else f"(embedded) {signal.path.name}")
            parts.append(_signal_card(signal, ov, png, src, scores))
        parts.append("</section>\n")
    if scores:
        parts.append(_scores_section(scores, scores_from))
    parts.append(_convergence_section(manifest))
    parts.append(_model_section(manifest))
    parts.append("</main>\n</body>\n</html>\n")
    return Report("".join(parts), len(signals), audio, scores_from, notes)


def write_report(
    folder: Path,
    out: Path | None = None,
    *,
    reference: Path | None = None,
    embed_audio_under: int = 0,
    force: bool = False,
) -> tuple[Path, Report]:
    """Build the report of ``folder`` and write it atomically (default ``folder/report.html``)."""
    if not folder.is_dir():
        raise ParameterError(f"{folder} is not a folder")
    out = out if out is not None else folder / "report.html"
    if out.is_dir():
        out = out / "report.html"
    if out.exists() and not force:
        raise ParameterError(f"-o/--out {out} already exists; use --force to replace it")
    report = build_report(folder, out=out, reference=reference, embed_audio_under=embed_audio_under)
    write_atomically(out, lambda tmp: tmp.write_text(report.html, encoding="utf-8"))
    return out, report


# --- finding things --------------------------------------------------------------------------


def _find_input(path: Path, folder: Path) -> Path | None:
    """An input path as recorded (absolute, or relative to where demix ran): here, or None."""
    for candidate in (path, folder / path, folder.parent / path):
        if str(path) and candidate.is_file():
            return candidate
    return None


def _unchanged(path: Path, record: dict[str, Any]) -> bool:
    """Whether the file still has the SHA-256 recorded (files beyond ``_HASH_LIMIT`` are trusted)."""
    recorded = record.get("sha256")
    if not recorded or path.stat().st_size > _HASH_LIMIT:
        return True
    from demix.audio import sha256

    return bool(sha256(path) == recorded)


def _scores(
    folder: Path, manifest: dict[str, Any], reference: Path | None, notes: list[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """Score rows from ``--reference`` (computed now) or from the run's ``scores.json``."""
    if reference is not None:
        return _score_against(reference, folder, manifest, notes), f"BSS Eval v3 against {reference}"
    listed = [
        o["file"] for o in manifest.get("outputs", []) if isinstance(o, dict) and o.get("role") == "scores"
    ]
    path = folder / (listed[0] if listed else SCORES_FILE)
    if not path.is_file():
        return [], None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        notes.append(f"{path} is not valid JSON ({exc}): scores not shown")
        return [], None
    rows = data.get("scores", []) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        notes.append(f"{path} holds no list of scores: not shown")
        return [], None
    described = [path.name]
    if isinstance(data, dict) and data.get("mode"):
        described.append(f"BSS Eval {data['mode']}")
    if isinstance(data, dict) and isinstance(data.get("amari_index"), int | float):
        described.append(f"Amari index {data['amari_index']:.4f}")
    return [r for r in rows if isinstance(r, dict)], ", ".join(described)


def _score_against(
    reference: Path, folder: Path, manifest: dict[str, Any], notes: list[str]
) -> list[dict[str, Any]]:
    """BSS Eval v3 and SI-SDR of the run's sources against ``reference``, matched on SIR.

    ``reference`` is a ``demix mix`` folder (its references), or a folder of audio files
    (``mixture.*`` left out), or one file. Multichannel files are scored on the run's
    ``ref_channel``; lengths are trimmed to the shortest.
    """
    import numpy as np

    from demix import audio, metrics
    from demix.inputs import expand_inputs

    if reference.is_dir() and (reference / "demix.json").is_file():
        ref_manifest = read_manifest(reference)
        names = (ref_manifest.get("truth") or {}).get("references") or [
            o["file"] for o in ref_manifest.get("outputs", []) if o.get("role") in ("reference", "source")
        ]
        ref_files = [reference / name for name in names]
    else:
        ref_files = [f for f in expand_inputs([str(reference)]) if f.stem.lower() not in ("mixture", "mix")]
    est_files = [s.path for s in signal_files(folder, manifest)[0] if s.role == "source"]
    if not ref_files or not est_files:
        raise ParameterError(f"nothing to score: {len(ref_files)} reference(s), {len(est_files)} estimate(s)")
    channel = int(manifest.get("params", {}).get("ref_channel") or 0)
    signals, rates = [], set()
    for path in ref_files + est_files:
        sig = audio.read_audio(path)
        signals.append(sig.data[channel if channel < sig.n_channels else 0])
        rates.add(sig.sample_rate)
    if len(rates) > 1:
        raise ParameterError(f"references and estimates have different sample rates {sorted(rates)}")
    n = min(len(s) for s in signals)
    if any(len(s) != n for s in signals):
        notes.append(f"lengths differ; all trimmed to {n} samples for scoring")
    R = np.stack([s[:n] for s in signals[: len(ref_files)]])
    E = np.stack([s[:n] for s in signals[len(ref_files) :]])
    scores = metrics.bss_eval_sources(R, E)
    rows = []
    for i, j in enumerate(scores.perm):
        if j < 0:
            continue
        rows.append(
            {
                "reference": str(ref_files[i]),
                "estimate": str(est_files[j]),
                "sdr": float(scores.sdr[i]),
                "sir": float(scores.sir[i]),
                "sar": float(scores.sar[i]),
                "si_sdr": float(metrics.si_sdr(R[i], E[j])),
            }
        )
    return rows


def _audio_src(path: Path, out: Path, embed_under: int) -> tuple[str, bool]:
    """A data: URI for small files, else a path relative to the page; and whether it is a link."""
    size = path.stat().st_size
    if size <= embed_under:
        mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}", False
    relative = os.path.relpath(path.resolve(), out.resolve().parent)
    return quote(Path(relative).as_posix()), True


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2430;
  background: #f4f5f7; }
main { max-width: 1060px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 1.5em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.2em; margin: 1.4em 0 0.5em; border-bottom: 1px solid #cfd4dc; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 0 0 6px; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.9em; }
pre { background: #fff; border: 1px solid #dde1e7; padding: 8px; overflow-x: auto; }
.command { background: #1d2430; color: #e8ecf2; padding: 8px 10px; border-radius: 4px; }
.card { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 12px; margin: 12px 0; }
.card img { display: block; width: 100%; max-width: 1000px; height: auto; }
audio { width: 100%; margin: 6px 0; }
table { border-collapse: collapse; margin: 6px 0; font-size: 0.92em; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kv { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 3px 18px;
  margin: 8px 0; font-size: 0.92em; }
.kv div { overflow-wrap: anywhere; }
.kv div.wide { grid-column: 1 / -1; }
.kv span { color: #55606e; }
.note { color: #55606e; font-size: 0.9em; }
.warn { color: #8a5300; }
.chips span { display: inline-block; background: #e3e8ef; border-radius: 10px; padding: 2px 9px;
  margin: 0 6px 6px 0; font-size: 0.9em; }
table.scores { font-size: 0.85em; }
table.scores td { white-space: nowrap; padding-right: 8px; }
table.matrix td { padding: 2px 8px; }
.bar { position: relative; width: 56px; height: 12px; background: #eef0f3; display: inline-block;
  vertical-align: middle; margin-right: 5px; }
.bar span { position: absolute; top: 0; bottom: 0; left: 0; background: #3b6ea8; }
.bar span.neg { background: #c0392b; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _head(folder: Path, manifest: dict[str, Any]) -> str:
    title = f"demix report: {folder.resolve().name}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="note">{_e(folder)} · written by demix {_e(manifest.get("demix_version", "?"))}</p>\n'
    )


def _command_line(folder: Path, manifest: dict[str, Any]) -> str:
    inputs = [str(i.get("url") or i.get("path")) for i in manifest.get("inputs", [])]
    method = manifest.get("params", {}).get("method")
    words = ["demix", str(manifest.get("command", "?")), *inputs, "-o", str(folder)]
    line = " ".join(_shell_word(w) for w in words)
    return line + (f"   # method {method}" if method and method != manifest.get("command") else "")


def _shell_word(word: str) -> str:
    return (
        word
        if word and all(c.isalnum() or c in "/._-:=,+@" for c in word)
        else "'" + word.replace("'", "'\\''") + "'"
    )


def _run_section(folder: Path, manifest: dict[str, Any], notes: list[str]) -> str:
    conv = manifest.get("convergence") or {}
    outputs = [o for o in manifest.get("outputs", []) if isinstance(o, dict)]
    chips = [
        f"{sum(o.get('role') == 'source' for o in outputs)} source(s)",
        f"layout {manifest['layout']}" if "layout" in manifest else None,
        _convergence_chip(conv) if conv else None,
        f"gain {manifest['gain']:.3f}" if isinstance(manifest.get("gain"), int | float) else None,
        f"{sum(manifest['timings'].values()):.2f} s" if manifest.get("timings") else None,
    ]
    inputs = "".join(
        f"<p>input <code>{_e(i.get('url') or i.get('path'))}</code> · "
        f"{_e(i.get('sample_rate'))} Hz · {_e(i.get('channels'))} ch · {_e(_duration(i))}</p>\n"
        for i in manifest.get("inputs", [])
    )
    warnings = list(manifest.get("warnings") or [])
    return (
        "<section>\n<h2>Run</h2>\n"
        f'<pre class="command">{_e(_command_line(folder, manifest))}</pre>\n'
        '<p class="chips">'
        + "".join(f"<span>{_e(c)}</span>" for c in chips if c)
        + "</p>\n"
        + inputs
        + _facts(manifest.get("params", {}), "params")
        + "".join(f'<p class="warn">warning: {_e(w)}</p>\n' for w in warnings)
        + "".join(f'<p class="note">{_e(n)}</p>\n' for n in notes)
        + "</section>\n"
    )


def _convergence_chip(conv: dict[str, Any]) -> str:
    state = "converged" if conv.get("converged") else "not converged"
    return f"{state} in {conv.get('n_iter', '?')} iteration(s)"


def _duration(record: dict[str, Any]) -> str:
    rate, frames = record.get("sample_rate"), record.get("frames")
    return f"{frames / rate:.2f} s" if rate and frames is not None else "?"


def _signal_card(
    signal: SignalFile, ov: plots.Overview, png: bytes, src: str, scores: Sequence[dict[str, Any]]
) -> str:
    alt = f"waveform and spectrogram of {signal.title}"
    facts = {k: v for k, v in signal.entry.items() if k not in ("file", "role")}
    score = _score_for(signal, scores)
    score_line = (
        '<p class="note">'
        + " · ".join(
            f"{m.upper().replace('_', '-')} {score[m]:.2f} dB"
            for m in _METRICS
            if isinstance(score.get(m), int | float)
        )
        + "</p>\n"
        if score
        else ""
    )
    return (
        '<div class="card signal">\n'
        f"<h3>{_e(signal.title)}</h3>\n"
        f'<p class="note">{_e(signal.path.name)} · {ov.sample_rate} Hz · {ov.n_channels} ch · '
        f"{ov.duration:.2f} s</p>\n"
        f"{_img(png, 'spectrogram', alt)}\n"
        f'<audio controls preload="none" src="{_e(src)}"></audio>\n'
        + score_line
        + (_facts(facts, "facts") if facts else "")
        + "</div>\n"
    )


def _facts(items: dict[str, Any], cls: str) -> str:
    """Key-value facts in a compact grid; long values take a whole row."""
    cells = []
    for key, value in items.items():
        text = _short(value)
        wide = ' class="wide"' if len(text) + len(str(key)) > 34 else ""
        cells.append(f"<div{wide}><span>{_e(key)}</span> <code>{_e(text)}</code></div>\n")
    return f'<div class="kv {cls}">\n{"".join(cells)}</div>\n'


def _img(png: bytes, cls: str, alt: str) -> str:
    """An embedded PNG with its pixel size, so the page is laid out before the image is decoded."""
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    data = base64.b64encode(png).decode("ascii")
    size = f'width="{width}" height="{height}"'
    return f'<img class="{cls}" alt="{_e(alt)}" {size} src="data:image/png;base64,{data}">'


def _score_for(signal: SignalFile, scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    for row in scores:
        if Path(str(row.get("estimate", ""))).name == signal.path.name and signal.role == "source":
            return row
    return {}


def _convergence_section(manifest: dict[str, Any]) -> str:
    conv = manifest.get("convergence")
    if not conv:
        return ""
    history = conv.get("history")
    body = _facts({k: v for k, v in conv.items() if k != "history"}, "facts")
    if history and history.get("change"):
        png = plots.convergence_png(history, title=str(manifest.get("params", {}).get("method", "")))
        kept = len(history["change"])
        body += (
            f'<p class="note">{kept} of {history.get("n_reports", kept)} reported iterations kept.</p>\n'
            f"{_img(png, 'convergence', 'convergence history')}\n"
        )
    else:
        body += '<p class="note">No iteration history in this manifest.</p>\n'
    return f'<section>\n<h2>Convergence</h2>\n<div class="card">\n{body}</div>\n</section>\n'


def _scores_section(rows: Sequence[dict[str, Any]], source: str | None) -> str:
    metrics = [m for m in _METRICS if any(isinstance(r.get(m), int | float) for r in rows)]
    top = max([30.0] + [abs(float(r[m])) for r in rows for m in metrics if isinstance(r.get(m), int | float)])
    head = "".join(f"<th>{_e(m.upper().replace('_', '-'))} (dB)</th>" for m in metrics)
    body = ""
    for row in rows:
        reasons: dict[str, Any] = row["reasons"] if isinstance(row.get("reasons"), dict) else {}
        cells = "".join(f"<td>{_bar(row.get(m), top, reasons.get(m))}</td>" for m in metrics)
        body += (
            f"<tr><td><code>{_e(Path(str(row.get('estimate', '?'))).name)}</code></td>"
            f"<td><code>{_e(Path(str(row.get('reference', '?'))).name)}</code></td>{cells}</tr>\n"
        )
    return (
        '<section>\n<h2>Scores</h2>\n<div class="card">\n'
        f'<p class="note">From {_e(source)}; estimates matched to references by the Hungarian '
        "assignment on SIR.</p>\n"
        f'<table class="scores">\n<tr><th>estimate</th><th>reference</th>{head}</tr>\n{body}</table>\n'
        "</div>\n</section>\n"
    )


def _bar(value: Any, top: float, reason: Any = None) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return f'<span title="{_e(reason)}">n/a</span>' if reason else "n/a"
    width = min(abs(value) / top, 1.0) * 100
    cls = ' class="neg"' if value < 0 else ""
    return f'<span class="bar"><span{cls} style="width:{width:.1f}%"></span></span>{value:.2f}'


def _model_section(manifest: dict[str, Any]) -> str:
    model = manifest.get("model")
    diagnostics = manifest.get("diagnostics")
    if not model and not diagnostics:
        return ""
    body = ""
    if isinstance(model, dict):
        for key in ("mixing", "unmixing"):
            if _is_matrix(model.get(key)):
                body += f"<h3>{_e(key)} matrix</h3>\n{_matrix(model[key])}"
        other = {k: v for k, v in model.items() if k not in ("mixing", "unmixing")}
        if other:
            body += f"<pre>{_e(json.dumps(_rounded(other), indent=1)[:4000])}</pre>\n"
    if diagnostics:
        body += f"<h3>diagnostics</h3>\n<pre>{_e(json.dumps(_rounded(diagnostics), indent=1)[:4000])}</pre>\n"
    return f'<section>\n<h2>Model</h2>\n<div class="card">\n{body}</div>\n</section>\n'


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= 16
        and all(isinstance(row, list) and len(row) <= 16 for row in value)
    )


def _matrix(rows: Iterable[Iterable[Any]]) -> str:
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_e(_number(v))}</td>' for v in row) + "</tr>\n" for row in rows
    )
    return f'<table class="matrix">\n{body}</table>\n'


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _short(value: Any, limit: int = 300) -> str:
    """A fact as text: numbers to 4 significant digits, structures as compact JSON, cut at ``limit``."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = _number(value)
    elif isinstance(value, list | dict):
        text = json.dumps(_rounded(value), separators=(",", ": "))
    else:
        text = "null" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rounded(value: Any) -> Any:
    """Floats anywhere in a structure to 4 significant digits, for reading."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
