"""Plain data that says what one run does and how it is written: picklable, so a run can go to
another process or a cluster worker unchanged.

``stage_audio`` is the one place a run's audio is staged into its folder with these options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demix import audio
from demix.errors import ParameterError
from demix.outputs import RunFolder
from demix.post import Scale


@dataclass(frozen=True)
class WriteOptions:
    """How results are written: format, scale, reference microphone, overwrite policy."""

    fmt: str = "wav"
    subtype: str = audio.DEFAULT_SUBTYPE
    scale: Scale = "reference"
    ref_channel: int = 0
    force: bool = False
    sample_rate: int | None = None

    def validate(self) -> None:
        audio.validate_output_format(self.fmt, self.subtype)
        if self.scale == "unit" and self.subtype != "FLOAT":
            raise ParameterError(
                "--scale unit writes unit-variance sources above full scale; it needs --subtype FLOAT"
            )
        if self.ref_channel < 0:
            raise ParameterError(f"--ref-channel must be ≥ 0, got {self.ref_channel}")


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
        lambda tmp: audio.write_audio(tmp, data, rate, fmt=options.fmt, subtype=options.subtype),
    )
