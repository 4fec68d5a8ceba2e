"""The one whitening of the linear methods: blocked passes, rank policy, dtype."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from demix.errors import ParameterError
from demix.methods.whitening import column_signs, mean_and_covariance, whiten


def _mixture(n_channels: int = 4, n_samples: int = 200_003, offset: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(n_channels, n_samples))
    return rng.uniform(-1, 1, (n_channels, n_channels)) @ S + offset


def test_blocked_statistics_equal_the_direct_ones_despite_a_dc_offset() -> None:
    X = _mixture(offset=1e4)  # a large DC offset: a naive one-pass sum would cancel catastrophically
    mean, C = mean_and_covariance(X)
    Xc = X - X.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(mean, X.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(C, Xc @ Xc.T / X.shape[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whitened_data_have_identity_covariance(dtype: type) -> None:
    X = _mixture()
    wh = whiten(X, dtype=dtype)
    Z = wh.whitened.astype(np.float64)
    assert wh.whitened.dtype == dtype and Z.shape == X.shape
    np.testing.assert_allclose(Z @ Z.T / Z.shape[1], np.eye(4), atol=1e-5 if dtype is np.float32 else 1e-10)
    np.testing.assert_allclose(wh.whitening @ wh.dewhitening, np.eye(4), atol=1e-10)
    assert wh.rank == 4 and np.all(np.diff(wh.eigenvalues) <= 0)


def test_pca_reduction_keeps_the_strongest_directions() -> None:
    rng = np.random.default_rng(1)
    S = rng.laplace(size=(2, 50_000)) * np.array([[3.0], [2.0]])
    X = rng.standard_normal((4, 2)) @ S + 1e-3 * rng.standard_normal((4, 50_000))
    wh = whiten(X, 2)
    assert wh.whitening.shape == (2, 4)
    # The two kept directions explain all but the noise.
    assert wh.eigenvalues[:2].sum() / wh.eigenvalues.sum() > 0.9999


def test_rank_policy_warns_or_refuses() -> None:
    X = _mixture(3, 20_000)
    X[2] = X[1]  # duplicated channel
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wh = whiten(X)
    assert wh.whitening.shape[0] == 2 and "rank 2 for 3 channels" in str(caught[0].message)
    with pytest.raises(ParameterError, match="-n/--sources 3 is more than the rank 2"):
        whiten(X, 3)
    with pytest.raises(ParameterError, match="-n/--sources 4 is more than the 3 channel"):
        whiten(X, 4)
    with pytest.raises(ParameterError, match="every channel is silent or constant"):
        whiten(np.ones((2, 100)))
    with pytest.raises(ParameterError, match="is it transposed"):
        whiten(np.ones((100, 3)))
    with pytest.raises(ParameterError, match="NaN"):
        whiten(np.full((2, 100), np.nan))


def test_column_signs_make_the_largest_entry_positive() -> None:
    A = np.array([[0.1, -3.0, 0.0], [-2.0, 1.0, 0.0]])
    signs = column_signs(A)
    np.testing.assert_array_equal(signs, [-1.0, -1.0, 1.0])
    assert np.all((A * signs)[np.argmax(np.abs(A), axis=0), [0, 1, 2]] >= 0)
