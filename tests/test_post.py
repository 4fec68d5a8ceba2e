"""Back-projection, ordering and the run gain."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from demix.post import ScaledSources, excess_kurtosis, finish, run_gain, scale_linear
from demix.types import Instantaneous, Separation


def _scaled(A: np.ndarray, S: np.ndarray, ref_channel: int, scale: str = "reference") -> ScaledSources:
    model = Instantaneous(mixing=A, unmixing=np.linalg.pinv(A))
    return scale_linear(S, model, ref_channel=ref_channel, scale=scale)  # type: ignore[arg-type]


def test_back_projection_sums_to_the_reference_microphone() -> None:
    rng = np.random.default_rng(0)
    S = rng.standard_normal((3, 1000))
    S /= S.std(axis=1, keepdims=True)
    A = rng.uniform(-1, 1, (3, 3))
    for ref in range(3):
        scaled = _scaled(A, S, ref)
        np.testing.assert_allclose(scaled.sources.sum(axis=0), (A @ S)[ref], atol=1e-12)
        np.testing.assert_allclose(scaled.mixing[ref], 1.0)
        np.testing.assert_allclose(scaled.mixing @ scaled.sources, A @ S, atol=1e-10)


def test_order_is_by_energy_at_the_reference_loudest_first() -> None:
    S = np.random.default_rng(1).standard_normal((4, 500))
    S /= S.std(axis=1, keepdims=True)
    A = np.array([[1.0, 0.0, 0.0, 0.0], [0.1, 2.0, 0.5, 1.0], [0, 0, 1, 0], [0, 0, 0, 1]])
    scaled = _scaled(A, S, 1)
    np.testing.assert_array_equal(scaled.order, [1, 3, 2, 0])
    np.testing.assert_allclose(scaled.sources, (S * A[1][:, None])[[1, 3, 2, 0]])
    np.testing.assert_allclose(scaled.mixing[1], 1.0)


def test_finish_reorders_instantaneous_and_keeps_maskless_order() -> None:
    rng = np.random.default_rng(4)
    S = rng.standard_normal((3, 400))
    S /= S.std(axis=1, keepdims=True)
    A = np.diag([0.2, 3.0, 1.0])
    common = {"n_iter": 1, "converged": True, "final_change": 0.0}
    linear = Separation(sources=S, layout="mono", model=Instantaneous(A, np.linalg.inv(A)), **common)  # type: ignore[arg-type]
    done = finish(linear, ref_channel=0, scale="reference")
    np.testing.assert_array_equal(done.order, [0, 1, 2])  # at microphone 0 only source 0 is heard
    done = finish(linear, ref_channel=1, scale="reference")
    np.testing.assert_array_equal(done.order, [1, 0, 2])
    assert done.model is not None and done.model["kind"] == "instantaneous"
    masked = Separation(sources=S, layout="mono", model=None, **common)  # type: ignore[arg-type]
    done = finish(masked, ref_channel=0, scale="reference")
    np.testing.assert_array_equal(done.order, [0, 1, 2])
    assert done.model is None and done.sources is S


def test_unit_scale_keeps_variance_and_reference_polarity() -> None:
    rng = np.random.default_rng(2)
    S = rng.standard_normal((2, 4000))
    S /= S.std(axis=1, keepdims=True)
    A = np.array([[-2.0, 0.5], [0.3, 1.0]])
    scaled = _scaled(A, S, 0, "unit")
    np.testing.assert_allclose(scaled.sources.std(axis=1), 1.0)
    assert np.all(scaled.mixing[0] > 0)
    np.testing.assert_allclose(scaled.mixing @ scaled.sources, A @ S, atol=1e-10)


@given(arrays(np.float64, (3, 50), elements=st.floats(-50, 50)))
def test_run_gain_keeps_everything_below_full_scale(data: np.ndarray) -> None:
    gain = run_gain([data, data[:1] * 0.5])
    assert 0 < gain <= 1.0
    assert np.max(np.abs(data * gain)) <= 0.99 + 1e-12
    if np.max(np.abs(data)) <= 0.99:
        assert gain == 1.0


def test_excess_kurtosis_of_gaussian_and_laplace() -> None:
    rng = np.random.default_rng(3)
    k = excess_kurtosis(
        np.stack([rng.standard_normal(200_000), rng.laplace(size=200_000), np.zeros(200_000)])
    )
    assert abs(k[0]) < 0.1
    assert abs(k[1] - 3.0) < 0.3
    assert k[2] == 0.0
