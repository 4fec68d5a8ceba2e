"""Mixing matrices and mixtures: parsing, conditioning, noise level."""

from __future__ import annotations

import json

import numpy as np
import pytest

from demix.errors import ParameterError
from demix.mixdown import spatial_spec
from demix.mixing import (
    MAX_CONDITION,
    add_noise,
    mix,
    parse_matrix,
    parse_numbers,
    parse_points,
    random_mixing,
)
from demix.rooms import DEFAULT_MIC_SPACING, PanSpec, RoomSpec


def test_parse_matrix_string_rows_are_microphones() -> None:
    A = parse_matrix("0.9,0.5;0.4,0.8;0.1,0.2")
    assert A.shape == (3, 2)
    assert A[1, 0] == 0.4


def test_parse_matrix_json_file(tmp_path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"mixing": [[1, 0.5], [0.3, 1]]}))
    np.testing.assert_array_equal(parse_matrix(str(path)), [[1, 0.5], [0.3, 1]])


@pytest.mark.parametrize("spec", ["0.9,x;1,2", "1,2;3", "1,1;1,1", "nan,1;1,2", ""])
def test_parse_matrix_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ParameterError, match="--matrix"):
        parse_matrix(spec)


def test_parse_matrix_missing_or_broken_json(tmp_path) -> None:
    with pytest.raises(ParameterError, match="no such file"):
        parse_matrix(str(tmp_path / "absent.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"mix": []}')
    with pytest.raises(ParameterError, match="expected JSON"):
        parse_matrix(str(bad))


@pytest.mark.parametrize(("m", "n"), [(2, 2), (3, 3), (8, 8), (4, 2), (2, 3)])
def test_random_mixing_is_well_conditioned(m: int, n: int) -> None:
    for seed in range(20):
        A = random_mixing(m, n, np.random.default_rng(seed))
        assert A.shape == (m, n)
        assert np.linalg.cond(A) <= MAX_CONDITION + 1e-9
        assert np.isclose(np.max(np.abs(A)), 1.0)


def test_random_mixing_depends_only_on_seed() -> None:
    a = random_mixing(3, 3, np.random.default_rng(7))
    b = random_mixing(3, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, random_mixing(3, 3, np.random.default_rng(8)))


def test_mix_noise_is_snr_below_each_channel() -> None:
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(2, 200_000))
    A = np.array([[1.0, 0.2], [0.1, 0.3]])
    X, noise = mix(S, A, snr_db=20.0, rng=rng)
    assert noise is not None
    clean = A @ S
    snr = 10 * np.log10(np.mean(clean**2, axis=1) / np.mean(noise**2, axis=1))
    np.testing.assert_allclose(snr, 20.0, atol=0.1)
    np.testing.assert_allclose(X, clean + noise)


def test_mix_shape_mismatch_is_clear() -> None:
    with pytest.raises(ParameterError, match="column"):
        mix(np.zeros((3, 10)), np.eye(2), snr_db=None, rng=np.random.default_rng(0))


def test_parse_numbers_and_points() -> None:
    assert parse_numbers("1,2.5,-3", "--x") == (1.0, 2.5, -3.0)
    assert parse_points("1,2,3;4,5,6", "--positions") == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    with pytest.raises(ParameterError, match="--delays"):
        parse_numbers("1,2.5", "--delays", integer=True)
    with pytest.raises(ParameterError, match="--pan"):
        parse_numbers("1,,2", "--pan")
    with pytest.raises(ParameterError, match="x,y,z"):
        parse_points("1,2;3,4", "--positions")


def test_spatial_spec_picks_the_kind_of_mixture() -> None:
    assert spatial_spec(2, channels=None) is None
    pan = spatial_spec(2, channels=None, pan="10,80", delays="0,-2")
    assert pan == PanSpec((10.0, 80.0), (0, -2))
    room = spatial_spec(3, channels=None, room="6,5,3", rt60=0.4, azimuths="0,90,180", distances="1,1,1")
    assert isinstance(room, RoomSpec)
    assert (
        room.n_mics == 3 and room.spacing == DEFAULT_MIC_SPACING and room.azimuths_deg == (0.0, 90.0, 180.0)
    )
    with pytest.raises(ParameterError, match="--positions places"):
        spatial_spec(2, channels=None, room="6,5,3", rt60=0.4, positions="1,1,1;2,2,1", distances="1,1")


def test_add_noise_without_snr_is_the_identity() -> None:
    clean = np.ones((2, 10))
    X, noise = add_noise(clean, snr_db=None, rng=np.random.default_rng(0))
    assert X is clean and noise is None
