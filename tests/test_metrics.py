"""Tests for demix.metrics: BSS Eval v3 against mir_eval, SI-SDR, Amari index, matching.

Thresholds: 0.01 dB is the tolerance of mir_eval's own regression tests against the MATLAB
BSS_EVAL outputs stored in the JSON files; our implementation differs from mir_eval only in how
the same linear systems are solved, so it actually agrees to ~1e-6 dB.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from demix.errors import ParameterError
from demix.metrics import (
    amari_index,
    bss_eval_framewise,
    bss_eval_pairwise,
    bss_eval_sources,
    match_sources,
    si_sdr,
)
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
MIR_EVAL_DIR = DATA / "mir_eval_separation"
CASES = ["01", "02", "03", "05", "06", "07", "08", "09"]
TOL_DB = 0.01

# mir_eval 0.8 deprecates its separation module; we call it on purpose as the reference.
pytestmark = pytest.mark.filterwarnings("ignore:mir_eval.separation:FutureWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Run BLAS on one thread: on a shared, busy machine OpenBLAS threads spin-wait for each
    other and a 1536 x 1536 Cholesky takes ten times longer; these sizes gain little from threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only a speed matter
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


needs_data = pytest.mark.skipif(not MIR_EVAL_DIR.is_dir(), reason=f"test data not found in {MIR_EVAL_DIR}")


def _load_mono(folder: Path) -> np.ndarray:
    """Stack ``folder/*.wav`` as mir_eval.io.load_wav(mono=True) does: int16 / 2**16, mean."""
    import soundfile as sf

    rows = []
    for path in sorted(folder.glob("*.wav")):
        data, _ = sf.read(path, dtype="int16", always_2d=True)
        rows.append((data / float(2**16)).mean(axis=1))
    stacked = np.array(rows)
    return stacked[0] if stacked.shape[0] == 1 else stacked  # case 09 is given as 1-D


def _case(case: str) -> tuple[np.ndarray, np.ndarray, dict]:
    ref = _load_mono(MIR_EVAL_DIR / f"ref{case}")
    est = _load_mono(MIR_EVAL_DIR / f"est{case}")
    expected = json.loads((MIR_EVAL_DIR / f"output{case}.json").read_text())
    return ref, est, expected


def _mir_eval():
    separation = pytest.importorskip("mir_eval.separation")
    return separation


def _sources(n_src: int, n: int, seed: int) -> np.ndarray:
    """Coloured noise sources (a correlated Gram matrix, unlike white noise)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_src, n))
    return scipy.signal.lfilter([1.0], [1.0, -0.8], white, axis=1)


def _estimates(ref: np.ndarray, seed: int) -> np.ndarray:
    """Filtered sources with some crosstalk and noise, in the same order."""
    rng = np.random.default_rng(seed + 1)
    n_src, n = ref.shape
    mix = np.eye(n_src) + 0.2 * rng.uniform(-1, 1, (n_src, n_src))
    est = scipy.signal.lfilter([1.0, 0.4, -0.2], [1.0], mix @ ref, axis=1)
    return est + 0.05 * rng.standard_normal((n_src, n))


# ------------------------------------------------------------------------------------------
# mir_eval regression data
# ------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("case", CASES)
def test_sources_match_expected_json(case: str) -> None:
    ref, est, expected = _case(case)
    exp = expected["Sources"]
    got = bss_eval_sources(ref, est)
    np.testing.assert_allclose(got.sdr, exp["Source to Distortion"], atol=TOL_DB, rtol=0)
    np.testing.assert_allclose(got.sir, exp["Source to Interference"], atol=TOL_DB, rtol=0)
    np.testing.assert_allclose(got.sar, exp["Source to Artifact"], atol=TOL_DB, rtol=0)
    np.testing.assert_array_equal(got.perm, exp["Source permutation"])


@needs_data
@pytest.mark.parametrize("case", CASES)
def test_framewise_matches_expected_json(case: str) -> None:
    ref, est, expected = _case(case)
    exp = expected["Framewise"]
    got = bss_eval_framewise(ref, est, window=exp["win"], hop=exp["hop"])
    np.testing.assert_allclose(got.sdr, exp["Source to Distortion"], atol=TOL_DB, rtol=0)
    np.testing.assert_allclose(got.sir, exp["Source to Interference"], atol=TOL_DB, rtol=0)
    np.testing.assert_allclose(got.sar, exp["Source to Artifact"], atol=TOL_DB, rtol=0)
    np.testing.assert_array_equal(got.perm, np.asarray(exp["Source permutation"]).astype(int))


@needs_data
@pytest.mark.parametrize("case", CASES)
def test_sources_match_mir_eval_run(case: str) -> None:
    """Against mir_eval itself. Its permutation search costs n! * n^2 projections, so for more
    than two sources mir_eval scores our permutation (compute_permutation=False on reordered
    estimates); the permutation itself is checked against mir_eval's in the JSON test."""
    separation = _mir_eval()
    ref, est, _ = _case(case)
    got = bss_eval_sources(ref, est)
    if np.ndim(ref) == 1 or ref.shape[0] <= 2:
        sdr, sir, sar, perm = separation.bss_eval_sources(ref, est)
        np.testing.assert_array_equal(got.perm, perm)
    else:
        sdr, sir, sar, _ = separation.bss_eval_sources(ref, est[got.perm], False)
    for ours, theirs in zip((got.sdr, got.sir, got.sar), (sdr, sir, sar), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=TOL_DB, rtol=0)


@needs_data
@pytest.mark.parametrize("case", ["07", "09"])
def test_framewise_matches_mir_eval_run(case: str) -> None:
    separation = _mir_eval()
    ref, est, expected = _case(case)
    win, hop = expected["Framewise"]["win"], expected["Framewise"]["hop"]
    got = bss_eval_framewise(ref, est, window=win, hop=hop)
    want = separation.bss_eval_sources_framewise(ref, est, window=win, hop=hop)
    for ours, theirs in zip(got[:3], want[:3], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=TOL_DB, rtol=0)


def test_longer_coloured_noise_matches_mir_eval() -> None:
    separation = _mir_eval()
    ref = _sources(2, 16000, seed=3)
    est = _estimates(ref, seed=3)[::-1]
    got = bss_eval_sources(ref, est)
    sdr, sir, sar, perm = separation.bss_eval_sources(ref, est)
    np.testing.assert_array_equal(got.perm, perm)
    for ours, theirs in zip((got.sdr, got.sir, got.sar), (sdr, sir, sar), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=TOL_DB, rtol=0)


@pytest.mark.skipif(not (DATA / "pyroomacoustics_samples").is_dir(), reason="no speech data")
def test_speech_mixture_matches_mir_eval() -> None:
    """Two real speakers (3.5 s, 16 kHz), imperfectly unmixed, swapped and filtered."""
    import soundfile as sf

    separation = _mir_eval()
    folder = DATA / "pyroomacoustics_samples"
    a, _ = sf.read(folder / "cmu_arctic_us_aew_a0003.wav")
    b, _ = sf.read(folder / "cmu_arctic_us_axb_a0006.wav")
    n = min(a.size, b.size)
    ref = np.stack([a[:n], b[:n]])
    A = np.array([[1.0, 0.6], [0.5, 1.0]])
    W = np.linalg.inv(A + np.array([[0.04, -0.03], [0.02, 0.05]]))
    est = (W @ A @ ref)[::-1]
    est[0] = scipy.signal.lfilter([1.0, 0.5, 0.2], [1.0], est[0])
    est += 1e-3 * np.random.default_rng(0).standard_normal(est.shape)
    got = bss_eval_sources(ref, est)
    sdr, sir, sar, perm = separation.bss_eval_sources(ref, est)
    np.testing.assert_array_equal(got.perm, perm)
    for ours, theirs in zip((got.sdr, got.sir, got.sar), (sdr, sir, sar), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=TOL_DB, rtol=0)


def test_singular_gram_falls_back_to_least_squares() -> None:
    """Two references that are scaled copies make the Gram matrix singular (Cholesky fails);
    the least-squares projection still matches mir_eval. SIR is round-off (no interference is
    possible) in both, so it is only checked to be very large."""
    separation = _mir_eval()
    ref = _sources(1, 3000, seed=12)
    ref = np.concatenate([ref, 2.0 * ref])
    est = np.stack([ref[0] + 0.1 * _sources(1, 3000, seed=13)[0], _sources(1, 3000, seed=14)[0]])
    got = bss_eval_pairwise(ref, est)
    sdr, _, sar, _ = separation.bss_eval_sources(ref, est, False)
    np.testing.assert_allclose(np.diag(got.sdr), sdr, atol=TOL_DB, rtol=0)
    np.testing.assert_allclose(np.diag(got.sar), sar, atol=TOL_DB, rtol=0)
    assert np.all(got.sir > 100)


# ------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------

scales = st.floats(min_value=1e-3, max_value=1e3) | st.floats(min_value=-1e3, max_value=-1e-3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=scales, n_src=st.integers(1, 3))
def test_si_sdr_invariant_to_estimate_scale(seed: int, scale: float, n_src: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((n_src, 500))
    est = ref + 0.5 * rng.standard_normal((n_src, 500))
    np.testing.assert_allclose(si_sdr(ref, scale * est), si_sdr(ref, est), rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 6))
def test_amari_index_zero_for_scaled_permutation(data: st.DataObject, n: int) -> None:
    perm = data.draw(st.permutations(range(n)))
    gains = data.draw(st.lists(scales, min_size=n, max_size=n))
    P = np.zeros((n, n))
    P[np.arange(n), perm] = gains
    assert amari_index(P) == 0.0


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(2, 6))
def test_amari_index_positive_otherwise(data: st.DataObject, n: int) -> None:
    perm = data.draw(st.permutations(range(n)))
    gains = data.draw(st.lists(scales, min_size=n, max_size=n))
    P = np.zeros((n, n))
    P[np.arange(n), perm] = gains
    row = data.draw(st.integers(0, n - 1))
    col = data.draw(st.sampled_from([c for c in range(n) if c != perm[row]]))
    P[row, col] = data.draw(scales)  # leakage of at least 1e-6 of the largest gain
    assert 0.0 < amari_index(P) <= 1.0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), data=st.data(), n_src=st.integers(2, 3))
def test_bss_eval_invariant_to_estimate_order(seed: int, data: st.DataObject, n_src: int) -> None:
    """Reordering estimates reorders the matching the same way and leaves the scores alone."""
    ref = _sources(n_src, 1500, seed)
    est = _estimates(ref, seed)
    order = np.array(data.draw(st.permutations(range(n_src))))
    base = bss_eval_sources(ref, est, filter_length=32)
    moved = bss_eval_sources(ref, est[order], filter_length=32)
    np.testing.assert_array_equal(order[moved.perm], base.perm)
    for a, b in zip(moved[:3], base[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


# ------------------------------------------------------------------------------------------
# shapes, silence, rectangular matching
# ------------------------------------------------------------------------------------------


def test_single_source_1d() -> None:
    ref = _sources(1, 4000, seed=1)[0]
    est = _estimates(ref[None], seed=1)[0]
    got = bss_eval_sources(ref, est, filter_length=64)
    assert got.sdr.shape == (1,) and got.perm.tolist() == [0]
    assert got.sir[0] == np.inf  # no other reference, no interference (as in mir_eval)
    assert np.isfinite(got.sdr[0]) and got.sdr[0] == pytest.approx(got.sar[0])


def test_silent_reference_gives_nan_and_warning() -> None:
    ref = _sources(2, 3000, seed=2)
    est = _estimates(ref, seed=2)
    ref[1] = 0.0
    with pytest.warns(UserWarning, match=r"silent.*references \[1\]"):
        got = bss_eval_sources(ref, est, filter_length=64)
    assert np.isnan(got.sdr[1]) and np.isnan(got.sir[1]) and np.isnan(got.sar[1])
    assert np.isfinite(got.sdr[0]) and got.perm[0] == 0
    assert sorted(got.perm.tolist()) == [0, 1]


def test_silent_estimate_gives_nan_and_warning() -> None:
    ref = _sources(2, 3000, seed=4)
    est = _estimates(ref, seed=4)
    est[0] = 0.0
    with pytest.warns(UserWarning, match=r"silent.*estimates \[0\]"):
        pairwise = bss_eval_pairwise(ref, est, filter_length=64)
    assert np.isnan(pairwise.sdr[0]).all() and np.isfinite(pairwise.sdr[1]).all()
    with pytest.warns(UserWarning):
        got = bss_eval_sources(ref, est, filter_length=64)
    assert got.perm.tolist() == [0, 1]  # the live estimate keeps its reference
    assert np.isnan(got.sdr[0]) and np.isfinite(got.sdr[1])


def test_everything_silent_does_not_crash() -> None:
    zeros = np.zeros((2, 1000))
    with pytest.warns(UserWarning):
        got = bss_eval_sources(zeros, zeros, filter_length=16)
    assert np.isnan(got.sdr).all()
    with pytest.warns(UserWarning):
        assert np.isnan(si_sdr(zeros[0], zeros[0]))


def test_more_estimates_than_references() -> None:
    ref = _sources(2, 3000, seed=5)
    est2 = _estimates(ref, seed=5)
    noise = np.random.default_rng(0).standard_normal(3000)
    est3 = np.stack([noise, est2[1], est2[0]])
    got = bss_eval_sources(ref, est3, filter_length=64)
    want = bss_eval_sources(ref, est2, filter_length=64)
    assert got.perm.tolist() == [2, 1]
    for a, b in zip(got[:3], want[:3], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_fewer_estimates_than_references() -> None:
    ref = _sources(2, 3000, seed=6)
    est = _estimates(ref, seed=6)[1:]  # only an estimate of reference 1
    got = bss_eval_sources(ref, est, filter_length=64)
    pairwise = bss_eval_pairwise(ref, est, filter_length=64)
    assert got.perm.tolist() == [-1, 0]
    assert np.isnan(got.sdr[0]) and got.sdr[1] == pairwise.sdr[0, 1]


def test_pairwise_shape_and_perfect_estimate() -> None:
    ref = _sources(3, 3000, seed=7)
    got = bss_eval_pairwise(ref, 2.0 * ref[:2], filter_length=32)
    assert got.sdr.shape == (2, 3)
    assert np.all(got.sdr[[0, 1], [0, 1]] > 100)  # round-off floor, finite
    assert np.all(np.isfinite(got.sdr))


def test_match_sources_nan_safe_and_rectangular() -> None:
    est_idx, ref_idx = match_sources(np.array([[np.nan, 1.0], [2.0, np.nan]]))
    assert est_idx.tolist() == [1, 0] and ref_idx.tolist() == [0, 1]
    est_idx, ref_idx = match_sources(np.array([[0.0, 9.0], [5.0, 1.0], [7.0, 8.0]]))
    assert est_idx.tolist() == [2, 0] and ref_idx.tolist() == [0, 1]
    est_idx, ref_idx = match_sources(np.array([[0.0, 5.0, np.inf]]))
    assert est_idx.tolist() == [0] and ref_idx.tolist() == [2]
    est_idx, ref_idx = match_sources(np.full((2, 2), np.nan))
    assert sorted(ref_idx.tolist()) == [0, 1]


def test_framewise_silent_frame_and_short_signal() -> None:
    ref = _sources(2, 4000, seed=8)
    est = _estimates(ref, seed=8)
    ref[0, 1000:2000] = 0.0
    with pytest.warns(UserWarning, match="1 of 4 frames"):
        got = bss_eval_framewise(ref, est, window=1000, hop=1000, filter_length=32)
    assert got.sdr.shape == (2, 4)
    assert np.isnan(got.sdr[:, 1]).all() and got.perm[:, 1].tolist() == [-1, -1]
    assert np.isfinite(got.sdr[:, [0, 2, 3]]).all() and got.perm[:, 0].tolist() == [0, 1]
    # fewer than two frames: the whole signal, estimate i against reference i (as mir_eval)
    short = bss_eval_framewise(ref[:, 2000:], est[:, 2000:], window=1500, hop=1000)
    whole = bss_eval_pairwise(ref[:, 2000:], est[:, 2000:])
    np.testing.assert_allclose(short.sdr[:, 0], np.diag(whole.sdr))


@pytest.mark.parametrize(
    ("reference", "estimate", "message"),
    [
        (np.ones((2, 100)), np.ones((2, 99)), "same number of samples"),
        (np.ones((1, 2, 100)), np.ones((1, 2, 100)), "1-D"),
        (np.ones((2, 0)), np.ones((2, 0)), "empty"),
        (np.array([1.0, np.nan]), np.ones(2), "NaN"),
    ],
)
def test_bad_input_raises_parameter_error(reference, estimate, message) -> None:
    with pytest.raises(ParameterError, match=message):
        bss_eval_sources(reference, estimate)


def test_bad_parameters_raise() -> None:
    x = np.ones((2, 100))
    with pytest.raises(ParameterError, match="filter_length"):
        bss_eval_pairwise(x, x, filter_length=0)
    with pytest.raises(ParameterError, match="Gram matrix would need"):
        bss_eval_sources(np.ones((40, 100)), np.ones((40, 100)))
    with pytest.raises(ParameterError, match="hop"):
        bss_eval_framewise(x, x, window=10, hop=0)
    with pytest.raises(ParameterError, match="as many"):
        bss_eval_framewise(x, x[:1], window=10, hop=10)
    with pytest.raises(ParameterError, match="same shape"):
        si_sdr(x, x[0])
    with pytest.raises(ParameterError, match="square"):
        amari_index(np.ones((2, 3)))


# ------------------------------------------------------------------------------------------
# SI-SDR and Amari values
# ------------------------------------------------------------------------------------------


def test_si_sdr_perfect_and_noise() -> None:
    rng = np.random.default_rng(9)
    ref = rng.standard_normal(16000)
    assert si_sdr(ref, -3.0 * ref) > 100  # a scaled copy: only round-off remains
    # independent noise: alpha ~ 1/sqrt(N), so about -10 log10(N) = -42 dB
    assert si_sdr(ref, rng.standard_normal(16000)) < -20
    assert isinstance(si_sdr(ref, ref + 0.1), float)
    pair = si_sdr(np.stack([ref, ref]), np.stack([ref + 0.1, ref + 1.0]))
    assert pair.shape == (2,) and pair[0] > pair[1]


def test_si_sdr_known_value_and_zero_mean() -> None:
    rng = np.random.default_rng(10)
    ref = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    noise -= ref * (noise @ ref) / (ref @ ref)  # orthogonal: SI-SDR is the plain energy ratio
    assert si_sdr(ref, ref + noise) == pytest.approx(10 * np.log10(ref @ ref / (noise @ noise)))
    offset = ref + 5.0
    assert si_sdr(ref, offset, zero_mean=True) > si_sdr(ref, offset)


def test_amari_index_known_value() -> None:
    # rows: 0.5 + 0; columns: 0 + 0.5; normalised by 2 n (n - 1) = 4
    assert amari_index(np.array([[1.0, 0.5], [0.0, 1.0]])) == pytest.approx(0.25)
    assert amari_index(np.ones((3, 3))) == pytest.approx(1.0)
    assert amari_index(np.array([[-4.2]])) == 0.0
    with pytest.warns(UserWarning, match="all-zero"):
        assert np.isnan(amari_index(np.array([[1.0, 1.0], [0.0, 0.0]])))


def test_no_warning_on_clean_input() -> None:
    ref = _sources(2, 2000, seed=11)
    est = _estimates(ref, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bss_eval_sources(ref, est, filter_length=32)
        si_sdr(ref, est)
