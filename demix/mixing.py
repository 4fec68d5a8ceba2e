"""Synthetic mixtures with a known truth: ``x = A s (+ noise)``, so separation can be scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from demix.errors import ParameterError

MAX_CONDITION = 5.0


def parse_matrix(spec: str) -> np.ndarray:
    """Read a mixing matrix from ``"0.9,0.5;0.4,0.8"`` (rows are microphones) or a JSON file.

    The JSON file holds ``{"mixing": [[...], ...]}``, the same key ``demix.json`` uses.
    """
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            rows = json.loads(path.read_text())["mixing"]
        except FileNotFoundError:
            raise ParameterError(f"--matrix {spec}: no such file") from None
        except (ValueError, KeyError, TypeError):
            raise ParameterError(
                f'--matrix {spec}: expected JSON like {{"mixing": [[0.9, 0.5], [0.4, 0.8]]}}'
            ) from None
    else:
        try:
            rows = [[float(v) for v in row.split(",")] for row in spec.split(";")]
        except ValueError:
            raise ParameterError(
                f"--matrix {spec!r}: expected numbers like '0.9,0.5;0.4,0.8' (rows split by ';')"
            ) from None
    try:
        A = np.array(rows, dtype=float)
    except ValueError:
        raise ParameterError(f"--matrix {spec!r}: every row must have the same number of entries") from None
    if A.ndim != 2 or A.size == 0:
        raise ParameterError(f"--matrix {spec!r}: expected a matrix with rows split by ';'")
    if not np.all(np.isfinite(A)):
        raise ParameterError(f"--matrix {spec!r}: entries must be finite numbers")
    if np.linalg.matrix_rank(A) < min(A.shape):
        raise ParameterError(f"--matrix {spec!r} is singular: its sources could not be separated")
    return A


def parse_numbers(spec: str, name: str, *, integer: bool = False) -> tuple[float, ...]:
    """Read ``"1.5,2,3"`` given to option ``name``; ``integer`` refuses fractions."""
    try:
        values = tuple(float(v) for v in spec.split(","))
    except ValueError:
        raise ParameterError(f"{name} {spec!r}: expected numbers separated by ',' like '1,2.5'") from None
    if not all(np.isfinite(values)):
        raise ParameterError(f"{name} {spec!r}: values must be finite numbers")
    if integer and any(v != round(v) for v in values):
        raise ParameterError(f"{name} {spec!r}: values must be whole numbers (samples)")
    return values


def parse_points(spec: str, name: str) -> tuple[tuple[float, ...], ...]:
    """Read points ``"x,y,z;x,y,z"`` given to option ``name``."""
    points = tuple(parse_numbers(part, name) for part in spec.split(";"))
    if any(len(p) != 3 for p in points):
        raise ParameterError(f"{name} {spec!r}: expected points x,y,z separated by ';'")
    return points


def random_mixing(n_channels: int, n_sources: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(n_channels, n_sources)`` mixing matrix with condition number ≤ 5.

    Built as ``U diag(σ) Vᵀ`` with Haar-random orthogonal ``U``, ``V`` and singular values drawn in
    ``[1, 5]``, so the bound holds by construction for every size (rejection sampling of Gaussian
    matrices almost never succeeds beyond 4 × 4). Scaled so the largest entry is 1 in magnitude.
    """
    k = min(n_channels, n_sources)
    U = _orthogonal(n_channels, rng)[:, :k]
    V = _orthogonal(n_sources, rng)[:, :k]
    sigma = rng.uniform(1.0, MAX_CONDITION, size=k)
    A = (U * sigma) @ V.T
    return A / np.max(np.abs(A))


def _orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def mix(
    sources: np.ndarray, A: np.ndarray, *, snr_db: float | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(A @ sources + noise, noise)``; noise is white Gaussian ``snr_db`` below each channel.

    Parameters
    ----------
    sources : ndarray, (n_sources, n_samples)
    A : ndarray, (n_channels, n_sources)
    snr_db : float or None
        Signal-to-noise ratio per channel, relative to that channel's clean mixture power.
    """
    if A.shape[1] != sources.shape[0]:
        raise ParameterError(
            f"--matrix has {A.shape[1]} column(s) but {sources.shape[0]} source(s) were given; "
            "columns are sources, rows are microphones"
        )
    return add_noise(A @ sources, snr_db=snr_db, rng=rng)


def add_noise(
    clean: np.ndarray, *, snr_db: float | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(clean + noise, noise)``: white Gaussian noise ``snr_db`` below each channel's power.

    Parameters
    ----------
    clean : ndarray, (n_channels, n_samples)
    snr_db : float or None
        None adds nothing and returns ``(clean, None)``.
    """
    if snr_db is None:
        return clean, None
    power = np.mean(clean**2, axis=1, keepdims=True)
    noise = rng.standard_normal(clean.shape) * np.sqrt(power * 10.0 ** (-snr_db / 10.0))
    return clean + noise, noise
