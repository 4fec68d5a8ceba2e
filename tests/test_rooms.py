"""Spatial mixtures: panning formula, array and source placement, simulated rooms (RT60, delays)."""

from __future__ import annotations

import sys
from itertools import combinations

import numpy as np
import pytest
import soundfile as sf

from demix import rooms
from demix.errors import ParameterError
from tests.conftest import shared

ROOM = (6.0, 5.0, 3.0)
CENTRE = (3.0, 2.5, 1.5)
RATE = 16000


def _delayed(s: np.ndarray, lag: int) -> np.ndarray:
    return np.concatenate([np.zeros(lag), s[: len(s) - lag]])


def test_pan_images_follow_the_formula() -> None:
    S = np.random.default_rng(0).standard_normal((3, 500))
    images = rooms.pan_images(S, [0.0, 30.0, 90.0], [0, 7, -4])
    assert images.shape == (3, 2, 500)
    c, s = np.cos(np.deg2rad(30.0)), np.sin(np.deg2rad(30.0))
    np.testing.assert_array_equal(images[0, 0], S[0])  # 0°: channel 0 only
    np.testing.assert_array_equal(images[0, 1], 0.0)
    np.testing.assert_allclose(images[1, 0], c * S[1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(images[1, 1], s * _delayed(S[1], 7), rtol=0, atol=1e-15)  # later
    np.testing.assert_allclose(images[2, 0], 0.0, atol=1e-15)  # 90°: channel 1 only, cos 90° ≈ 6e-17
    np.testing.assert_array_equal(images[2, 1], S[2])
    images = rooms.pan_images(S[:1], [45.0], [-4])  # channel 1 hears it 4 samples before channel 0
    np.testing.assert_allclose(images[0, 0], np.sqrt(0.5) * _delayed(S[0], 4), atol=1e-15)
    np.testing.assert_allclose(images[0, 1], np.sqrt(0.5) * S[0], atol=1e-15)


@pytest.mark.parametrize(
    ("pans", "delays", "fragment"),
    [
        ([10.0], None, "one angle per source"),
        ([10.0, 95.0], None, "between 0 and 90"),
        ([10.0, 20.0], [0.5, 1], "whole samples"),
        ([10.0, 20.0], [0, 100], "whole samples"),
        ([10.0, 20.0], [1], "one integer per source"),
    ],
)
def test_pan_images_reject_bad_values(pans: list[float], delays: list[float] | None, fragment: str) -> None:
    with pytest.raises(ParameterError, match=fragment):
        rooms.pan_images(np.ones((2, 100)), pans, delays)  # type: ignore[arg-type]


def test_linear_array_is_centred_along_x() -> None:
    mics = rooms.linear_array(4, 0.1, CENTRE)
    np.testing.assert_allclose(mics[0], [2.85, 2.95, 3.05, 3.15])
    np.testing.assert_allclose(mics[1:], np.tile(np.array(CENTRE[1:])[:, None], 4))
    with pytest.raises(ParameterError, match="--mic-spacing"):
        rooms.linear_array(2, 0.0, CENTRE)


@pytest.mark.parametrize("n_sources", [2, 3, 5])
def test_place_sources_follows_the_documented_rule(n_sources: int) -> None:
    for seed in range(30):
        pos = rooms.place_sources(n_sources, CENTRE, ROOM, np.random.default_rng(seed))
        offset = pos - np.array(CENTRE)[:, None]
        distance = np.linalg.norm(offset, axis=0)
        azimuth = np.degrees(np.arctan2(offset[1], offset[0]))
        assert np.all((distance >= 1.0) & (distance <= 2.0))
        assert np.all((azimuth >= 0.0) & (azimuth <= 180.0))  # in front of the array
        assert min(abs(a - b) for a, b in combinations(azimuth, 2)) >= 30.0 - 1e-9
        np.testing.assert_allclose(pos[2], CENTRE[2])
        assert np.all(pos > rooms.WALL_MARGIN) and np.all(pos < np.array(ROOM)[:, None] - rooms.WALL_MARGIN)
    a = rooms.place_sources(3, CENTRE, ROOM, np.random.default_rng(1))
    np.testing.assert_array_equal(a, rooms.place_sources(3, CENTRE, ROOM, np.random.default_rng(1)))


def test_place_sources_says_when_it_cannot() -> None:
    with pytest.raises(ParameterError, match="30° apart"):
        rooms.place_sources(8, CENTRE, ROOM, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="larger --room"):
        rooms.place_sources(2, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), np.random.default_rng(0))


def _schroeder_t30(h: np.ndarray) -> float:
    """RT60 extrapolated from the -5 to -35 dB decay of the backward-integrated energy (ISO 3382)."""
    edc = np.cumsum(h[::-1] ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    start, stop = int(np.argmax(edc_db <= -5)), int(np.argmax(edc_db <= -35))
    slope = np.polyfit(np.arange(start, stop) / RATE, edc_db[start:stop], 1)[0]
    return float(-60.0 / slope)


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_room_reaches_the_requested_rt60(rt60: float) -> None:
    # An impulse as the source makes its image the room response itself, so the decay can be
    # measured here, independently of pyroomacoustics' own RT60 estimate.
    impulse = np.zeros((1, round(1.5 * rt60 * RATE)))
    impulse[0, 0] = 1.0
    mics = rooms.linear_array(2, 0.1, CENTRE)
    result = rooms.room_images(
        impulse, RATE, room=ROOM, rt60=rt60, mics=mics, positions=rooms.polar_positions([1.5], [60.0], CENTRE)
    )
    # calibration converged on the measure it targets (inverse Sabine alone measures 0.78 s at 0.6 s)
    assert abs(result.rt60_measured / rt60 - 1) <= 0.05
    assert result.absorption > result.absorption_sabine
    for h in result.images[0]:
        assert abs(_schroeder_t30(h) / rt60 - 1) <= 0.25
    # time zero is emission: the direct path (the strongest arrival here) peaks at its delay
    peak = np.argmax(np.abs(result.images[0]), axis=1)
    assert np.all(np.abs(peak - result.direct_delays[0]) <= 1)


def _gcc_phat_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> int:
    """Lag (samples) by which ``b`` follows ``a``: peak of the phase-transform cross-correlation."""
    n = len(a) + len(b)
    G = np.conj(np.fft.rfft(a, n)) * np.fft.rfft(b, n)
    r = np.fft.irfft(G / (np.abs(G) + 1e-12), n)
    return int(np.argmax(np.concatenate([r[-max_lag:], r[: max_lag + 1]]))) - max_lag


def test_room_delays_between_microphones_match_the_geometry() -> None:
    speech = [
        sf.read(shared(f"librosa_data/{name}"))[0][RATE : 4 * RATE]
        for name in ("libri1_5703-47212-0000_male_16k.wav", "libri3_198-209-0000_female_16k.wav")
    ]
    mics = rooms.linear_array(3, 0.1, CENTRE)
    positions = rooms.polar_positions([1.5, 1.2], [40.0, 125.0], CENTRE)
    result = rooms.room_images(np.stack(speech), RATE, room=ROOM, rt60=0.3, mics=mics, positions=positions)
    np.testing.assert_allclose(result.mixture, result.images.sum(0))
    for k in range(2):
        for i, j in combinations(range(3), 2):
            expected = result.direct_delays[k, j] - result.direct_delays[k, i]
            assert abs(expected) > 1.5  # the geometry makes the delays worth checking
            lag = _gcc_phat_lag(result.images[k, i], result.images[k, j], max_lag=20)
            assert abs(lag - expected) <= 1.0, (k, i, j, lag, expected)


def test_room_rejects_bad_geometry() -> None:
    S = np.ones((1, 100))
    mics = rooms.linear_array(2, 0.1, CENTRE)
    with pytest.raises(ParameterError, match="inside"):
        rooms.room_images(S, RATE, room=ROOM, rt60=0.3, mics=mics, positions=np.array([[7.0], [1.0], [1.0]]))
    with pytest.raises(ParameterError, match="too short"):
        rooms.room_images(S, RATE, room=ROOM, rt60=0.01, mics=mics, positions=np.array([[1.0], [1.0], [1.0]]))
    with pytest.raises(ParameterError, match="--room"):
        rooms.room_images(S, RATE, room=(6.0, 5.0), rt60=0.3, mics=mics, positions=np.ones((3, 1)))


def test_missing_pyroomacoustics_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)  # import now raises ImportError
    with pytest.raises(ParameterError, match=r"pip install 'demix\[room\]'"):
        rooms.room_images(
            np.ones((1, 100)), RATE, room=ROOM, rt60=0.3, mics=np.ones((3, 1)), positions=np.ones((3, 1))
        )
