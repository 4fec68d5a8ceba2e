"""FastICA side by side: demix against scikit-learn's FastICA and python-picard, same input.

Run with ``.venv/bin/python benchmarks/bench_ica.py`` (a few minutes on 2 cores). Two deterministic
mixtures are built from seeded non-Gaussian sources (speech-like amplitude-modulated Laplacian
noise, super-Gaussian; a vibrato tone, uniform noise and a sawtooth, sub-Gaussian) and a seeded
mixing matrix of condition number 3:

* 8 channels x 60 s x 16 kHz (5 speech-like, tone, uniform, sawtooth);
* 2 channels x 10 min x 44.1 kHz (speech-like, tone).

Every method gets the same float64 array and the same ``fun``/``tol``/``max_iter``/seed
(picard uses its own ``tol``, a gradient norm, at its default; its density is tanh, i.e.
logcosh). Reported per method:

* wall time: the best of :data:`REPEATS` runs, after one untimed warm-up run;
* iterations: for demix, iterations on the full data plus, in brackets, those on the warm-start
  subsample (cheaper: a subsample of 65 536 samples); for deflation, the largest per source;
* peak memory: the largest amount of memory allocated through Python and numpy during the call
  beyond what existed before it (``tracemalloc``, measured in the warm-up run; it sees every numpy
  array, not BLAS's private buffers), so the input itself is not counted;
* the Amari index of ``P = W A_true`` (normalised, 0 is perfect);
* speed-up: scikit-learn's time with the same algorithm divided by this method's time.

demix's fastica holds BLAS to one thread during its call (its products are thin); the row
"sklearn 1 thread" runs scikit-learn the same way, to show the speed-up is not that setting.
"""

from __future__ import annotations

import os
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from demix.methods.fastica import fastica

REPEATS = 3
FUN, TOL, MAX_ITER, SEED = "logcosh", 1e-4, 200, 0
TARGET = 4.0
# Amari indices this small differ by sampling noise; "equal" allows 5 % of it.
AMARI_SLACK = 1.05


# --- deterministic sources and mixtures ------------------------------------------------------


def speech_like(rng: np.random.Generator, n: int, rate: int, floor: float) -> np.ndarray:
    """Laplacian noise under a 3-7 Hz syllable envelope with pauses (super-Gaussian)."""
    knots_per_s = rng.uniform(3, 7)
    n_knots = int(n / rate * knots_per_s) + 2
    knots = rng.standard_normal(n_knots)
    env = np.interp(np.linspace(0, n_knots - 1, n), np.arange(n_knots), knots)
    return rng.laplace(size=n) * (floor + np.maximum(env, 0.0))


def tone(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """A tone with a slow vibrato (sub-Gaussian)."""
    t = np.arange(n) / rate
    f0, depth = rng.uniform(110, 440), rng.uniform(2, 6)
    phase = 2 * np.pi * f0 * t + depth * np.sin(2 * np.pi * 5.0 * t)
    return np.sin(phase + rng.uniform(0, 2 * np.pi))


def sawtooth(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    return 2.0 * ((rng.uniform(50, 200) * t + rng.uniform()) % 1.0) - 1.0


@dataclass(frozen=True)
class Mixture:
    name: str
    X: np.ndarray  # (n_channels, n_samples)
    A: np.ndarray  # true mixing


def make_mixture(name: str, kinds: list[str], seconds: float, rate: int, seed: int) -> Mixture:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    rows = []
    for kind in kinds:
        if kind == "speech":
            rows.append(speech_like(rng, n, rate, floor=rng.uniform(0.05, 0.5)))
        elif kind == "tone":
            rows.append(tone(rng, n, rate))
        elif kind == "uniform":
            rows.append(rng.uniform(-1.0, 1.0, n))
        else:
            rows.append(sawtooth(rng, n, rate))
    S = np.stack(rows)
    S -= S.mean(axis=1, keepdims=True)
    S /= S.std(axis=1, keepdims=True)
    c = len(kinds)
    U, _ = np.linalg.qr(rng.standard_normal((c, c)))
    V, _ = np.linalg.qr(rng.standard_normal((c, c)))
    A = U @ np.diag(np.linspace(1.0, 3.0, c)) @ V.T  # condition number 3
    return Mixture(name, np.ascontiguousarray(A @ S), A)


def amari(P: np.ndarray) -> float:
    """Normalised Amari index of ``P = W A`` (0 for a scaled permutation)."""
    P = np.abs(P)
    n = P.shape[0]
    rows = (P / P.max(axis=1, keepdims=True)).sum(axis=1) - 1.0
    cols = (P / P.max(axis=0, keepdims=True)).sum(axis=0) - 1.0
    return float((rows.sum() + cols.sum()) / (2 * n * (n - 1)))


# --- the contenders: each returns (unmixing of the centred mixture, iterations as text) -------

Runner = Callable[[np.ndarray], tuple[np.ndarray, str]]


def demix_runner(algorithm: str) -> Runner:
    def run(X: np.ndarray) -> tuple[np.ndarray, str]:
        sep = fastica(X, algorithm=algorithm, fun=FUN, tol=TOL, max_iter=MAX_ITER, seed=SEED)
        warm, full = sep.diagnostics["n_iter_warm_start"], sep.diagnostics["n_iter_full"]
        iters = f"{full} (+{warm} sub)" if warm else str(full)
        assert sep.model is not None
        return sep.model.unmixing, iters

    return run


def sklearn_runner(algorithm: str) -> Runner:
    from sklearn.decomposition import FastICA

    def run(X: np.ndarray) -> tuple[np.ndarray, str]:
        ica = FastICA(
            algorithm=algorithm,  # type: ignore[arg-type]
            whiten="unit-variance",
            whiten_solver="eigh",
            fun=FUN,
            tol=TOL,
            max_iter=MAX_ITER,
            random_state=SEED,
        )
        ica.fit_transform(X.T)
        return ica.components_, str(ica.n_iter_)

    return run


def one_blas_thread(run: Runner) -> Runner:
    """``run`` with BLAS held to one thread, as demix's fastica holds it during its call."""
    from threadpoolctl import threadpool_limits

    def limited(X: np.ndarray) -> tuple[np.ndarray, str]:
        with threadpool_limits(limits=1, user_api="blas"):
            return run(X)

    return limited


def picard_runner(X: np.ndarray) -> tuple[np.ndarray, str]:
    from picard import picard

    K, W, _, n_iter = picard(
        X, fun="tanh", ortho=True, max_iter=MAX_ITER, random_state=SEED, return_n_iter=True
    )
    return W @ K, str(n_iter)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    algorithm: str
    seconds: float
    iters: str
    peak_mib: float
    amari: float


def measure(label: str, algorithm: str, run: Runner, mix: Mixture) -> Row:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # picard and sklearn warn about their own settings
        run(mix.X)
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    times = []
    for _ in range(REPEATS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            W, iters = run(mix.X)
            times.append(time.perf_counter() - t0)
    return Row(label, algorithm, min(times), iters, peak, amari(W @ mix.A))


def main() -> None:
    mixtures = [
        make_mixture(
            "8 ch x 60 s x 16 kHz",
            ["speech"] * 5 + ["tone", "uniform", "saw"],
            60,
            16_000,
            seed=1,
        ),
        make_mixture("2 ch x 10 min x 44.1 kHz", ["speech", "tone"], 600, 44_100, seed=2),
    ]
    print(
        f"fun={FUN} tol={TOL:g} max_iter={MAX_ITER} seed={SEED}; wall time is the best of "
        f"{REPEATS} runs after a warm-up; {os.cpu_count()} CPU(s); same float64 input for all"
    )
    header = (
        f"{'mixture':<26}{'method':<17}{'algorithm':<11}{'time [s]':>9}  {'iterations':<14}"
        f"{'peak [MiB]':>10}{'Amari':>10}{'sklearn/this':>14}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for mix in mixtures:
        rows = [
            measure("demix fastica", "parallel", demix_runner("parallel"), mix),
            measure("sklearn FastICA", "parallel", sklearn_runner("parallel"), mix),
            measure("sklearn 1 thread", "parallel", one_blas_thread(sklearn_runner("parallel")), mix),
            measure("demix fastica", "deflation", demix_runner("deflation"), mix),
            measure("sklearn FastICA", "deflation", sklearn_runner("deflation"), mix),
            measure("picard", "ortho", picard_runner, mix),
        ]
        sklearn = {r.algorithm: r for r in rows if r.method == "sklearn FastICA"}
        for i, r in enumerate(rows):
            ref = sklearn.get(r.algorithm, sklearn["parallel"])
            ratio = ref.seconds / r.seconds
            print(
                f"{mix.name if i == 0 else '':<26}{r.method:<17}{r.algorithm:<11}"
                f"{r.seconds:>9.3f}  {r.iters:<14}{r.peak_mib:>10.1f}{r.amari:>10.5f}"
                f"{ratio:>13.1f}x"
            )
            if r.method.startswith("demix"):
                met = ratio >= TARGET and r.amari <= ref.amari * AMARI_SLACK + 1e-5
                verdicts.append(
                    f"{mix.name}, {r.algorithm}: {ratio:.1f}x, Amari {r.amari:.5f} vs "
                    f"{ref.amari:.5f} -> {'met' if met else 'NOT met'}"
                )
        print()
    print(
        f"target: >= {TARGET:g}x faster than scikit-learn's FastICA (same algorithm) at an Amari "
        f"index no worse than {AMARI_SLACK:g} x its own + 1e-5"
    )
    for verdict in verdicts:
        print("  " + verdict)


if __name__ == "__main__":
    main()
