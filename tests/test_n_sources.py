"""How many sources: counts, explained-variance fractions (MNE's convention) and the auto rule."""

from __future__ import annotations

import numpy as np
import pytest

from demix.errors import ParameterError
from demix.methods.n_sources import count_sources, parse_sources, whiten_sources
from demix.methods.picard import picard
from demix.metrics import amari_index
from demix.mixing import random_mixing


def _noisy(n_mics: int, n_sources: int, snr_db: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    S = rng.laplace(size=(n_sources, 20000))
    A = random_mixing(n_mics, n_sources, rng)
    X = A @ S
    if snr_db is not None:  # white noise snr_db below each channel's power, as `demix mix --snr`
        power = np.mean(X**2, axis=1, keepdims=True)
        X = X + np.sqrt(power * 10 ** (-snr_db / 10)) * rng.standard_normal(X.shape)
    return X, A


@pytest.mark.parametrize("seed", range(5))
def test_auto_finds_three_sources_in_a_noisy_four_mic_mixture(seed: int) -> None:
    X, _ = _noisy(4, 3, 30.0, seed)
    white = whiten_sources(X, None)
    assert white.rank == 4  # the noise makes the covariance full rank
    assert count_sources(white.eigenvalues, "auto", rank=white.rank) == 3
    assert count_sources(white.eigenvalues, "auto") == 3


@pytest.mark.parametrize("seed", range(5))
def test_auto_keeps_every_source_of_a_clean_or_mildly_noisy_mixture(seed: int) -> None:
    for snr in (None, 40.0):
        X, _ = _noisy(4, 4, snr, seed)
        assert count_sources(whiten_sources(X, None).eigenvalues, "auto") == 4


def test_picard_with_auto_separates_the_three() -> None:
    X, A = _noisy(4, 3, 30.0, 0)
    result = picard(X, n_sources="auto")
    assert result.unmixing.shape == (3, 4)
    assert amari_index(result.unmixing @ A) < 0.05


def test_fraction_follows_mne() -> None:
    eigenvalues = np.array([1.0, 4.0, 2.0, 3.0])  # any order; cumulative 0.4, 0.7, 0.9, 1.0
    assert count_sources(eigenvalues, 0.3) == 1
    assert count_sources(eigenvalues, 0.5) == 2
    assert count_sources(eigenvalues, 0.7) == 3  # MNE: components up to the one that exceeds it
    assert count_sources(eigenvalues, 0.95) == 4
    assert count_sources(eigenvalues, "0.999") == 4
    assert count_sources(eigenvalues, 2) == 2
    assert count_sources(eigenvalues, None) == 4


def test_rank_deficient_request_is_refused_with_the_numbers() -> None:
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(2, 5000))
    X = np.vstack([S, S[0] + S[1]])  # three channels, rank 2
    expected = r"-n/--sources 3 is more than the rank 2 .*eigenvalues 0\.0, -[\d.]+, -1\d\d\.\d dB"
    with pytest.raises(ParameterError, match=expected):
        whiten_sources(X, 3)
    assert whiten_sources(X, "auto").whitened.shape[0] == 2
    assert whiten_sources(X, 0.999).whitened.shape[0] == 2


@pytest.mark.parametrize(
    ("text", "value"), [("auto", "auto"), ("AUTO", "auto"), ("3", 3), ("0.999", 0.999), (" 0.5 ", 0.5)]
)
def test_parse_sources(text: str, value: object) -> None:
    assert parse_sources(text) == value


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1.5", "a fraction of explained variance must lie in"),
        ("three", "expected a count"),
        (1.0, "must lie in"),
        (0, "-n/--sources 0 is invalid"),
        (5, "-n/--sources 5 is more than the 4 channel"),
        (True, "-n/--sources True is invalid"),
    ],
)
def test_bad_specs_are_refused(spec: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        count_sources(np.array([4.0, 3.0, 2.0, 1.0]), spec)  # type: ignore[arg-type]
