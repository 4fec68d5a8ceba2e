"""Score estimates against references: BSS Eval v3 or v4, SI-SDR, improvements, Amari index.

What is compared to what:

* a side (references or estimates) is a demix folder, read through its manifest (a ``demix mix``
  folder for references, a run folder for estimates), or *items*: files, folders, globs, or
  stem groups ``name=a.flac+b.flac`` (their files summed). A folder without a manifest gives its
  audio files, leaving out the ones named like the mixture (``mixture.*``, ``mix.*``);
* estimates are matched to references by the Hungarian assignment on SIR, never by name or
  order, unless every estimate carries a label (``-e drums=…``) naming a reference: then by name;
* the mixture (``--mixture``, or a mix folder's) scored as every estimate is the baseline of the
  improvements SDRi and SI-SDRi.

Two modes. ``v3`` (default) is BSS Eval v3 (mir_eval's numbers) on one channel, ``--ref-channel``,
over the whole signal, plus SI-SDR. ``v4`` is museval's BSS Eval v4 (:mod:`demix.bss_eval_v4`):
every channel is part of the source image, distortion filters are fitted once on the whole
signal, SDR/ISR/SIR/SAR come per frame (1 s windows and hops by default) and a target's score
is the median over its frames.

Long signals: v3 of whole signals reads the files block by block into
:class:`demix.metrics.StreamedBSSEval` once their float64 copies would exceed
:data:`MAX_MEMORY_MB` (the same scores to 1e-6 dB, memory bounded by the blocks); v4 and
framewise v3 hold the signals in memory and refuse, with the numbers, what memory cannot hold.

A score that cannot be computed is NaN (null in JSON) with its reason; every score is capped at
:data:`demix.metrics.CEILING_DB` (130 dB), which is what a perfect estimate gets.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from demix import __version__, audio, checks, metrics, streaming
from demix.bss_eval_v4 import bss_eval_v4
from demix.errors import AudioError, OutputError, ParameterError
from demix.inputs import expand_inputs
from demix.jobs import DEFAULT_MAX_MEMORY_MB
from demix.manifest import clean, read_manifest
from demix.outputs import MANIFEST, write_atomically, write_manifest

Mode = Literal["v3", "v4"]
MODES: tuple[Mode, ...] = ("v3", "v4")
SCORES_FILE = "scores.json"
#: File stems that name a mixture, left out when a folder is read as references or estimates.
MIXTURE_STEMS = frozenset({"mixture", "mix"})
#: museval's default frame: one second, every second.
V4_WINDOW_S = 1.0
CEILING_DB = metrics.CEILING_DB
#: Memory (MiB) the signals may take in memory: v3 on whole signals reads them block by block
#: (:class:`demix.metrics.StreamedBSSEval`) once their float64 copies exceed it (issue 15).
MAX_MEMORY_MB = DEFAULT_MAX_MEMORY_MB
#: Copies of the float64 signals (every channel) the in-memory path holds at its peak: the
#: signals as read, and the stacked scored channels (v3) or the fitted images and their
#: transforms (v4, framewise).
IN_MEMORY_COPIES = {"v3": 2, "v4": 4}

SIR_UNDEFINED = "one (non-silent) reference only: nothing can interfere, so SIR is undefined"
_LABEL = re.compile(r"([^=/\\]+)=(.+)")


@dataclass(frozen=True)
class Section:
    """The part of every file that is scored: ``start`` seconds in, ``duration`` long (None: to the end)."""

    start: float = 0.0
    duration: float | None = None


@dataclass
class Item:
    """One reference, estimate or mixture: its name, the files summed into it, its signal.

    ``shape`` is ``(n_channels, n_samples)`` of the signal, known from the files' headers;
    :attr:`data` reads the signal (the ``section`` of every file, summed) the first time it is
    asked for, so a long signal scored block by block (:meth:`channel_blocks`) is never read whole.
    ``labelled`` says the user named it (``name=…``).
    """

    name: str
    files: list[Path]
    shape: tuple[int, int]
    labelled: bool = False
    section: Section = Section()
    _data: np.ndarray | None = field(default=None, repr=False)
    #: The files' sections as read block by block; None when one needs ffmpeg (read in memory).
    _recordings: list[streaming.Recording] | None = field(default=None, repr=False)

    @property
    def data(self) -> np.ndarray:
        """The whole signal ``(n_channels, n_samples)`` in memory (read on first use)."""
        if self._data is None:
            s = self.section
            parts = [audio.read_audio(f, start=s.start, duration=s.duration).data for f in self.files]
            self._data = _sum(parts, self.shape)
        return self._data

    @property
    def label(self) -> str:
        """How scores name it: its file, or its files joined by ``+``."""
        return "+".join(str(f) for f in self.files)

    def channel_blocks(self, channel: int, size: int, stop: int) -> Iterator[np.ndarray]:
        """Channel ``channel`` of samples ``0 … stop``, in consecutive blocks of at most ``size``,
        read from disk file by file and summed as :attr:`data` sums them (a mono part counts on
        every channel; a part that ends early, as silence)."""
        if self._data is not None or self._recordings is None:
            for a in range(0, stop, size):
                yield self.data[channel, a : min(a + size, stop)]
            return
        readers = [
            (rec.blocks(size, 0, min(stop, rec.frames)), 0 if rec.channels == 1 else channel)
            for rec in self._recordings
        ]
        for a in range(0, stop, size):
            block = np.zeros(min(size, stop - a))
            for reader, c in readers:
                part = next(reader, None)
                if part is not None:
                    block[: part.shape[1]] += part[c]
            yield block

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "files": [str(f) for f in self.files],
            "channels": int(self.shape[0]),
            "samples": int(self.shape[1]),
            "labelled": self.labelled,
        }


@dataclass
class Side:
    """The references or the estimates, with the folder and manifest they came from, if any."""

    items: list[Item]
    sample_rate: int
    manifest: dict[str, Any] | None = None
    folder: Path | None = None
    mixture: Item | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """The scores document: what was compared to what, how, and the scores of every matched pair."""

    mode: Mode
    sample_rate: int
    n_samples: int
    section: Section
    matching: str
    references: list[Item]
    estimates: list[Item]
    mixture: Item | None
    scores: list[dict[str, Any]]
    unmatched_estimates: list[str]
    missing_references: list[str]
    amari_index: float | None
    ref_channel: int | None = None
    channels: int | None = None
    window_s: float | None = None
    hop_s: float | None = None
    max_memory_mb: float = MAX_MEMORY_MB
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Strict JSON (NaN and inf as null), the layout of ``schemas/scores.schema.json``."""
        document = {
            "kind": "scores",
            "demix_version": __version__,
            "mode": self.mode,
            "sample_rate": self.sample_rate,
            "n_samples": self.n_samples,
            "start_s": self.section.start,
            "duration_s": self.section.duration,
            "ref_channel": self.ref_channel,
            "channels": self.channels,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "max_memory_mb": self.max_memory_mb,
            "ceiling_db": CEILING_DB,
            "matching": self.matching,
            "references": [item.describe() for item in self.references],
            "estimates": [item.describe() for item in self.estimates],
            "mixture": None if self.mixture is None else self.mixture.describe(),
            "scores": self.scores,
            "unmatched_estimates": self.unmatched_estimates,
            "missing_references": self.missing_references,
            "amari_index": self.amari_index,
            "notes": self.notes,
        }
        result: dict[str, Any] = clean(document)
        return result


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_side(specs: list[str], *, role: str, section: Section = Section()) -> Side:
    """Read the references or estimates named on the command line (``role``: their name).

    One folder with a manifest is read through it; otherwise each spec is a file, folder or glob
    (one item per file) or a group ``[name=]a+b+…`` (one item, the files summed in memory).
    """
    notes: list[str] = []
    folder = Path(specs[0]) if len(specs) == 1 and Path(specs[0]).is_dir() else None
    manifest, mixture_file = None, None
    if folder is not None and (folder / MANIFEST).exists():
        manifest = read_manifest(folder)
        groups = [(Path(name).stem, [folder / name], False) for name in _files_in(manifest, role)]
        mixture_file = _mixture_in(manifest, folder) if role == "reference" else None
    else:
        folder = None
        groups = [group for spec in specs for group in _parse_spec(spec, role, notes)]
    items, rate = _read_items(groups, role, section, notes)
    mixture = None
    if mixture_file is not None:
        mixture = load_mixture(mixture_file, section)
        _same_rate(rate, mixture[1], f"the mixture {mixture_file}", role)
    return Side(items, rate, manifest, folder, None if mixture is None else mixture[0], notes)


def load_mixture(path: str | Path, section: Section = Section()) -> tuple[Item, int]:
    """The mixture whose scores are the baseline of SDRi and SI-SDRi, and its sample rate."""
    path = Path(path)
    if path.is_dir():
        raise ParameterError(f"--mixture {path} is a folder; give the mixture's file")
    return _open_item("mixture", [path], False, section, "mixture", [])


def _files_in(manifest: dict[str, Any], role: str) -> list[str]:
    if role == "reference":
        if "truth" not in manifest:
            raise ParameterError(
                f"--reference folder was written by 'demix {manifest['command']}', not 'demix mix'; "
                "give its files, or a folder of reference files without a manifest"
            )
        return list(manifest["truth"]["references"])
    return [o["file"] for o in manifest.get("outputs", []) if o.get("role") == "source"]


def _mixture_in(manifest: dict[str, Any], folder: Path) -> Path | None:
    names = [o["file"] for o in manifest.get("outputs", []) if o.get("role") == "mixture"]
    return folder / names[0] if names else None


def _parse_spec(spec: str, role: str, notes: list[str]) -> list[tuple[str, list[Path], bool]]:
    """``(name, files, labelled)`` groups of one command-line spec."""
    label, body = None, spec
    match = _LABEL.fullmatch(spec)
    if match and not Path(spec).exists():
        label, body = match.group(1).strip(), match.group(2)
        if not label:
            raise ParameterError(f"{spec!r}: the name before '=' is empty")
    parts = [body] if Path(body).exists() or "+" not in body else body.split("+")
    if label is None and len(parts) == 1:
        path = Path(body)
        if path.is_dir():
            return [(f.stem, [f], False) for f in _folder_files(path, role, notes)]
        return [(f.stem, [f], False) for f in expand_inputs([body])]
    files: list[Path] = []
    for part in parts:
        if not part:
            raise ParameterError(f"{spec!r}: an empty file name in the group (two '+' in a row?)")
        if Path(part).is_dir():
            raise ParameterError(f"{spec!r}: {part} is a folder; a group sums files")
        files.extend(expand_inputs([part]))
    return [(label or "+".join(f.stem for f in files), files, label is not None)]


def _folder_files(folder: Path, role: str, notes: list[str]) -> list[Path]:
    """A folder's audio files, without the ones named like the mixture; says what it took."""
    found = expand_inputs([str(folder)])
    taken = [f for f in found if f.stem.lower() not in MIXTURE_STEMS]
    skipped = [f for f in found if f not in taken]
    if not taken:
        raise ParameterError(f"folder {folder} holds only mixture files ({_names(skipped)})")
    message = f"{role}s from {folder}: {_names(taken, folder)}"
    if skipped:
        message += f" (left out {_names(skipped, folder)}: named like the mixture"
        message += "; give it as --mixture for SDRi)" if role == "reference" else ")"
    notes.append(message)
    return taken


def _names(files: list[Path], folder: Path | None = None) -> str:
    return ", ".join(str(f.relative_to(folder)) if folder else str(f) for f in files)


def _read_items(
    groups: list[tuple[str, list[Path], bool]], role: str, section: Section, notes: list[str]
) -> tuple[list[Item], int]:
    """Open every group's files (only the section) as one item each; one sample rate for all."""
    items, rate = [], None
    for name, files, labelled in groups:
        item, item_rate = _open_item(name, files, labelled, section, role, notes)
        rate = item_rate if rate is None else rate
        _same_rate(rate, item_rate, item.label, role)
        items.append(item)
    if rate is None:
        raise ParameterError(f"no {role} given")
    return items, rate


def _open_item(
    name: str, files: list[Path], labelled: bool, section: Section, role: str, notes: list[str]
) -> tuple[Item, int]:
    """An item whose samples stay on disk when soundfile reads its files (their headers give its
    shape), else read now (ffmpeg decodes them); and its sample rate."""
    recordings = [_recording(f, section) for f in files]
    if all(r is not None for r in recordings):
        known = [r for r in recordings if r is not None]
        shapes = [(r.channels, r.frames) for r in known]
        rates = [r.sample_rate for r in known]
        parts = None
    else:
        signals = [audio.read_audio(f, start=section.start, duration=section.duration) for f in files]
        parts = [s.data for s in signals]
        shapes = [(p.shape[0], p.shape[1]) for p in parts]
        rates = [s.sample_rate for s in signals]
        known = None
    for path, other in zip(files, rates, strict=True):
        _same_rate(rates[0], other, str(path), role)
    shape = _group_shape(name, files, shapes, notes)
    data = None if parts is None else _sum(parts, shape)
    return Item(name, files, shape, labelled, section, data, known), rates[0]


def _recording(path: Path, section: Section) -> streaming.Recording | None:
    """``path``'s section, to read block by block, from its header; None if soundfile cannot
    read it. A section outside the file is refused as :func:`demix.audio.read_audio` refuses it."""
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.frames <= 0:
        return None  # no length in the header: let read_audio decide
    rate, total = int(info.samplerate), int(info.frames)
    first, count = audio._section(path, rate, total, section.start, section.duration)
    return streaming.Recording(path, first, total - first if count < 0 else count, int(info.channels), rate)


def _same_rate(rate: int, other: int, what: str, role: str) -> None:
    if other != rate:
        raise ParameterError(
            f"{role} files have different sample rates ({rate} and {other} Hz, {what}); resample them first"
        )


def _group_shape(
    name: str, files: list[Path], shapes: list[tuple[int, int]], notes: list[str]
) -> tuple[int, int]:
    """The shape of a group's sum: mono parts go to every channel, shorter ones end in silence."""
    if len(shapes) == 1:
        return shapes[0]
    channels = {c for c, _ in shapes} - {1}
    if len(channels) > 1:
        raise ParameterError(
            f"group {name!r}: files with {sorted(channels)} channels cannot be summed ({_names(files)})"
        )
    lengths = [n for _, n in shapes]
    if len(set(lengths)) > 1:
        notes.append(
            f"group {name!r}: files of {min(lengths)}–{max(lengths)} samples; "
            "summed as if the shorter ones ended in silence"
        )
    return (channels.pop() if channels else 1), max(lengths)


def _sum(parts: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The sum of a group's signals, of :func:`_group_shape`'s ``shape``."""
    if len(parts) == 1:
        return parts[0]
    total = np.zeros(shape)
    for part in parts:
        total[:, : part.shape[1]] += part
    return total


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def evaluate(
    reference: Side,
    estimate: Side,
    *,
    mixture: Item | None = None,
    mode: Mode = "v3",
    ref_channel: int = 0,
    window_s: float | None = None,
    hop_s: float | None = None,
    section: Section = Section(),
    max_memory_mb: float | None = None,
) -> Evaluation:
    """Match estimates to references and score every matched pair.

    Parameters
    ----------
    reference, estimate : Side
        What :func:`load_side` read.
    mixture : Item, optional
        The baseline for SDRi/SI-SDRi; default the reference folder's mixture, if any.
    mode : {"v3", "v4"}
        ``v3``: BSS Eval v3 and SI-SDR on channel ``ref_channel`` of every file (mono files: their
        channel), whole signal, plus framewise v3 with ``window_s``. Different lengths are trimmed
        to the shortest. ``v4``: museval's BSS Eval v4 on every channel, framewise (``window_s``
        and ``hop_s``, default 1 s), median per target. The references set the channel count and
        the length: a mono estimate (or mixture) is played on every channel, and estimates are
        cut or zero-padded to the references' length, as museval does.
    window_s, hop_s : float, optional
        Frame length and step in seconds (``hop_s`` defaults to ``window_s``).
    section : Section
        The section the files were read with; recorded, and frame times are given in the files.
    max_memory_mb : float, optional
        v3 on whole signals reads the files block by block when the signals' float64 copies
        (:data:`IN_MEMORY_COPIES`) would exceed it (default :data:`MAX_MEMORY_MB`): the same
        scores, in memory bounded by the blocks. v4 and framewise v3 hold the signals in memory
        and refuse, with the numbers, signals this machine's memory cannot hold. Recorded in the
        scores as ``max_memory_mb``.
    """
    bound_mb = checks.number(
        "--max-memory", MAX_MEMORY_MB if max_memory_mb is None else max_memory_mb, low=0, low_open=True
    )
    if reference.sample_rate != estimate.sample_rate:
        raise ParameterError(
            f"sample rates differ: references at {reference.sample_rate} Hz, "
            f"estimates at {estimate.sample_rate} Hz"
        )
    mixture = mixture if mixture is not None else reference.mixture
    if mode not in MODES:
        raise ParameterError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    if hop_s is not None and window_s is None and mode == "v3":
        raise ParameterError("--hop needs --window")
    notes = reference.notes + estimate.notes
    pairs = _pairs_by_name(reference.items, estimate.items, notes)
    items = [*reference.items, *estimate.items, *([] if mixture is None else [mixture])]
    need = 8 * sum(item.shape[0] * item.shape[1] for item in items) * IN_MEMORY_COPIES[mode]
    bound = bound_mb * 2**20
    scorer: Callable[..., _Result]
    if mode == "v3" and window_s is None and need > bound:
        notes.append(
            f"scored block by block: the signals would take about {streaming._size(need)} in memory, "
            f"more than {streaming._size(bound)}"
        )
        scorer = functools.partial(_score_v3_streamed, max_memory_mb=bound_mb)
    else:
        _check_fits_in_memory(need, mode, window_s)
        scorer = _score_v3 if mode == "v3" else _score_v4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = scorer(reference, estimate, mixture, pairs, ref_channel, window_s, hop_s, section, notes)
    notes += sorted({str(w.message) for w in caught})
    est_idx = {j for j, _ in result.pairs}
    ref_idx = {i for _, i in result.pairs}
    return Evaluation(
        mode=mode,
        sample_rate=reference.sample_rate,
        n_samples=result.n_samples,
        section=section,
        matching="name" if pairs is not None else "sir",
        references=reference.items,
        estimates=estimate.items,
        mixture=mixture,
        scores=result.rows,
        unmatched_estimates=[e.label for j, e in enumerate(estimate.items) if j not in est_idx],
        missing_references=[r.label for i, r in enumerate(reference.items) if i not in ref_idx],
        amari_index=_amari(reference.manifest, estimate.manifest) if mode == "v3" else None,
        ref_channel=ref_channel if mode == "v3" or result.channels == 1 else None,
        channels=result.channels,
        window_s=result.window_s,
        hop_s=result.hop_s,
        max_memory_mb=bound_mb,
        notes=notes,
    )


@dataclass
class _Result:
    rows: list[dict[str, Any]]
    pairs: list[tuple[int, int]]
    n_samples: int
    channels: int
    window_s: float | None
    hop_s: float | None


def _check_fits_in_memory(need: int, mode: Mode, window_s: float | None) -> None:
    """Refuse signals v4 or framewise v3 would need more than the machine's memory for."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > total:
        how = "BSS Eval v4" if mode == "v4" else f"framewise v3 (--window {window_s:g})"
        raise ParameterError(
            f"{how} holds the signals in memory: about {streaming._size(need)}, and this machine has "
            f"{streaming._size(total)}; score a section (--start/--duration), or whole signals in v3 "
            "without --window, which reads them block by block"
        )


def _pairs_by_name(refs: list[Item], ests: list[Item], notes: list[str]) -> list[tuple[int, int]] | None:
    """``(estimate, reference)`` pairs when every estimate is labelled with a reference's name."""
    if not any(e.labelled for e in ests):
        return None
    names = [r.name for r in refs]
    labels = [e.name for e in ests]
    if not all(e.labelled for e in ests) or not set(labels) <= set(names):
        notes.append(
            "estimates are matched by SIR: pairing by name needs every estimate labelled with a "
            f"reference's name ({', '.join(names)})"
        )
        return None
    for what, values in (("reference", names), ("estimate", labels)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ParameterError(
                f"two {what}s are named {', '.join(twice)}; names must differ to pair by name"
            )
    return sorted(((j, names.index(label)) for j, label in enumerate(labels)), key=lambda p: p[1])


def _score_v3(
    reference: Side,
    estimate: Side,
    mixture: Item | None,
    pairs: list[tuple[int, int]] | None,
    ref_channel: int,
    window_s: float | None,
    hop_s: float | None,
    section: Section,
    notes: list[str],
) -> _Result:
    """BSS Eval v3 and SI-SDR on one channel, whole signal; optional v3 frames."""
    refs = [_channel(item, ref_channel) for item in reference.items]
    ests = [_channel(item, ref_channel) for item in estimate.items]
    mix = None if mixture is None else _channel(mixture, ref_channel)
    lengths = {len(s) for s in [*refs, *ests, *([] if mix is None else [mix])]}
    n = min(lengths)
    if len(lengths) > 1:
        notes.append(f"lengths differ ({min(lengths)}–{max(lengths)} samples); all trimmed to {n}")
    R = np.stack([s[:n] for s in refs])
    E = np.stack([s[:n] for s in ests])
    pairwise = metrics.bss_eval_pairwise(R, E)
    if pairs is None:
        est_idx, ref_idx = metrics.match_sources(pairwise.sir)
        pairs = list(zip(est_idx.tolist(), ref_idx.tolist(), strict=True))
    base: dict[str, np.ndarray] | None = None
    if mix is not None:
        x = mix[:n][None, :]
        base = {
            "sdr": metrics.bss_eval_pairwise(R, x).sdr[0],
            "si_sdr": np.array([metrics.si_sdr(r, x[0]) for r in R]),
        }
    rows = []
    for j, i in pairs:
        values = {
            "sdr": pairwise.sdr[j, i],
            "sir": pairwise.sir[j, i],
            "sar": pairwise.sar[j, i],
            "si_sdr": metrics.si_sdr(R[i], E[j]),
        }
        row = _row(reference.items[i], estimate.items[j], *_settle(values, R[i], E[j]))
        if base is not None:
            _improvements(row, {k: base[k][i] for k in base}, R[i], mix[:n])  # type: ignore[index]
        rows.append(row)
    if window_s is not None:
        _v3_frames(rows, R, E, pairs, reference.sample_rate, window_s, hop_s or window_s, section)
    return _Result(rows, pairs, n, 1, window_s, (hop_s or window_s) if window_s else None)


def _score_v3_streamed(
    reference: Side,
    estimate: Side,
    mixture: Item | None,
    pairs: list[tuple[int, int]] | None,
    ref_channel: int,
    window_s: float | None,
    hop_s: float | None,
    section: Section,
    notes: list[str],
    *,
    max_memory_mb: float = MAX_MEMORY_MB,
) -> _Result:
    """:func:`_score_v3` of whole signals read block by block: the files' blocks (groups summed)
    feed :class:`demix.metrics.StreamedBSSEval`, the mixture as one more estimate."""
    items = [*reference.items, *estimate.items, *([] if mixture is None else [mixture])]
    channels = [_channel_index(item, ref_channel) for item in items]
    lengths = {item.shape[1] for item in items}
    n = min(lengths)
    if len(lengths) > 1:
        notes.append(f"lengths differ ({min(lengths)}–{max(lengths)} samples); all trimmed to {n}")
    n_ref, n_est = len(reference.items), len(estimate.items)
    stats = metrics.StreamedBSSEval(n_ref, len(items) - n_ref)
    size = streaming.block_samples(sum(item.shape[0] for item in items), 0, max_memory_mb)
    readers = [item.channel_blocks(c, size, n) for item, c in zip(items, channels, strict=True)]
    for blocks in zip(*readers, strict=True):
        stats.add(np.stack(blocks[:n_ref]), np.stack(blocks[n_ref:]))
    pairwise, si = stats.pairwise(), stats.si_sdr()
    if pairs is None:
        est_idx, ref_idx = metrics.match_sources(pairwise.sir[:n_est])
        pairs = list(zip(est_idx.tolist(), ref_idx.tolist(), strict=True))
    loud_ref = [np.asarray(v) for v in stats.loud_ref]  # all _why_nan asks of the signals
    loud_est = [np.asarray(v) for v in stats.loud_est]
    rows = []
    for j, i in pairs:
        values = {"sdr": pairwise.sdr[j, i], "sir": pairwise.sir[j, i], "sar": pairwise.sar[j, i],
                  "si_sdr": si[j, i]}  # fmt: skip
        row = _row(reference.items[i], estimate.items[j], *_settle(values, loud_ref[i], loud_est[j]))
        if mixture is not None:
            base = {"sdr": pairwise.sdr[n_est, i], "si_sdr": si[n_est, i]}
            _improvements(row, base, loud_ref[i], loud_est[n_est])
        rows.append(row)
    return _Result(rows, pairs, n, 1, None, None)


def _score_v4(
    reference: Side,
    estimate: Side,
    mixture: Item | None,
    pairs: list[tuple[int, int]] | None,
    ref_channel: int,
    window_s: float | None,
    hop_s: float | None,
    section: Section,
    notes: list[str],
) -> _Result:
    """museval's BSS Eval v4 of the matched images, framewise, median per target."""
    rate = reference.sample_rate
    if ((reference.manifest or {}).get("truth") or {}).get("references_are") == "sources":
        notes.append(
            "these references are the dry sources of an instantaneous mix, not their images at the "
            "microphones: v4's SDR and ISR count any gain as distortion (v3 allows it)"
        )
    n_chan = max(item.data.shape[0] for item in reference.items)
    lengths = {item.data.shape[1] for item in reference.items}
    n = min(lengths)
    if len(lengths) > 1:
        notes.append(f"references of {min(lengths)}–{max(lengths)} samples; all trimmed to {n}")
    R = np.stack([_fit(item, n_chan, n, "reference", notes, ref_channel) for item in reference.items])
    E = np.stack([_fit(item, n_chan, n, "estimate", notes, ref_channel) for item in estimate.items])
    M = None if mixture is None else _fit(mixture, n_chan, n, "mixture", notes, ref_channel)
    if pairs is None:  # v3 SIR over all channels, end to end, decides the matching
        sir = metrics.bss_eval_pairwise(R.reshape(len(R), -1), E.reshape(len(E), -1)).sir
        est_idx, ref_idx = metrics.match_sources(sir)
        pairs = list(zip(est_idx.tolist(), ref_idx.tolist(), strict=True))
    if len(pairs) < len(R):
        notes.append("BSS Eval v4 scores only the references that have an estimate")
    window_s = V4_WINDOW_S if window_s is None else window_s
    hop_s = window_s if hop_s is None else hop_s
    window, hop = _samples(window_s, rate, "--window"), _samples(hop_s, rate, "--hop")
    if window >= n:
        notes.append(
            f"the window ({window_s:g} s) is not shorter than the signal: one frame, the whole signal"
        )
    refs, ests = [i for _, i in pairs], [j for j, _ in pairs]
    scores = bss_eval_v4(R[refs], E[ests], window=window, hop=hop)
    base = None
    if M is not None:
        base = bss_eval_v4(R[refs], np.broadcast_to(M, R[refs].shape), window=window, hop=hop)
    times = (section.start + scores.frame_starts / rate).tolist()
    rows = []
    for k, (j, i) in enumerate(pairs):
        frames = {m: getattr(scores, m)[k] for m in ("sdr", "isr", "sir", "sar")}
        values, reasons, frame_block = _median_of_frames(frames, R[i], E[j], n_refs=len(refs))
        row = _row(reference.items[i], estimate.items[j], values, reasons)
        if base is not None and M is not None:
            base_values = _median_of_frames({"sdr": base.sdr[k]}, R[i], M, n_refs=len(refs))[0]
            _improvements(row, base_values, R[i], M)
        row["frames"] = {"window_s": window_s, "hop_s": hop_s, "time_s": times, **frame_block}
        rows.append(row)
    return _Result(rows, pairs, n, n_chan, window_s, hop_s)


def _fit(item: Item, n_chan: int, n: int, role: str, notes: list[str], ref_channel: int) -> np.ndarray:
    """``item``'s signal with the references' channels and length, as museval pads estimates.

    A mono signal is played on every channel of multichannel references; against mono
    references, a multichannel signal is scored on ``ref_channel``.
    """
    data = item.data
    who = "the mixture" if role == "mixture" else f"{role} {item.name}"
    if n_chan == 1 and data.shape[0] > 1:
        notes.append(f"the references are mono: {who} is scored on --ref-channel {ref_channel}")
        data = _channel(item, ref_channel)[None, :]
    elif data.shape[0] == 1 and n_chan > 1:
        notes.append(f"{who} is mono: scored as the same signal on all {n_chan} channels")
        data = np.repeat(data, n_chan, axis=0)
    elif data.shape[0] != n_chan:
        raise ParameterError(
            f"{role} {item.label} has {data.shape[0]} channels, the references {n_chan}; "
            "BSS Eval v4 scores every channel (use --mode v3 to score one channel)"
        )
    if data.shape[1] != n:
        action = "cut" if data.shape[1] > n else "zero-padded"
        notes.append(f"{who} ({data.shape[1]} samples) {action} to the references' {n}")
        fitted = np.zeros((n_chan, n))
        fitted[:, : min(n, data.shape[1])] = data[:, :n]
        data = fitted
    return data


def _samples(seconds: float, rate: int, option: str) -> int:
    count = round(seconds * rate)
    if not count >= 1:
        raise ParameterError(f"{option} {seconds:g} s is shorter than one sample at {rate} Hz")
    return count


def _channel(item: Item, ref_channel: int) -> np.ndarray:
    """The scored channel of an item: ``ref_channel``, or the only one of a mono file."""
    return item.data[_channel_index(item, ref_channel)]


def _channel_index(item: Item, ref_channel: int) -> int:
    """Which channel of ``item`` is scored: ``ref_channel``, or 0 for a mono file."""
    if item.shape[0] == 1:
        return 0
    if ref_channel >= item.shape[0]:
        raise ParameterError(
            f"--ref-channel {ref_channel} is out of range: {item.label} has {item.shape[0]} channels"
        )
    return ref_channel


def _row(ref: Item, est: Item, values: dict[str, float], reasons: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "reference": ref.label,
        "estimate": est.label,
        "reference_name": ref.name,
        "estimate_name": est.name,
        **values,
    }
    if reasons:
        row["reasons"] = reasons
    return row


def _settle(
    values: dict[str, float], ref: np.ndarray, est: np.ndarray
) -> tuple[dict[str, float], dict[str, str]]:
    """Cap scores at the ceiling; NaN, with the reason, for what cannot be computed."""
    out, reasons = {}, {}
    for key, value in values.items():
        value = float(value)
        if value == np.inf and key == "sir":
            reasons[key] = SIR_UNDEFINED
            value = np.nan
        elif np.isnan(value) or value == -np.inf:
            reasons[key] = _why_nan(ref, est)
            value = np.nan
        out[key] = value if np.isnan(value) else min(value, CEILING_DB)
    return out, reasons


def _why_nan(ref: np.ndarray, est: np.ndarray) -> str:
    if not np.any(ref):
        return "the reference is silent (all zero)"
    if not np.any(est):
        return "the estimate is silent (all zero)"
    return "no part of the estimate lies in the span of the reference (−∞ dB)"


def _median_of_frames(
    frames: dict[str, np.ndarray], ref: np.ndarray, est: np.ndarray, *, n_refs: int
) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Medians over the scored frames (museval's ``nanmedian``), with reasons and the frame lists."""
    values, reasons, block = {}, {}, {}
    for key, series in frames.items():
        series = np.minimum(series, CEILING_DB)  # +inf is the ceiling; NaN stays NaN
        if key == "sir" and n_refs == 1:
            series = np.full_like(series, np.nan)
            reasons[key] = SIR_UNDEFINED
        block[key] = series
        scored = series[~np.isnan(series)]
        values[key] = float(np.median(scored)) if scored.size else np.nan
        if not scored.size and key not in reasons:
            reasons[key] = (
                _why_nan(ref, est)
                if not (np.any(ref) and np.any(est))
                else "every frame has a silent reference or estimate (not scored, as in museval)"
            )
    n_nan = int(np.isnan(frames["sdr"]).sum())
    if 0 < n_nan < frames["sdr"].size:
        reasons["frames"] = (
            f"{n_nan} of {frames['sdr'].size} frames have a silent reference or estimate: not scored "
            "(null), as in museval; medians are over the others"
        )
    return values, reasons, block


def _improvements(row: dict[str, Any], base: dict[str, float], ref: np.ndarray, mix: np.ndarray) -> None:
    """SDRi (and SI-SDRi when scored) over the mixture scored as the estimate."""
    for key in ("sdr", "si_sdr"):
        if key not in row or key not in base:
            continue
        base_value = min(float(base[key]), CEILING_DB)
        improvement = row[key] - base_value
        row[f"{key}i"] = improvement
        row.setdefault("mixture", {})[key] = base_value
        if np.isnan(improvement):
            reason = row.get("reasons", {}).get(key) or f"the mixture's {key.upper()}: {_why_nan(ref, mix)}"
            row.setdefault("reasons", {})[f"{key}i"] = reason


def _v3_frames(
    rows: list[dict[str, Any]],
    R: np.ndarray,
    E: np.ndarray,
    pairs: list[tuple[int, int]],
    rate: int,
    window_s: float,
    hop_s: float,
    section: Section,
) -> None:
    """Framewise v3 SDR/SIR/SAR of every matched pair (frames with a silent source are null)."""
    window, hop = round(window_s * rate), round(hop_s * rate)
    if window < 1 or hop < 1 or window > R.shape[1]:
        raise ParameterError(
            f"--window {window_s} / --hop {hop_s} s must be positive and the window at most the "
            f"signal ({R.shape[1] / rate:.3f} s)"
        )
    refs, ests = [i for _, i in pairs], [j for j, _ in pairs]
    frames = metrics.bss_eval_framewise(R[refs], E[ests], window=window, hop=hop)
    n_frames = frames.sdr.shape[1]
    times = (section.start + np.arange(n_frames) * hop / rate).tolist()
    for k, row in enumerate(rows):
        block = {key: np.minimum(getattr(frames, key)[k], CEILING_DB) for key in ("sdr", "sir", "sar")}
        if len(refs) == 1:
            block["sir"] = np.full(n_frames, np.nan)
        row["frames"] = {"window_s": window_s, "hop_s": hop_s, "time_s": times, **block}


def _amari(reference: dict[str, Any] | None, estimate: dict[str, Any] | None) -> float | None:
    """Amari index of ``W @ A`` when the mix's true ``A`` and the run's ``W`` are both known."""
    truth = (reference or {}).get("truth", {}).get("mixing")
    model = (estimate or {}).get("model") or {}
    if (
        truth is None
        or model.get("kind", "instantaneous") != "instantaneous"
        or model.get("unmixing") is None
    ):
        return None
    W, A = np.asarray(model["unmixing"]), np.asarray(truth)
    if W.shape[1] != A.shape[0] or W.shape[0] != A.shape[1]:
        return None  # other microphones, or fewer sources than the truth: W A is not square
    return float(metrics.amari_index(W @ A))


# --------------------------------------------------------------------------------------------
# The scores file
# --------------------------------------------------------------------------------------------


def scores_path(estimate: Side, explicit: Path | None) -> tuple[Path | None, str | None]:
    """Where the scores go, checked before any scoring: ``(path, None)``, or ``(None, why not)``.

    ``explicit`` (``--scores``) must be a writable ``.json`` name that is not an existing file of
    another kind, else :class:`OutputError`. The default, ``scores.json`` in the estimates' one
    folder, is given up with a reason, never forced: estimates from several folders, a read-only
    folder, or a ``scores.json`` there that demix did not write.
    """
    if explicit is not None:
        problem = _unwritable(explicit)
        if problem:
            raise OutputError(f"--scores {explicit}: {problem}; choose another file or --no-scores")
        return explicit, None
    folders = sorted({str(f.parent) for item in estimate.items for f in item.files})
    if estimate.folder is not None:
        folders = [str(estimate.folder)]
    if len(folders) != 1:
        return None, (
            f"the estimates come from {len(folders)} folders ({', '.join(folders)}); "
            "say where the scores go with --scores FILE"
        )
    path = Path(folders[0]) / SCORES_FILE
    problem = _unwritable(path)
    return (None, f"{path}: {problem}; use --scores FILE") if problem else (path, None)


def _unwritable(path: Path) -> str | None:
    """Why demix will not write its scores to ``path``, or None."""
    if path.name == MANIFEST or path.suffix.lower() in audio.AUDIO_EXTENSIONS:
        return f"give a .json file name (not an audio file or {MANIFEST})"
    if path.is_dir():
        return "a folder, not a file"
    if path.exists() and not _is_scores_document(path):
        return "exists and is not a demix scores file (it is left alone)"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    # Permission bits too: as root, access() allows writing into read-only data folders.
    if not parent.is_dir() or not os.stat(parent).st_mode & 0o222 or not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is read-only"
    return None


def write_scores(document: dict[str, Any], path: Path, estimate: Side) -> bool:
    """Write the scores atomically; in a run folder, also list them in its manifest.

    Returns whether the run's manifest now lists the file (``role: "scores"``), so that
    ``--force`` replaces it with the run's other outputs.
    """
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))
    folder = estimate.folder
    if folder is None or not (folder / MANIFEST).exists():
        return False
    try:
        name = path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return False
    manifest = read_manifest(folder)
    outputs = [o for o in manifest.get("outputs", []) if not (isinstance(o, dict) and o.get("file") == name)]
    outputs.append({"file": name, "role": "scores", "mode": document["mode"]})
    write_manifest(folder, {**manifest, "outputs": outputs})
    return True


def _is_scores_document(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("kind") == "scores" and "demix_version" in data
