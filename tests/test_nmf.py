"""Tests of the NMF core: β-NMF updates, component grouping, and the separation entry points.

Separation quality is asserted with BSS Eval SDR (demix.metrics, checked against mir_eval), invariant to the
filtering/scale ambiguities a masking method leaves; thresholds are explained where they are set.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

from demix.errors import ConvergenceWarning, ParameterError
from demix.methods.nmf import beta_divergence, beta_nmf, nmf_init
from demix.methods.nmf_grouping import group_components
from demix.methods.nmf_separate import learn_bases, nmf_separate, nmf_separate_supervised
from demix.types import IterInfo, Separation
from tests.conftest import SAMPLE_AUDIO, benchmark_songs


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """SDR of estimate i against reference i: BSS Eval v3 as ``demix eval`` computes it."""
    from demix.metrics import bss_eval_pairwise

    return np.diagonal(bss_eval_pairwise(reference, estimate).sdr)


def _random_v(seed: int = 0, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    V = rng.gamma(0.5, 1.0, size=shape) * rng.uniform(0.1, 3.0, size=(shape[0], 1))
    V[rng.random(shape) < 0.05] = 0.0  # exact zeros: the floor must keep IS finite
    return V


@pytest.fixture(scope="module")
def song():
    """6 s at 16 kHz: melody + bass over a rock drum pattern at equal RMS."""
    return benchmark_songs().make_song(6.0, 16000, seed=0)


# --------------------------------------------------------------------------- beta_nmf
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_objective_never_increases(beta: float, sparsity: float) -> None:
    V = _random_v()
    res = beta_nmf(V, 6, beta=beta, max_iter=60, tol=0.0, sparsity=sparsity, seed=1)
    obj = np.asarray(res.objectives)
    assert len(obj) == res.n_iter + 1 == 61
    assert np.all(np.isfinite(obj)) and np.all(np.isfinite(res.divergences))
    # MM updates (Févotte & Idier 2011) are monotone; the tolerance only absorbs rounding of
    # the sums (float32 for KL: ~1e-7 relative).
    assert np.all(np.diff(obj) <= 1e-6 * obj[:-1]), np.max(np.diff(obj) / obj[:-1])
    assert obj[-1] < 0.95 * obj[0]
    for M in (res.W, res.H):
        assert np.all(np.isfinite(M)) and np.all(M > 0)  # floored: no zero-locking
    # The reported divergence is the one of the returned factors (V floored at 1e-9 mean).
    ref = beta_divergence(np.maximum(V, 1e-9 * V.mean()), res.W @ res.H, beta)
    assert res.divergences[-1] == pytest.approx(ref, rel=1e-4)
    if sparsity == 0:
        assert res.objectives == res.divergences


def test_kl_matches_scikit_learn_from_the_same_start() -> None:
    from sklearn.decomposition import NMF

    V = _random_v(3)
    W0, H0 = nmf_init(V, 5, seed=4)
    ours = beta_nmf(V, 5, beta=1.0, max_iter=50, tol=0.0, seed=4)
    model = NMF(5, solver="mu", beta_loss="kullback-leibler", init="custom", max_iter=50, tol=0)
    with warnings.catch_warnings():  # sklearn updates its W then its H: on V.T, our H then W
        warnings.simplefilter("ignore")
        Ht = model.fit_transform(V.T, W=np.ascontiguousarray(H0.T), H=np.ascontiguousarray(W0.T))
    theirs = beta_divergence(V, (Ht @ model.components_).T, 1.0)
    # Same multiplicative updates from the same point: same divergence up to float32 rounding.
    assert ours.divergences[-1] == pytest.approx(theirs, rel=1e-3)


def test_convergence_record_and_callback() -> None:
    infos: list[IterInfo] = []
    res = beta_nmf(_random_v(), 4, max_iter=500, tol=1e-4, callback=infos.append)
    assert res.converged and 1 < res.n_iter < 500
    assert abs(res.final_change) < 1e-3
    assert [i.iteration for i in infos] == list(range(1, res.n_iter + 1))
    assert all(i.max_iter == 500 for i in infos)


def test_warns_when_max_iter_is_reached() -> None:
    with pytest.warns(ConvergenceWarning, match="after 3 iterations.*--max-iter"):
        res = beta_nmf(_random_v(), 4, max_iter=3, tol=1e-12)
    assert not res.converged and res.n_iter == 3


def test_deterministic_for_a_seed_and_scale_equivariant() -> None:
    V = _random_v()
    a = beta_nmf(V, 4, max_iter=30, tol=0, seed=7, init="nndsvd")
    b = beta_nmf(V, 4, max_iter=30, tol=0, seed=7, init="nndsvd")
    c = beta_nmf(1e-6 * V, 4, max_iter=30, tol=0, seed=7, init="nndsvd")
    np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_allclose(c.W @ c.H, 1e-6 * (a.W @ a.H), rtol=1e-4)


def test_sparsity_makes_activations_sparser_with_normalised_bases() -> None:
    V = _random_v(1)
    dense = beta_nmf(V, 8, max_iter=200, tol=0)
    sparse = beta_nmf(V, 8, max_iter=200, tol=0, sparsity=2.0)
    np.testing.assert_allclose(np.linalg.norm(sparse.W, axis=0), 1.0, rtol=1e-5)

    def hoyer(H: np.ndarray) -> float:  # 0 for a flat vector, 1 for a single non-zero
        n = H.size
        return float((np.sqrt(n) - H.sum() / np.linalg.norm(H)) / (np.sqrt(n) - 1))

    assert hoyer(sparse.H) > hoyer(dense.H) + 0.05


def test_fixed_bases_stay_fixed() -> None:
    V = _random_v()
    W_fixed = np.abs(np.random.default_rng(2).standard_normal((V.shape[0], 3)))
    res = beta_nmf(V, 5, W_fixed=W_fixed, n_free=2, max_iter=40, tol=0)
    np.testing.assert_array_equal(res.W[:, :3], W_fixed)
    np.testing.assert_allclose(np.linalg.norm(res.W[:, 3:], axis=0), 1.0, rtol=1e-6)
    assert np.all(np.diff(res.objectives) <= 1e-6 * np.asarray(res.objectives[:-1]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": "kl"}, "beta"),
        ({"init": "svd"}, "init"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"n_free": 2}, "n_free"),
        ({"W_fixed": np.ones((5, 2)), "n_free": 1, "k": 3}, "rows"),
        ({"W_fixed": np.ones((60, 2)), "n_free": 1, "k": 4}, "k=4"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    args = {"k": 3, **kwargs}
    with pytest.raises(ParameterError, match=match):
        beta_nmf(_random_v(), **args)


@pytest.mark.parametrize(
    ("V", "match"),
    [(-_random_v(), "non-negative"), (np.zeros((4, 5)), "all zero"), (np.ones(5), "2-D")],
)
def test_bad_data(V: np.ndarray, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        beta_nmf(V, 2)


# --------------------------------------------------------------------------- grouping
def test_timbre_and_none_groupings_partition_the_components() -> None:
    res = beta_nmf(_random_v(5, (257, 60)), 9, max_iter=30, tol=0)
    timbre = group_components(res.W, res.H, 3, "timbre", sample_rate=16000, n_fft=512, hop=128, seed=0)
    assert len(timbre.groups) == 3 and all(timbre.groups)  # every cluster non-empty
    assert sorted(i for g in timbre.groups for i in g) == list(range(9))
    assert timbre.names == ("source_1", "source_2", "source_3")
    none = group_components(res.W, res.H, 9, "none", sample_rate=16000, n_fft=512, hop=128)
    assert none.groups == [[i] for i in range(9)] and none.names[0] == "component_1"
    with pytest.raises(ParameterError, match="-n/--sources must equal"):
        group_components(res.W, res.H, 2, "none", sample_rate=16000, n_fft=512, hop=128)


# --------------------------------------------------------------------------- separation
@pytest.mark.parametrize("n_channels", [1, 2])
def test_sources_sum_back_to_the_mixture(song, n_channels: int) -> None:
    x = song.mixture[None, :32000]
    if n_channels == 2:
        x = np.vstack([x, 0.5 * x + 0.01 * np.sin(np.arange(x.shape[1]) / 7.0)])
    sep = nmf_separate(x, 16000, n_components=6, n_fft=512, hop=128, max_iter=20, tol=0)
    expected = (2, x.shape[1]) if n_channels == 1 else (2, 2, x.shape[1])
    assert isinstance(sep, Separation) and sep.sources.shape == expected
    assert sep.model is None and sep.layout == ("mono" if n_channels == 1 else "images")
    assert len(sep.facts) == 2
    error = np.linalg.norm(sep.sources.sum(axis=0) - x.reshape(sep.sources.shape[1:]))
    assert 20 * np.log10(error / np.linalg.norm(x)) <= -80  # masks sum to one; iSTFT is linear
    json.dumps(sep.diagnostics)  # the manifest must be able to store it


def test_percussive_harmonic_separation(song) -> None:
    sep = nmf_separate(song.mixture[None], 16000, n_fft=1024, hop=256)
    assert sep.names == ("percussive", "harmonic")
    reference = np.stack([song.percussive, song.harmonic])
    sdr = _sdr(reference, sep.sources)
    # 6 dB: the stems are clearly separated (this song gives ~12.8 / 9.5 dB; librosa's HPSS
    # ~9.8 / 9.0 dB). The swapped assignment must be far worse: the names are right.
    assert np.all(sdr >= 6.0), sdr
    assert np.all(_sdr(reference, sep.sources[::-1]) < 0.0)
    groups = sep.facts
    assert all(f["percussiveness"] > 0.5 for f in groups[0]["features"])
    assert all(f["percussiveness"] <= 0.5 for f in groups[1]["features"])
    assert sep.diagnostics["divergence_last"] < sep.diagnostics["divergence_first"]


def test_supervised_separation_with_learnt_bases() -> None:
    instrument, sr = sf.read(SAMPLE_AUDIO / "instrument.wav")
    drums, _ = sf.read(SAMPLE_AUDIO / "drums.wav")
    half = instrument.size // 2  # learn on the first 3 s, separate a mix of the last 3 s
    kw = {"n_fft": 1024, "hop": 256}
    bases = {
        "instrument": learn_bases(instrument[None, :half], sr, n_components=8, **kw),
        "drums": learn_bases(drums[None, :half], sr, n_components=8, **kw),
    }
    assert bases["drums"].shape == (513, 8)
    np.testing.assert_allclose(np.linalg.norm(bases["drums"], axis=0), 1.0, rtol=1e-5)
    reference = np.stack([instrument[half:], drums[half:]])
    sep = nmf_separate_supervised(reference.sum(axis=0)[None], sr, bases=bases, **kw)
    assert sep.names == ("instrument", "drums")
    # 8 dB as asked; measured ~23 / 14 dB (the drums are 10 dB quieter than the instrument).
    assert np.all(_sdr(reference, sep.sources) >= 8.0)
    with_free = nmf_separate_supervised(
        reference.sum(axis=0)[None], sr, bases=bases, n_free=2, max_iter=20, tol=0, **kw
    )
    assert with_free.names == ("instrument", "drums", "residual")
    assert with_free.sources.shape == (3, half)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (
            np.ones((1, 4096)),
            {"n_components": 1},
            "-n/--sources 2 is invalid; expected 1 to -k/--components 1",
        ),
        (np.zeros((1, 4096)), {}, "silent"),
        (np.ones((1, 1000)), {}, "shorter than one frame"),
        (np.ones(4096), {}, "n_channels, n_samples"),
        (np.ones((1, 4096)), {"hop": 2000}, "hop"),
        (np.ones((1, 4096)), {"group": "loudness"}, "group"),
        (np.ones((1, 4096)), {"group": "percussive-harmonic", "n_sources": 3}, "exactly 2"),
        (np.full((1, 4096), np.nan), {}, "NaN"),
    ],
)
def test_separation_rejects_bad_input(x: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        nmf_separate(x, 16000, max_iter=2, **kwargs)


def test_supervised_rejects_bad_bases() -> None:
    x = np.random.default_rng(0).standard_normal((1, 4096))
    with pytest.raises(ParameterError, match="expected"):
        nmf_separate_supervised(x, 16000, bases={"a": np.ones((100, 2))})
    with pytest.raises(ParameterError, match="non-empty"):
        nmf_separate_supervised(x, 16000, bases={})
    with pytest.raises(ParameterError, match="reserved"):
        nmf_separate_supervised(x, 16000, bases={"residual": np.ones((1025, 2))}, n_free=1)
