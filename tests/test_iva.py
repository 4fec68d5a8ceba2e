"""Frequency-domain IVA (demix.methods.iva): separation of reverberant rooms, alignment, API.

The rooms are simulated once per module from 4 s of real speech (LibriSpeech, two readers) with
``demix.rooms``: 6 x 5 x 3 m, RT60 0.3 s, microphones 5 cm apart, speakers 1.5-2 m away and at
least 45 degrees apart. Scores are BSS Eval v3 SDR at the reference microphone against each
speaker's image there.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from demix.errors import ParameterError
from demix.methods.fastica import fastica
from demix.methods.iva import IVAResult, iva
from demix.metrics import bss_eval_sources
from demix.spectral import stft
from demix.types import IterInfo
from tests.conftest import shared

RATE = 16000
SECONDS = 4.0
READERS = (
    "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
)


def _speech(paths: tuple[str, ...]) -> np.ndarray:
    n = int(SECONDS * RATE)
    rows = []
    for p in paths:
        x, rate = sf.read(shared(p))
        assert rate == RATE
        x = x[RATE : RATE + n]  # skip the leading silence
        rows.append(x / np.std(x))
    return np.stack(rows)


def _room(paths: tuple[str, ...], seed: int) -> np.ndarray:
    rooms = pytest.importorskip("demix.rooms")
    pytest.importorskip("pyroomacoustics")
    S = _speech(paths)
    rng = np.random.default_rng(seed)
    room = [6.0, 5.0, 3.0]
    centre = [3.0, 2.5, 1.5]
    mics = rooms.linear_array(S.shape[0], 0.05, centre)
    positions = rooms.place_sources(
        S.shape[0], centre, room, rng, min_distance=1.5, max_distance=2.0, min_separation_deg=45.0
    )
    return rooms.room_images(S, RATE, room=room, rt60=0.3, mics=mics, positions=positions).images


@pytest.fixture(scope="module")
def room2() -> np.ndarray:
    """Images ``(2 sources, 2 mics, 4 s)`` of a reverberant room."""
    return _room(READERS, seed=1)


def _sdr(images: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    return bss_eval_sources(images[:, 0], estimate).sdr


# --- quality -----------------------------------------------------------------------------------


def test_iva_beats_time_domain_ica_in_a_reverberant_room(room2: np.ndarray) -> None:
    X = room2.sum(axis=0)
    result = iva(X, RATE)
    sdr_iva = _sdr(room2, result.images[:, 0])
    ica = fastica(X, seed=0)
    sdr_ica = _sdr(room2, ica.sources)  # SDR allows a 512-tap filter, so ICA's scale is no excuse
    assert sdr_iva.min() > 6.0, sdr_iva
    assert sdr_iva.mean() > sdr_ica.mean() + 5.0, (sdr_iva, sdr_ica)


@pytest.mark.parametrize(("model", "floor"), [("gauss", 4.5), ("laplace", 3.0)])
def test_spherical_models_separate_the_room(room2: np.ndarray, model: str, floor: float) -> None:
    """Weaker than ILRMA on 4 s (63 frames of 4096 points), still far above time-domain ICA."""
    result = iva(room2.sum(axis=0), RATE, model=model)  # type: ignore[arg-type]
    assert _sdr(room2, result.images[:, 0]).mean() > floor


def test_ica_matches_iva_on_an_instantaneous_mixture() -> None:
    S = _speech(READERS)
    X = np.array([[1.0, 0.6], [0.5, 1.0]]) @ S
    sdr_ica = bss_eval_sources(S, fastica(X, seed=0).sources).sdr
    sdr_iva = bss_eval_sources(S, iva(X, RATE).images[:, 0]).sdr
    assert sdr_ica.mean() > 30.0
    assert sdr_ica.mean() >= sdr_iva.mean() - 1.0
    assert sdr_iva.mean() > 10.0  # IVA still works, with the STFT's approximations


def test_frequencies_stay_aligned(room2: np.ndarray) -> None:
    """The global matrix ``W_f A_f`` picks the same permutation at nearly every frequency.

    ``|W_f x_f^{(j)}|²`` (source ``j``'s image through estimated row ``k``) is how much of true
    source ``j`` output ``k`` carries at frequency ``f``. Independent ICA per frequency would pick a
    random permutation per bin (half the bins wrong); IVA must keep them together.
    """
    X = room2.sum(axis=0)
    result = iva(X, RATE)
    n_fft, hop = result.n_fft, result.hop
    img = stft(room2, n_fft, hop).transpose(2, 0, 1, 3)  # (F, source, mic, N)
    out = np.einsum("fkm,fjmn->fkjn", result.demixing, img)
    G = (np.abs(out) ** 2).sum(axis=-1)  # (F, k, j)
    band = slice(int(100 * n_fft / RATE), int(7000 * n_fft / RATE))
    straight = G[band, 0, 0] + G[band, 1, 1] > G[band, 0, 1] + G[band, 1, 0]
    majority = max(straight.mean(), 1.0 - straight.mean())
    assert majority > 0.9, majority

    # The same check flags a result whose bins were permuted: swap the rows in every other bin.
    broken = result.demixing.copy()
    broken[::2] = broken[::2, ::-1]
    out = np.einsum("fkm,fjmn->fkjn", broken, img)
    G = (np.abs(out) ** 2).sum(axis=-1)
    straight = G[band, 0, 0] + G[band, 1, 1] > G[band, 0, 1] + G[band, 1, 0]
    assert max(straight.mean(), 1.0 - straight.mean()) < 0.7


# --- the result --------------------------------------------------------------------------------


def test_images_sum_to_the_mixture_and_matrices_agree(room2: np.ndarray) -> None:
    X = room2.sum(axis=0)
    result = iva(X, RATE, model="laplace", n_fft=1024, max_iter=5)
    assert isinstance(result, IVAResult)
    assert result.images.shape == (2, 2, X.shape[1])
    assert np.allclose(result.images.sum(axis=0), X, atol=1e-8 * np.abs(X).max())
    F = 1024 // 2 + 1
    assert result.demixing.shape == (F, 2, 2) and result.mixing.shape == (F, 2, 2)
    assert np.allclose(result.demixing @ result.mixing, np.eye(2), atol=1e-8)
    assert np.isclose(result.power_share.sum(), 1.0) and result.power_share[0] >= result.power_share[1]


def test_fewer_sources_than_microphones_by_pca() -> None:
    """Two speakers, three microphones, short random echoes: PCA per frequency keeps two."""
    S = _speech(READERS)[:, : RATE * 2]
    rng = np.random.default_rng(5)
    h = rng.standard_normal((3, 2, 64)) * np.exp(-np.arange(64) / 8.0)
    X = np.stack([sum(np.convolve(S[j], h[m, j])[: S.shape[1]] for j in range(2)) for m in range(3)])
    result = iva(X, RATE, n_sources=2, n_fft=1024)
    assert result.images.shape == (2, 3, X.shape[1])
    assert result.demixing.shape == (513, 2, 3) and result.mixing.shape == (513, 3, 2)
    assert np.allclose(result.demixing @ result.mixing, np.eye(2), atol=1e-8)
    images = np.stack([[np.convolve(S[j], h[0, j])[: S.shape[1]]] for j in range(2)])
    assert _sdr(images, result.images[:, 0]).min() > 6.0


def test_callback_objective_and_convergence(room2: np.ndarray) -> None:
    X = room2.sum(axis=0)
    for model in ("laplace", "gauss", "nmf"):
        seen: list[IterInfo] = []
        result = iva(X, RATE, model=model, n_fft=1024, max_iter=15, tol=0.0, callback=seen.append)
        assert [i.iteration for i in seen] == list(range(1, 16))
        assert all(i.max_iter == 15 for i in seen)
        assert result.n_iter == 15 and not result.converged and len(result.objective) == 15
        obj = np.array(result.objective)
        # Majorise-minimise: the objective never goes up (up to round-off).
        assert np.all(np.diff(obj) <= 1e-9 * np.abs(obj[:-1]).max()), (model, obj)
        assert result.final_change == pytest.approx(seen[-1].change)
    stopped = iva(X, RATE, model="laplace", n_fft=1024, max_iter=200, tol=1e-3)
    assert stopped.converged and stopped.n_iter < 200 and stopped.final_change < 1e-3


def test_nmf_model_is_seeded(room2: np.ndarray) -> None:
    X = room2.sum(axis=0)[:, : RATE * 2]
    a = iva(X, RATE, n_fft=1024, max_iter=3, seed=3).images
    b = iva(X, RATE, n_fft=1024, max_iter=3, seed=3).images
    c = iva(X, RATE, n_fft=1024, max_iter=3, seed=4).images
    assert np.array_equal(a, b) and not np.allclose(a, c)


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_fft": 8}, "--n-fft"),
        ({"n_fft": 1 << 20}, "--n-fft"),
        ({"hop": 0}, "--hop"),
        ({"n_fft": 512, "hop": 512}, "--hop"),
        ({"max_iter": 0}, "--max-iter"),
        ({"n_sources": 3}, "-n/--sources"),
        ({"n_sources": 0}, "-n/--sources"),
        ({"model": "cauchy"}, "--model"),
        ({"tol": -1.0}, "--tol"),
        ({"ref_channel": 2}, "--ref-channel"),
    ],
)
def test_bad_parameters_name_the_option(kwargs: dict[str, object], words: str) -> None:
    X = np.random.default_rng(0).standard_normal((2, RATE))
    with pytest.raises(ParameterError, match=words):
        iva(X, RATE, **kwargs)  # type: ignore[arg-type]


def test_mono_input_is_refused_with_a_pointer_to_nmf() -> None:
    with pytest.raises(ParameterError, match="demix nmf"):
        iva(np.zeros((1, RATE)), RATE)
