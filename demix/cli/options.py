"""Options shared by the commands, defined once as ``Annotated`` aliases (DESIGN's contract)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from demix.audio import DEFAULT_SUBTYPE

Inputs = Annotated[
    list[str],
    typer.Argument(
        help="Audio files, folders, glob patterns or http(s) URLs (see demix fetch).", show_default=False
    ),
]
Out = Annotated[
    Path, typer.Option("-o", "--out", help="Output folder (one input) or parent folder (several).")
]
Sources = Annotated[
    int | None,
    typer.Option("-n", "--sources", min=1, help="Sources to output [default: the input's channels]."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; recorded in the manifest.")]
MaxIter = Annotated[int, typer.Option("--max-iter", min=1, help="Iteration limit.")]
Tol = Annotated[float, typer.Option("--tol", help="Convergence tolerance.")]
RefChannel = Annotated[
    int,
    typer.Option("--ref-channel", min=0, help="Microphone that sources are projected back onto (0-based)."),
]
Format = Annotated[str, typer.Option("--format", help="Output container: wav or flac.")]
Subtype = Annotated[
    str,
    typer.Option(
        "--subtype",
        help=f"PCM_16, PCM_24 or FLOAT. {DEFAULT_SUBTYPE} by default: plays everywhere, its noise floor "
        "(-146 dBFS) is far below any separation error.",
    ),
]
SampleRate = Annotated[int | None, typer.Option("--sr", min=1, help="Resample inputs to this rate (Hz).")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output folder's results.")]
Json = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout (machine-readable results).")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress, no table, only errors.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="More detail; tracebacks on internal errors.")]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 3 when a method did not converge.")]


class Scaling(str, Enum):
    """How separated sources are scaled when written."""

    reference = "reference"
    unit = "unit"


Scale = Annotated[
    Scaling,
    typer.Option(
        "--scale",
        help="reference: as the --ref-channel microphone heard each source; "
        "unit: unit variance (needs --subtype FLOAT).",
    ),
]


class Init(str, Enum):
    """How NMF factors are initialised."""

    random = "random"
    nndsvd = "nndsvd"


NMFInit = Annotated[Init, typer.Option("--init", help="Initialisation of the factors.")]
Beta = Annotated[float, typer.Option("--beta", help="Beta divergence: 2 Euclidean, 1 KL, 0 Itakura-Saito.")]
NFft = Annotated[int, typer.Option("--n-fft", min=16, help="STFT frame length in samples.")]
Hop = Annotated[int, typer.Option("--hop", min=1, help="STFT hop in samples.")]
Sparsity = Annotated[float, typer.Option("--sparsity", min=0.0, help="L1 penalty on the activations.")]
