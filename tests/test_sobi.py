"""Second-order separation: AMUSE, SOBI, least-squares decorrelation and their lagged covariances.

Separation is only defined up to order and scale, so quality is asserted with the Amari index of
``P = W A`` (0 for a scaled permutation) and with BSS Eval SIR on real speech.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter

from demix.errors import ConvergenceWarning, ParameterError
from demix.methods.fastica import fastica
from demix.methods.lagged import LagMethod, lagged_covariances, off_diagonality, parse_lags
from demix.methods.sobi import amuse, lsq, sobi
from demix.metrics import amari_index, bss_eval_sources
from demix.types import IterInfo, Separation
from tests.conftest import shared


def _ar(rng: np.random.Generator, n_samples: int, a: list[float]) -> np.ndarray:
    """Unit-variance Gaussian AR process ``s(t) = sum_k a_k s(t-k) + e(t)`` (burn-in dropped)."""
    s = lfilter([1.0], [1.0, *(-np.asarray(a))], rng.standard_normal(n_samples + 500))[500:]
    return s / s.std()


def _ar2(rng: np.random.Generator, n_samples: int, radius: float, freq: float) -> np.ndarray:
    """AR(2) with poles ``radius * exp(±i freq)``: a spectral peak at ``freq`` rad/sample."""
    return _ar(rng, n_samples, [2 * radius * np.cos(freq), -(radius**2)])


def _well_conditioned(rng: np.random.Generator, n: int, cond: float = 4.0) -> np.ndarray:
    """Random mixing ``U diag(1..cond) V^T``: condition number exactly ``cond``."""
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return U @ np.diag(np.linspace(1.0, cond, n)) @ V.T


def _centred(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=1, keepdims=True)


# --- separation quality ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sobi_separates_gaussian_ar_sources_that_fastica_cannot(seed: int) -> None:
    rng = np.random.default_rng(seed)
    S = np.stack([_ar2(rng, 10_000, 0.9, f) for f in (0.3, 1.2, 2.2)])
    A = _well_conditioned(rng, 3)
    X = A @ S

    result = sobi(X)
    # Second-order statistics identify sources with distinct spectra whatever their
    # distribution; the estimation error at 10^4 samples is ~0.003 here, 0.05 leaves margin.
    assert amari_index(result.model.unmixing @ A) <= 0.05
    assert result.converged and 1 <= result.n_iter < 20
    assert result.diagnostics["off_diagonality_after"] < 0.01 < result.diagnostics["off_diagonality_before"]

    # Gaussian sources are invisible to ICA: every rotation of the whitened mixture is equally
    # Gaussian, so FastICA stops at an arbitrary rotation (Amari ~0.3-0.5 for 3 sources).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ica = fastica(X, seed=seed)
    assert amari_index(ica.model.unmixing @ A) > max(0.1, 10 * amari_index(result.model.unmixing @ A))


@pytest.mark.parametrize("method", ["sobi", "amuse", "lsq"])
def test_result_follows_the_separation_contract(method: str) -> None:
    rng = np.random.default_rng(5)
    S = np.stack([_ar2(rng, 4000, 0.9, f) for f in (0.4, 1.9)])
    X = _well_conditioned(rng, 2) @ S + 3.0  # an offset, to check the mean is handled
    methods: dict[str, Callable[..., Separation]] = {"sobi": sobi, "amuse": amuse, "lsq": lsq}
    result = methods[method](X)
    assert result.sources.shape == (2, 4000)
    assert result.model is not None
    np.testing.assert_allclose(result.model.unmixing @ _centred(X), result.sources, atol=1e-9)
    np.testing.assert_allclose(result.sources.std(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(result.model.unmixing @ result.model.mixing, np.eye(2), atol=1e-9)
    diagnostics = result.diagnostics
    assert diagnostics["lags"] == ([1] if method == "amuse" else list(range(1, 101)))
    assert 0.0 <= diagnostics["off_diagonality_after"] < diagnostics["off_diagonality_before"] <= 1.0


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, np.ndarray]:
    """Male and female LibriSpeech, 5 s from 1 s in, mixed instantaneously 2 x 2."""
    data = "librosa_data/"
    male, _ = sf.read(shared(data + "libri1_5703-47212-0000_male_16k.wav"))
    female, _ = sf.read(shared(data + "libri3_198-209-0000_female_16k.wav"))
    S = np.stack([male[16_000:96_000], female[16_000:96_000]])
    return S, np.array([[1.0, 0.6], [0.5, 1.0]]) @ S


@pytest.mark.parametrize("method", [sobi, amuse, lsq], ids=["sobi", "amuse", "lsq"])
def test_speech_is_separated_with_high_sir(
    method: Callable[..., Separation], speech: tuple[np.ndarray, np.ndarray]
) -> None:
    S, X = speech
    scores = bss_eval_sources(S, method(X).sources)
    # An instantaneous mixture of two voices with different spectra: every method reaches
    # 40-60 dB here; 20 dB is what "clearly separated" means for speech.
    assert scores.sir.min() >= 20.0


def test_amuse_fails_at_a_lag_where_autocorrelations_are_equal() -> None:
    """AR(1) sources with coefficients +a and -a have rho(tau) = (±a)^tau: opposite at lag 1,
    *equal* at lag 2 (a^2). AMUSE diagonalises one C_tau = U diag(rho(tau)) U^T, whose
    eigenvectors are arbitrary in the plane of equal eigenvalues: lag 1 separates, lag 2 cannot.
    """
    a, lag1, lag2 = 0.5, [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        S = np.stack([_ar(rng, 4000, [a]), _ar(rng, 4000, [-a])])
        A = _well_conditioned(rng, 2)
        good, bad = amuse(A @ S, lag=1), amuse(A @ S, lag=2)
        assert good.diagnostics["eigenvalue_gap"] == pytest.approx(2 * a, abs=0.1)
        assert bad.diagnostics["eigenvalue_gap"] < 0.1  # 0 in theory; sampling noise
        lag1.append(amari_index(good.model.unmixing @ A))
        lag2.append(amari_index(bad.model.unmixing @ A))
    assert max(lag1) <= 0.05
    # Only the sampling noise picks the eigenvectors at lag 2. It is not isotropic (the two
    # sample autocorrelations fluctuate more than the cross-correlation), so some draws land near
    # the true axes by luck; on average the index is ~0.2 against ~0.01 at lag 1.
    assert np.mean(lag2) > 0.1 > 10 * np.mean(lag1)


def test_identical_spectra_cannot_be_separated_by_any_lag() -> None:
    """Two Gaussian sources with the same spectrum: the mixture's distribution is invariant
    under rotating the sources, so no statistic picks the axes; the recovered rotation is
    uniform, and the expected 2 x 2 Amari index of a uniform rotation is (4/pi) ln sqrt 2 = 0.44.
    """
    amuse_index, sobi_index = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        S = np.stack([_ar(rng, 4000, [0.7]), _ar(rng, 4000, [0.7])])
        A = _well_conditioned(rng, 2)
        amuse_index.append(amari_index(amuse(A @ S).model.unmixing @ A))
        sobi_index.append(amari_index(sobi(A @ S, lags="1-20").model.unmixing @ A))
    assert np.mean(amuse_index) > 0.2
    assert np.mean(sobi_index) > 0.2


# --- lagged covariances ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "fft", "matmul"])
def test_lagged_covariances_match_a_direct_computation(method: LagMethod) -> None:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((3, 20_000)) + np.array([[0.0], [1.0], [-2.0]])
    lags = np.array([1, 2, 7, 100, 8191, 8192, 8193, 19_999])
    C = lagged_covariances(Z, lags, method=method)
    T = Z.shape[1]
    scale = float(np.max(np.abs(Z @ Z.T)))
    for k, lag in enumerate(lags):
        direct = np.dot(Z[:, lag:], Z[:, : T - lag].T)
        # The FFT's round-off is ~eps * ||z_i|| ||z_j|| on each *sum*, whatever the lag, so it is
        # bounded relative to the lag-0 energy before dividing by the T - lag products.
        np.testing.assert_allclose(C[k] * (T - lag), (direct + direct.T) / 2, rtol=0, atol=1e-13 * scale)


def test_off_diagonality_is_the_off_diagonal_share_of_the_energy() -> None:
    assert off_diagonality(np.stack([np.diag([1.0, 2.0]), np.diag([3.0, -1.0])])) == 0.0
    assert off_diagonality(np.array([[[1.0, 1.0], [1.0, 1.0]]])) == pytest.approx(0.5)
    assert off_diagonality(np.zeros((2, 3, 3))) == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("1,2,5,10", [1, 2, 5, 10]),
        ("1-3,20,50", [1, 2, 3, 20, 50]),
        (" 10 , 2-3 ,2 ", [2, 3, 10]),
        ("7-7", [7]),
    ],
)
def test_parse_lags(text: str, expected: list[int]) -> None:
    lags = parse_lags(text)
    assert lags.dtype == np.int64
    assert lags.tolist() == expected


@pytest.mark.parametrize("text", ["", "  ", "0", "0-3", "-3", "1-", "a", "5-1", "1,,2", "1.5", "1;2"])
def test_parse_lags_rejects_malformed_values(text: str) -> None:
    with pytest.raises(ParameterError, match="--lags") as info:
        parse_lags(text)
    assert repr(text.strip()) in str(info.value) or repr(text) in str(info.value)
    assert "expected" in str(info.value)


def test_parse_lags_rejects_lags_beyond_the_signal() -> None:
    assert parse_lags("1-99", n_samples=100)[-1] == 99
    with pytest.raises(ParameterError, match=r"--lags: lag 100 in '1-100'.*100 samples"):
        parse_lags("1-100", n_samples=100)
    with pytest.raises(ParameterError, match="--lags"):
        sobi(np.random.default_rng(0).standard_normal((2, 50)), lags=[1, 50])


# --- rank, shapes and parameters ---------------------------------------------------------------


def _three_channel_rank_two() -> np.ndarray:
    rng = np.random.default_rng(1)
    S = np.stack([_ar2(rng, 3000, 0.9, f) for f in (0.4, 1.9)])
    return np.vstack([S[0] + S[1], S[0] - S[1], 2 * (S[0] + S[1])])  # third row duplicates the first


def test_rank_deficient_mixture_is_reduced_with_a_warning() -> None:
    X = _three_channel_rank_two()
    with pytest.warns(UserWarning, match="rank 2 for 3 channels"):
        result = sobi(X)
    assert result.sources.shape == (2, 3000)
    assert result.model is not None and result.model.mixing.shape == (3, 2)
    assert result.diagnostics["rank"] == 2


def test_silent_channel_is_dropped_with_a_warning() -> None:
    X = np.vstack([_three_channel_rank_two()[:2], np.zeros(3000)])
    with pytest.warns(UserWarning, match="rank 2"):
        assert amuse(X).sources.shape == (2, 3000)


def test_explicit_sources_above_the_rank_is_an_error() -> None:
    with pytest.raises(ParameterError, match=r"--sources 3 is more than the rank 2"):
        sobi(_three_channel_rank_two(), n_sources=3)


def test_more_sources_than_channels_suggests_nmf() -> None:
    X = np.random.default_rng(0).standard_normal((2, 1000))
    for method in (sobi, amuse):
        with pytest.raises(ParameterError, match="demix nmf"):
            method(X, n_sources=3)


def test_all_silent_or_constant_is_an_error() -> None:
    for X in (np.zeros((2, 1000)), np.full((2, 1000), 0.25)):
        with pytest.raises(ParameterError, match="silent"):
            sobi(X)


def test_lsq_is_two_by_two_only() -> None:
    X = np.random.default_rng(0).standard_normal((3, 1000))
    with pytest.raises(ParameterError, match="2 sources from 2 channels"):
        lsq(X)
    with pytest.raises(ParameterError, match="2 sources from 2 channels"):
        lsq(X[:2], n_sources=1)
    with pytest.raises(ParameterError, match="rank 1"):
        lsq(np.vstack([X[0], 2 * X[0]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_iter": 0}, "--max-iter"),
        ({"tol": -1.0}, "--tol"),
        ({"tol": float("nan")}, "--tol"),
        ({"n_sources": 0}, "--sources"),
        ({"lags": []}, "--lags"),
        ({"lags": [0, 1]}, "--lags"),
        ({"lags": [1.5]}, "--lags"),
    ],
)
def test_bad_sobi_parameters(kwargs: dict, match: str) -> None:
    X = np.random.default_rng(0).standard_normal((2, 1000))
    with pytest.raises(ParameterError, match=match):
        sobi(X, **kwargs)


@pytest.mark.parametrize("lag", [0, -1, True, 1.0, 1000])
def test_bad_amuse_lag(lag: object) -> None:
    X = np.random.default_rng(0).standard_normal((2, 1000))
    with pytest.raises(ParameterError, match="--lag"):
        amuse(X, lag=lag)  # type: ignore[arg-type]


def test_bad_mixture_shapes_are_parameter_errors() -> None:
    for X in (np.zeros(100), np.zeros((2, 1)), np.full((2, 100), np.nan), np.ones((2, 10), complex)):
        with pytest.raises(ParameterError, match="mixture"):
            sobi(X)


# --- convergence and progress ------------------------------------------------------------------


def test_sobi_warns_and_reports_when_out_of_sweeps() -> None:
    rng = np.random.default_rng(2)
    S = np.stack([_ar2(rng, 3000, 0.9, f) for f in (0.3, 1.2, 2.2)])
    seen: list[IterInfo] = []
    with pytest.warns(ConvergenceWarning, match=r"max_iter=1 sweeps .* raise --max-iter"):
        result = sobi(_well_conditioned(rng, 3) @ S, max_iter=1, callback=seen.append)
    assert not result.converged and result.n_iter == 1
    assert result.final_change > 1e-8
    assert seen == [IterInfo(iteration=1, max_iter=1, change=result.final_change)]


def test_sobi_reports_every_sweep_until_convergence() -> None:
    rng = np.random.default_rng(3)
    S = np.stack([_ar2(rng, 3000, 0.9, f) for f in (0.3, 1.2, 2.2)])
    seen: list[IterInfo] = []
    result = sobi(_well_conditioned(rng, 3) @ S, callback=seen.append)
    assert [info.iteration for info in seen] == list(range(1, result.n_iter + 1))
    assert seen[-1].change == result.final_change <= 1e-8


def test_lsq_warns_when_out_of_evaluations() -> None:
    rng = np.random.default_rng(4)
    S = np.stack([_ar2(rng, 3000, 0.9, f) for f in (0.4, 1.9)])
    with pytest.warns(ConvergenceWarning, match="lsq"):
        result = lsq(_well_conditioned(rng, 2) @ S, max_iter=2, n_starts=1)
    assert not result.converged


def test_lsq_reports_each_start_and_is_reproducible() -> None:
    rng = np.random.default_rng(6)
    X = _well_conditioned(rng, 2) @ np.stack([_ar2(rng, 3000, 0.9, f) for f in (0.4, 1.9)])
    seen: list[IterInfo] = []
    first = lsq(X, seed=3, n_starts=4, callback=seen.append)
    assert [info.iteration for info in seen] == [1, 2, 3, 4]
    assert seen[-1].change == first.final_change == min(first.diagnostics["start_costs"])
    np.testing.assert_array_equal(lsq(X, seed=3, n_starts=4).model.unmixing, first.model.unmixing)
    with pytest.raises(ParameterError, match="--seed"):
        lsq(X, seed=-1)
