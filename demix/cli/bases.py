"""``demix bases learn``: NMF bases of one source from clean examples, for ``demix nmf --bases``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demix.cli import options as opt
from demix.cli.console import Reporter, handle_errors
from demix.cli.fetch import download_bar
from demix.inputs import expand_sources
from demix.methods.nmf_separate import LearnBasesParams
from demix.outputs import check_file_target

bases_app = typer.Typer(
    name="bases",
    help="Learn NMF bases of one source from clean examples, for `demix nmf --bases LABEL=FILE`.",
    no_args_is_help=True,
)


@bases_app.command("learn", no_args_is_help=True)
@handle_errors()
def learn(
    examples: Annotated[
        list[str],
        typer.Argument(
            help="Clean recordings of the one source: files, folders, globs or URLs.", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="The bases file to write (.npz).")],
    components: Annotated[
        int, typer.Option("-k", "--components", min=1, help="Number of bases to learn.")
    ] = LearnBasesParams.components,
    beta: opt.Beta = LearnBasesParams.beta,
    n_fft: opt.NFft = LearnBasesParams.n_fft,
    hop: opt.Hop = LearnBasesParams.hop,
    max_iter: opt.MaxIter = LearnBasesParams.max_iter,
    tol: opt.Tol = LearnBasesParams.tol,
    seed: opt.Seed = LearnBasesParams.seed,
    init: opt.NMFInit = opt.Init(LearnBasesParams.init),
    sparsity: opt.Sparsity = LearnBasesParams.sparsity,
    sr: opt.SampleRate = None,
    force: opt.Force = False,
    json: opt.Json = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Learn -k spectral bases from examples of one source (concatenated in time) into -o FILE.npz.

    Learn one file per source, then separate a mixture of them with
    `demix nmf MIX -o OUT --bases voice=voice.npz --bases drums=drums.npz`. The file records the
    FFT size, hop, rate and beta; `nmf --bases` refuses bases learnt with other settings.
    """
    from demix.pipeline import learn_bases_file

    reporter = Reporter(json, quiet, verbose)
    params = LearnBasesParams(
        components=components, beta=beta, n_fft=n_fft, hop=hop, max_iter=max_iter, tol=tol, seed=seed,
        init=init.value, sparsity=sparsity,
    )  # fmt: skip
    check_file_target(out, force=force)  # a folder, an unwritable place: refused before the work
    sources = expand_sources(examples)
    with download_bar(reporter):
        meta = learn_bases_file(sources, out, params, sample_rate=sr, force=force)
    if reporter.json_mode:
        reporter.emit_json(meta)
    elif reporter.shows_tables:
        reporter.out.print(f"learnt {components} bases at {meta['sample_rate']} Hz → {out}")
