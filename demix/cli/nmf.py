"""``demix nmf``: spectrogram NMF separation that works on mono, blind or with learnt bases."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from demix.cli import options as opt
from demix.cli.console import handle_errors
from demix.cli.runner import run_separation
from demix.cli.shared import Shared, separating_command
from demix.errors import ParameterError
from demix.types import Callback, Separation


class Grouping(str, Enum):
    percussive_harmonic = "percussive-harmonic"
    timbre = "timbre"
    none = "none"


class Init(str, Enum):
    random = "random"
    nndsvd = "nndsvd"


@handle_errors()
@separating_command
def nmf(
    inputs: opt.Inputs,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output folder (not needed with --save-bases).")
    ] = None,
    components: Annotated[int, typer.Option("-k", "--components", min=1, help="NMF rank K.")] = 16,
    sources: Annotated[
        int, typer.Option("-n", "--sources", min=1, help="Sources to group components into.")
    ] = 2,
    beta: Annotated[
        float, typer.Option("--beta", help="Beta divergence: 2 Euclidean, 1 KL, 0 Itakura-Saito.")
    ] = 1.0,
    n_fft: Annotated[int, typer.Option("--n-fft", min=16, help="STFT frame length in samples.")] = 2048,
    hop: Annotated[int, typer.Option("--hop", min=1, help="STFT hop in samples.")] = 512,
    max_iter: opt.MaxIter = 200,
    tol: opt.Tol = 1e-4,
    seed: opt.Seed = 0,
    init: Annotated[Init, typer.Option("--init", help="Initialisation of the factors.")] = Init.random,
    group: Annotated[
        Grouping,
        typer.Option(
            "--group",
            help="percussive-harmonic: drums vs tonal; timbre: k-means on MFCCs of the "
            "bases; none: every component its own output.",
        ),
    ] = Grouping.percussive_harmonic,
    sparsity: Annotated[
        float, typer.Option("--sparsity", min=0.0, help="L1 penalty on the activations.")
    ] = 0.0,
    transients: Annotated[
        bool,
        typer.Option(
            "--transients/--no-transients",
            help="percussive-harmonic: move the attacks of tonal components to the percussive "
            "source (better harmonic stem; turn off when the drums are much quieter).",
        ),
    ] = True,
    save_bases: Annotated[
        Path | None, typer.Option("--save-bases", help="Learn -k bases from clean example(s) into this .npz.")
    ] = None,
    bases: Annotated[
        list[str] | None,
        typer.Option("--bases", help="LABEL=FILE.npz: separate with these learnt bases (repeat per source)."),
    ] = None,
    free: Annotated[
        int, typer.Option("--free", min=0, help="Extra free components, written as residual.")
    ] = 0,
    shared: Shared = Shared(),
) -> None:
    """Separate sources by NMF of the magnitude spectrogram, Wiener-masked back to audio."""
    from demix.methods import nmf_separate as nmf_methods

    reporter = shared.reporter
    spectral: dict[str, Any] = {"n_fft": n_fft, "hop": hop, "beta": beta}
    fit: dict[str, Any] = {"max_iter": max_iter, "tol": tol, "seed": seed, "sparsity": sparsity}
    if save_bases is not None:
        from demix.bases import learn_bases_file

        if bases:
            raise ParameterError("--save-bases learns bases; it cannot be combined with --bases")
        meta = learn_bases_file(
            inputs,
            save_bases,
            components=components,
            sample_rate=shared.sr,
            init=init.value,
            force=shared.force,
            **spectral,
            **fit,
        )
        if reporter.json_mode:
            reporter.emit_json(meta)
        elif reporter.shows_tables:
            reporter.out.print(f"learnt {components} bases at {meta['sample_rate']} Hz → {save_bases}")
        return
    if out is None:
        raise ParameterError("-o/--out is required (except with --save-bases)")

    params: dict[str, Any] = {
        "components": components,
        "sources": sources,
        "group": group.value,
        "transients": transients,
        "init": init.value,
        "free": free,
        **spectral,
        **fit,
    }
    if bases:
        from demix.bases import load_labelled_bases

        loaded = load_labelled_bases(bases)
        params.update(
            bases={label: str(path) for label, (path, _) in loaded.items()},
            components=None,
            sources=len(loaded) + (free > 0),
            group=None,
            init=None,
        )

        def separate(X: np.ndarray, sample_rate: int, callback: Callback | None) -> Separation:
            from demix.bases import check_settings

            for path, found in loaded.values():
                check_settings(path, found, {"sample_rate": sample_rate, **spectral})
            return nmf_methods.nmf_separate_supervised(
                X,
                sample_rate,
                bases={label: found.W for label, (_, found) in loaded.items()},
                n_free=free,
                callback=callback,
                **spectral,
                **fit,
            )
    else:
        if free:
            raise ParameterError("--free adds components to --bases; without --bases use -k")

        def separate(X: np.ndarray, sample_rate: int, callback: Callback | None) -> Separation:
            return nmf_methods.nmf_separate(
                X,
                sample_rate,
                n_components=components,
                n_sources=sources,
                init=init.value,
                group=group.value,
                refine_transients=transients,
                callback=callback,
                **spectral,
                **fit,
            )

    run_separation("nmf", params, separate, inputs, out, shared)
