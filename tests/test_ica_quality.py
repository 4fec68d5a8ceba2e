"""FastICA on real speech, scored as users score it: BSS Eval v3 SIR, side by side with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from sklearn.decomposition import FastICA

from demix.methods.fastica import fastica
from demix.metrics import amari_index, bss_eval_sources
from demix.mixing import random_mixing
from tests.conftest import shared

LIBRI = [
    "librosa_data/libri1_5703-47212-0000_male_16k.wav",
    "librosa_data/libri2_3436-172162-0000_male_16k.wav",
    "librosa_data/libri3_198-209-0000_female_16k.wav",
]
ARCTIC = [
    "pyroomacoustics_samples/cmu_arctic_us_aew_a0003.wav",
    "pyroomacoustics_samples/cmu_arctic_us_axb_a0006.wav",
]


def _sources(names: list[str]) -> np.ndarray:
    rows = [sf.read(shared(name))[0] for name in names]
    n = min(len(r) for r in rows)
    return np.stack([r[:n] for r in rows])


def _min_sir(S: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.min(bss_eval_sources(S, estimate).sir))


def _sklearn_sir(S: np.ndarray, X: np.ndarray, algorithm: str, seed: int) -> float:
    ica = FastICA(
        algorithm=algorithm, whiten="unit-variance", whiten_solver="eigh", random_state=seed, max_iter=200
    )
    return _min_sir(S, ica.fit_transform(X.T).T)


@pytest.mark.parametrize(
    ("names", "algorithm", "floor"),
    [
        # Thresholds from the issue: instantaneous 3 x 3 speech mixtures are separable far beyond
        # audibility; deflation accumulates the errors of earlier units, hence 5 dB less. ARCTIC
        # clips are 3.5 s, so their sample independence is weaker: 25 dB.
        (LIBRI, "parallel", 35.0),
        (LIBRI, "deflation", 30.0),
        (ARCTIC, "parallel", 25.0),
        (ARCTIC, "deflation", 25.0),
    ],
)
def test_speech_sir_and_no_worse_than_sklearn(names: list[str], algorithm: str, floor: float) -> None:
    S = _sources(names)
    ours, theirs = [], []
    # Three random well-conditioned mixtures, each separated from the same three starts (seeds)
    # by both libraries. Parallel runs agree start by start. Deflation has one fixed point per
    # extraction order: scikit-learn takes the order its random start falls into (on ARCTIC,
    # 27.5 or 39.6 dB), ours extracts the most non-Gaussian source first, so the two are compared
    # on their worst case over the same mixtures and starts.
    for mixing_seed in range(3):
        A = random_mixing(len(names), len(names), np.random.default_rng(mixing_seed))
        X = A @ S
        for seed in range(3):
            result = fastica(X, algorithm=algorithm, seed=seed)
            ours.append(_min_sir(S, result.sources))
            theirs.append(_sklearn_sir(S, X, algorithm, seed))
            assert result.model is not None
            assert amari_index(result.model.unmixing @ A) <= 0.05
    assert min(ours) >= floor, f"min SIR {ours} dB < {floor} dB"
    assert min(ours) >= min(theirs) - 1.0, (ours, theirs)
    if algorithm == "parallel":
        assert all(o >= t - 1.0 for o, t in zip(ours, theirs, strict=True)), (ours, theirs)
