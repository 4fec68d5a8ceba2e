"""Plain data that says what one run does and how it is written: picklable, so a run can go to
another process or a cluster worker unchanged.

``stage_audio`` is the one place a run's audio is staged into its folder with these options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demix import audio, checks
from demix.errors import ParameterError
from demix.outputs import RunFolder
from demix.post import Scale

#: Fields a file-name template may use: the input's stem, the source's name, its 1-based index
#: in the written order, and the format's extension.
TEMPLATE_FIELDS = ("input", "source", "index", "ext")
DEFAULT_FILE_TEMPLATE = "{source}.{ext}"
#: Memory (MB) a run may use for the signal before a method that streams switches to blocks.
DEFAULT_MAX_MEMORY_MB = 400.0


@dataclass(frozen=True)
class WriteOptions:
    """How inputs are read and results written: section, rate, format, scale, layout, names.

    ``start``/``duration`` (seconds) read one section of every input; ``images`` None lets the
    pipeline decide (stereo in, stereo stems out for linear methods); ``file_template`` names
    each source's file from :data:`TEMPLATE_FIELDS`.
    """

    fmt: str = "wav"
    subtype: str = audio.DEFAULT_SUBTYPE
    scale: Scale = "reference"
    ref_channel: int = 0
    force: bool = False
    sample_rate: int | None = None
    start: float = 0.0
    duration: float | None = None
    images: bool | None = None
    quality: float | None = None
    file_template: str = DEFAULT_FILE_TEMPLATE
    plot: bool = False
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB

    def validate(self) -> None:
        audio.validate_output_format(self.fmt, self.subtype, self.quality)
        if self.scale == "unit" and self.subtype != "FLOAT":
            raise ParameterError(
                "--scale unit writes unit-variance sources above full scale; it needs --subtype FLOAT"
            )
        if self.scale == "unit" and self.images:
            raise ParameterError("--images writes sources as the microphones heard them; --scale unit cannot")
        if self.ref_channel < 0:
            raise ParameterError(f"--ref-channel must be ≥ 0, got {self.ref_channel}")
        check_file_template(self.file_template)

    def file_name(self, input_stem: str, source: str, index: int) -> str:
        """The file a source is written to, from :attr:`file_template`."""
        return self.file_template.format(input=input_stem, source=source, index=index, ext=self.fmt)

    def file_names(self, input_stem: str, sources: Sequence[str]) -> list[str]:
        """The files the sources (by name, in output order) are written to; two the same is an
        error, before anything is written."""
        files = [self.file_name(input_stem, name, i + 1) for i, name in enumerate(sources)]
        if len(set(files)) < len(files):
            raise ParameterError(f"--name {self.file_template!r} gives two sources the same file name")
        return files


def check_file_template(template: str) -> None:
    """Refuse a ``--name`` template with unknown fields, path separators, or one that names every
    source the same."""
    fields = checks.template_fields("--name", template)
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown:
        known = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        raise ParameterError(f"--name {template!r} uses {sorted(unknown)[0]!r}; expected fields {known}")
    if not fields & {"source", "index"}:
        raise ParameterError(
            f"--name {template!r} would give every source the same file; use {{source}} or {{index}}"
        )
    if "/" in template or "\\" in template or template.strip(". ") == "":
        raise ParameterError(
            f"--name {template!r} must name a file inside the run folder (no path separators)"
        )


@dataclass(frozen=True)
class Job:
    """One input through one method into one run folder.

    ``method`` is a :data:`demix.registry.METHODS` key and ``params`` an instance of that
    method's parameters dataclass; ``source`` a local file or an http(s) URL; ``command`` the
    CLI command recorded in the manifest.
    """

    command: str
    method: str
    params: Any
    source: Path | str
    folder: Path
    options: WriteOptions


def stage_audio(run: RunFolder, file: str, data: np.ndarray, rate: int, options: WriteOptions) -> None:
    """Stage ``data`` as ``file`` in the run folder, in the format the options ask for."""
    run.stage(
        file,
        lambda tmp: audio.write_audio(
            tmp, data, rate, fmt=options.fmt, subtype=options.subtype, quality=options.quality
        ),
    )
