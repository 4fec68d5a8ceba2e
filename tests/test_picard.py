"""Picard (ours): quality against FastICA and python-picard, convergence, options, restarts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from demix.errors import ParameterError
from demix.methods.fastica import fastica
from demix.methods.picard import choose_ortho, picard
from demix.methods.restarts import best_of_restarts, negentropy
from demix.metrics import amari_index
from demix.mixing import random_mixing
from tests.conftest import shared

LIBRI = [
    "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
]
ISSUE_MIXING = np.array([[0.9, 0.5, 0.3], [0.4, 0.8, 0.6], [0.2, 0.45, 0.95]])


def _libri(offset_s: float, seconds: float) -> np.ndarray:
    rows = [sf.read(shared(name))[0] for name in LIBRI]
    a = int(offset_s * 16000)
    return np.stack([r[a : a + int(seconds * 16000)] for r in rows])


def _min_sir_instantaneous(P: np.ndarray, S: np.ndarray) -> float:
    """Min SIR of ``y = P s`` with the interference counted without BSS Eval's 512-tap filters
    (on the clips below they agree to 0.07 dB, measured, at a hundredth of the cost)."""
    sirs = []
    for row in P:
        k = int(np.argmax(np.abs(row)))
        target = row[k] * S[k]
        interference = row @ S - target
        sirs.append(10 * np.log10(np.sum(target**2) / np.sum(interference**2)))
    return float(min(sirs))


def _shared_envelope(seed: int, T: int = 20000, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Laplacian sources under one common log-normal envelope (speakers in one loud room tone):
    uncorrelated, symmetric, so the true unmixing is a stationary point of the likelihood, but
    their variances move together, which breaks FastICA's Newton approximation."""
    rng = np.random.default_rng(seed)
    knots = rng.standard_normal(T // 400)
    env = np.exp(2.0 * np.interp(np.arange(T), np.linspace(0, T, T // 400), knots))
    S = env * rng.laplace(size=(n, T))
    A = random_mixing(n, n, rng)
    return A @ S, A


def test_fastica_stalls_where_picard_converges() -> None:
    X, A = _shared_envelope(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = fastica(X, seed=1)
        strict = fastica(X, seed=1, tol=1e-6, max_iter=50)
    # FastICA's fixed point crawls: at its default tol its step is already below tol after one
    # iteration, far from the sources (measured Amari 0.40; the stall is the failure, whichever
    # way the stopping rule reports it), and at tol=1e-6 it needs ~100 iterations (measured 101).
    assert amari_index(default.model.unmixing @ A) > 0.2 or not default.converged
    assert not strict.converged
    ortho = picard(X, ortho=True, seed=1)
    free = picard(X, seed=1)
    # Picard-O reaches FastICA's own (orthogonal) solution in 36 iterations (Amari 0.047);
    # unconstrained Picard the likelihood's optimum, twice as good (0.024).
    assert ortho.converged and ortho.n_iter < 100
    assert amari_index(ortho.unmixing @ A) < 0.07
    assert free.converged and free.final_change < 1e-7
    assert amari_index(free.unmixing @ A) < 0.04


def test_short_clips_gain_over_fastica() -> None:
    # The issue's case: 3.5 s of three LibriSpeech readers; measured BSS Eval v3 min SIR FastICA
    # 33.3 / 28.4 dB, non-orthogonal Picard 37.4 / 30.2 dB at 0 / 7 s, python-picard's to 0.01 dB
    # (benchmarks/bench_ica_methods.py compares the two side by side); an orthogonal or broken
    # optimiser falls short of +1.5 dB.
    for offset in (0.0, 7.0):
        S = _libri(offset, 3.5)
        X = ISSUE_MIXING @ S
        result = picard(X, ortho=False)
        # Reaches python-picard's tolerance: float32 rounding must stay below the 1e-7 gradient.
        assert result.converged and result.diagnostics["line_search_failures"] == 0
        ours = _min_sir_instantaneous(result.unmixing @ ISSUE_MIXING, S)
        ica = _min_sir_instantaneous(fastica(X).model.unmixing @ ISSUE_MIXING, S)
        assert ours >= ica + 1.5, (offset, ours, ica)


def test_auto_mode_is_never_worse_than_fastica_on_the_long_clip() -> None:
    S = _libri(0.0, 13.9)
    X = ISSUE_MIXING @ S
    result = picard(X, ortho="auto", sample_rate=16000)
    assert result.diagnostics["ortho"] is True  # 13.9 s >= 8 s
    ours = _min_sir_instantaneous(result.unmixing @ ISSUE_MIXING, S)
    ica = _min_sir_instantaneous(fastica(X).model.unmixing @ ISSUE_MIXING, S)
    assert ours >= ica - 0.5, (ours, ica)  # measured 45.8 vs 45.8 (free mode: 44.7)
    assert choose_ortho(56000, 16000) is False and choose_ortho(128000, 16000) is True


def test_orthogonal_mode_is_fastica_fixed_point() -> None:
    S = _libri(3.5, 3.5)
    X = ISSUE_MIXING @ S
    result = picard(X, ortho=True)
    # Whitened-domain unmixing orthogonal: the sources are exactly uncorrelated (as FastICA's).
    assert np.allclose(np.cov(result.sources, bias=True), np.eye(3), atol=1e-6)
    fixed_point = fastica(X, tol=1e-8).model.unmixing
    assert (
        abs(
            _min_sir_instantaneous(result.unmixing @ ISSUE_MIXING, S)
            - _min_sir_instantaneous(fixed_point @ ISSUE_MIXING, S)
        )
        < 0.1
    )
    assert np.allclose(result.unmixing @ result.mixing, np.eye(3), atol=1e-8)


def test_extended_separates_sub_gaussian_sources() -> None:
    rng = np.random.default_rng(0)
    T = 16000
    t = np.arange(T) / 16000
    S = np.stack(
        [
            rng.laplace(size=T),
            np.sin(2 * np.pi * 223.0 * t),  # sub-Gaussian (kurtosis -1.5)
            rng.uniform(-1, 1, T),  # sub-Gaussian (-1.2)
        ]
    )
    A = random_mixing(3, 3, rng)
    ext = picard(A @ S)
    assert [f["density"] for f in ext.facts].count("sub") == 2
    assert amari_index(ext.unmixing @ A) < 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = picard(A @ S, extended=False, max_iter=100)
    # A super-Gaussian density cannot hold sub-Gaussian sources apart (measured 0.3-0.6).
    assert amari_index(plain.unmixing @ A) > 0.1


def test_result_shapes_and_progress() -> None:
    rng = np.random.default_rng(1)
    S = rng.laplace(size=(3, 5000))
    A = random_mixing(4, 3, rng)
    X = A @ S + 1e-4 * rng.standard_normal((4, 5000)) + 0.5
    seen: list[float] = []
    result = picard(X, n_sources=3, callback=lambda info: seen.append(info.change))
    assert result.unmixing.shape == (3, 4) and result.mixing.shape == (4, 3)
    assert result.sources.shape == (3, 5000)
    assert np.allclose(result.sources.std(axis=1), 1.0)
    assert np.allclose(result.unmixing @ result.mixing, np.eye(3), atol=1e-8)
    assert len(seen) == result.n_iter == len(result.objective)
    assert result.objective[-1] <= result.objective[0]
    assert amari_index(result.unmixing @ A) < 0.05


def test_restarts_keep_the_most_non_gaussian() -> None:
    rng = np.random.default_rng(2)
    S = rng.laplace(size=(3, 4000))
    A = random_mixing(3, 3, rng)
    report = best_of_restarts(picard, A @ S, restarts=3, seed=5, ortho=True)
    assert report.seeds == (5, 6, 7)
    assert report.negentropy[report.best_index] == max(report.negentropy)
    assert report.best.sources is not None
    assert negentropy(report.best.sources) == pytest.approx(max(report.negentropy))
    assert 0.0 <= report.spread < 1e-6  # every start finds the same sources here
    with pytest.raises(ParameterError, match="--restarts 0 is invalid"):
        best_of_restarts(picard, A @ S, restarts=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_iter": 0}, "--max-iter 0 is invalid"),
        ({"tol": -1.0}, "--tol -1.0 is invalid"),
        ({"seed": -3}, "--seed -3 is invalid"),
        ({"n_sources": 5}, "-n/--sources 5 is more than the 3 channel"),
        ({"n_sources": "1.5"}, "-n/--sources '1.5' is invalid"),
        ({"n_sources": "many"}, "-n/--sources 'many' is invalid"),
        ({"n_sources": 0}, "-n/--sources 0 is invalid"),
        ({"ortho": "maybe"}, "--ortho 'maybe' is invalid"),
        ({"ortho": "auto"}, "--ortho auto needs the sample rate"),
    ],
)
def test_bad_options_are_refused_in_cli_terms(options: dict[str, object], message: str) -> None:
    X = np.random.default_rng(0).laplace(size=(3, 1000))
    with pytest.raises(ParameterError, match=message):
        picard(X, **options)  # type: ignore[arg-type]
