"""Options shared by the commands, defined once as ``Annotated`` aliases (DESIGN's contract).

Every numeric option is bounded here, so a typo is refused before any work with its bound in the
message (a rate of 2e9 Hz or a million sources would otherwise allocate gigabytes first); floats
must be finite; choices are case-insensitive. :func:`polish_help` gives every registered command
the same help conventions (flags shown as flags, no Python type names, defaults visible, one
example each).
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer._click import Context  # typer vendors click
from typer.core import TyperArgument

from demix import audio
from demix.audio import DEFAULT_SUBTYPE  # noqa: F401 (re-exported for the commands)

#: Upper bounds of the shared options, stated in their refusals.
MAX_RATE = 768_000
MAX_SOURCES = 256
MAX_ITER = 1_000_000
MAX_SEED = 2**32 - 1
MAX_FFT = 1 << 16


def finite(value: float | None) -> float | None:
    """Typer callback: refuse NaN and infinities (``--tol nan`` would never converge)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _choice(option: str, choices: tuple[str, ...]) -> Any:
    def normalise(value: str | None) -> str | None:
        if value is None:
            return None
        for choice in choices:
            if value.casefold() == choice.casefold():
                return choice
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")

    return normalise


Inputs = Annotated[
    list[str],
    typer.Argument(
        help="Audio files, folders, glob patterns or http(s) URLs (see demix fetch).",
        show_default=False,
        metavar="INPUTS...",
    ),
]
Out = Annotated[
    Path, typer.Option("-o", "--out", help="Output folder (one input) or parent folder (several).")
]
Sources = Annotated[
    int | None,
    typer.Option(
        "-n",
        "--sources",
        min=1,
        max=MAX_SOURCES,
        help="Sources to output.",
        show_default="the input's channels",
    ),
]
Seed = Annotated[
    int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed; recorded in the manifest.")
]
MaxIter = Annotated[int, typer.Option("--max-iter", min=1, max=MAX_ITER, help="Iteration limit.")]
Tol = Annotated[
    float, typer.Option("--tol", min=0.0, max=1.0, callback=finite, help="Convergence tolerance.")
]
RefChannel = Annotated[
    int,
    typer.Option(
        "--ref-channel", min=0, max=4095, help="Microphone that sources are projected back onto (0-based)."
    ),
]
Format = Annotated[
    str,
    typer.Option(
        "--format",
        help="Output container (any case).",
        metavar="|".join(audio.FORMATS),
        callback=_choice("--format", audio.FORMATS),
    ),
]
Subtype = Annotated[
    str,
    typer.Option(
        "--subtype",
        help="Sample format (any case): PCM_24 plays everywhere and its noise floor (-146 dBFS) is far "
        "below any separation error; FLOAT for --scale unit.",
        metavar="|".join(audio.SUBTYPES),
        callback=_choice("--subtype", audio.SUBTYPES),
    ),
]
SampleRate = Annotated[
    int | None,
    typer.Option(
        "--sr",
        min=1000,
        max=MAX_RATE,
        help="Resample inputs to this rate (Hz).",
        show_default="the first input's rate",
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output folder's results.")]
Json = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout (machine-readable results).")]
Quiet = Annotated[
    bool,
    typer.Option(
        "-q", "--quiet", help="No progress bars or notes; results (stdout) and warnings still shown."
    ),
]
Verbose = Annotated[
    bool, typer.Option("-v", "--verbose", help="Per-stage timings and details; tracebacks on errors.")
]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 3 when a method did not converge.")]


class Scaling(str, Enum):
    """How separated sources are scaled when written."""

    reference = "reference"
    unit = "unit"


Scale = Annotated[
    Scaling,
    typer.Option(
        "--scale",
        case_sensitive=False,
        help="reference: as the --ref-channel microphone heard each source; "
        "unit: unit variance (needs --subtype FLOAT).",
    ),
]


class Init(str, Enum):
    """How NMF factors are initialised."""

    random = "random"
    nndsvd = "nndsvd"


NMFInit = Annotated[Init, typer.Option("--init", case_sensitive=False, help="Initialisation of the factors.")]
Beta = Annotated[
    float,
    typer.Option(
        "--beta",
        min=-10.0,
        max=10.0,
        callback=finite,
        help="Beta divergence: 2 Euclidean, 1 KL, 0 Itakura-Saito.",
    ),
]
NFft = Annotated[int, typer.Option("--n-fft", min=16, max=MAX_FFT, help="STFT frame length in samples.")]
Hop = Annotated[int, typer.Option("--hop", min=1, max=MAX_FFT, help="STFT hop in samples.")]
Sparsity = Annotated[
    float,
    typer.Option("--sparsity", min=0.0, max=1e6, callback=finite, help="L1 penalty on the activations."),
]

Start = Annotated[
    str | None,
    typer.Option(
        "--start", help="Separate from this time on: seconds (90) or [hh:]mm:ss[.ms]; only that part is read."
    ),
]
Duration = Annotated[
    str | None,
    typer.Option(
        "--duration", help="Separate this long a section: seconds or [hh:]mm:ss[.ms] (default: to the end)."
    ),
]
Images = Annotated[
    bool | None,
    typer.Option(
        "--images/--no-images",
        help="Write each source as every microphone heard it (one channel per microphone) or as the "
        "--ref-channel microphone heard it [default: images for stereo input].",
        show_default=False,
    ),
]
Quality = Annotated[
    float | None,
    typer.Option(
        "--quality", min=0.0, max=1.0, help="ogg, opus, mp3: encoder quality from 0 (smallest) to 1 (best)."
    ),
]
FileTemplate = Annotated[
    str,
    typer.Option("--name", help="File name of each source: {source} {index} {input} {ext}."),
]
FolderTemplate = Annotated[
    str,
    typer.Option("--folder", help="Several inputs: each run folder's name under -o: {input} {index}."),
]
Jobs = Annotated[
    int,
    typer.Option(
        "-j",
        "--jobs",
        min=1,
        max=1024,
        help="Separate this many inputs at once, in worker processes (each with cores/N BLAS threads).",
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Skip inputs whose run folder already holds the same finished run (same command, "
        "parameters and input); with --force the other folders are redone.",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run the inputs on a Dask cluster, e.g. tcp://host:8786 (pip install 'demix[cluster]'); "
        "its workers must see the same paths.",
        metavar="ADDRESS",
    ),
]


# ---------------------------------------------------------------------------------------------
# Help conventions for every registered command (including ones added later)

#: One example per command, shown at the end of its help.
EXAMPLES = {
    "": "demix mix a.wav b.wav -o mixdir && demix ica mixdir/mixture.wav -o out",
    "mix": "demix mix a.wav b.wav c.wav -o mixdir --seed 1",
    "ica": "demix ica mixdir/mixture.wav -o out",
    "nmf": "demix nmf song.wav -o out -k 16 --group percussive-harmonic",
    "decorr": "demix decorr mixdir/mixture.wav -o out --method sobi --lags 1-100",
    "duet": "demix duet stereo.wav -o out",
    "iva": "demix iva room/mixture.wav -o out",
    "repet": "demix repet song.wav -o out",
    "eval": "demix eval --reference mixdir --estimate out",
    "fetch": 'demix fetch "https://example.org/talk.mp3" -o talk.wav --start 1:00 --end 1:30',
    "report": "demix report out/ -r mixdir",
    "identify": "demix identify enroll voices/ -o voices.npz",
    "identify enroll": "demix identify enroll voices/ -o voices.npz",
    "identify label": "demix identify label voices.npz out/ --rename",
    "bases": "demix bases learn drums.wav -o drums.npz -k 16",
    "bases learn": "demix bases learn drums.wav -o drums.npz -k 16",
}


class _PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: no ``<list[str]>`` type, no ``{braces}``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        return self.display_name_raw


def polish_help(command: Any, path: tuple[str, ...] = ()) -> None:
    """Apply the help conventions to ``command`` and its sub-commands, once.

    Flags (``--force``, ``-h``) show no ``<bool>`` value, arguments their upper-case metavar
    instead of a Python type, ``[default: …]`` in a help text is escaped so rich markup does not
    swallow it, and each command's help ends with its example from :data:`EXAMPLES`.
    """
    if getattr(command, "_demix_polished", False):
        return
    command._demix_polished = True
    context = Context(command, info_name=path[-1] if path else "demix", help_option_names=["-h", "--help"])
    params = list(command.params)
    help_option = command.get_help_option(context)
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
            param.__class__ = _PlainArgument
        elif getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False):
            param.metavar = ""
        elif param.metavar is None and any(
            t in str(param.display_type_rich(context)) for t in ("str", "list[")
        ):
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.upper()
        is_flag = getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False)
        if (
            not isinstance(param, TyperArgument)
            and not is_flag
            and param.default is None
            and not param.required
            and not isinstance(param.show_default, str)
            and "default:" not in (param.help or "")
        ):
            param.show_default = "none"  # say it: an option left out has a value too
        if param.help and "[" in param.help:
            param.help = escape(param.help)
    key = " ".join(path)
    if key in EXAMPLES and command.help and "Example" not in command.help:
        command.help = f"{command.help.rstrip()}\n\nExample: {EXAMPLES[key]}"
    for name, sub in getattr(command, "commands", {}).items():
        polish_help(sub, (*path, name))


Plot = Annotated[
    bool,
    typer.Option(
        "--plot",
        help="Also write spectrograms.png and convergence.png into the run folder (needs demix[plot]).",
    ),
]

MaxMemory = Annotated[
    float,
    typer.Option(
        "--max-memory",
        min=50,
        help="MB a run may hold the signal in; beyond it the input is read from disk block by block "
        "(iva, duet, repet and nmf with --bases: in overlapping segments that fit it).",
    ),
]
