"""Spatial mixtures with a known truth: each source's *image* at every microphone.

Two kinds, both returning images ``(n_sources, n_mics, n_samples)`` whose sum over sources is the
mixture, so a separation can be scored against what each source alone sounds like at a microphone:

- :func:`room_images`: a shoebox room simulated with pyroomacoustics' image-source method (Allen &
  Berkley 1979), wall absorption from the requested RT60 by inverse Sabine, then calibrated on the
  measured RT60 of the simulated responses. pyroomacoustics is the optional extra ``demix[room]``,
  imported only here.
- :func:`pan_images`: anechoic stereo by amplitude panning with integer inter-channel delays.

Time zero of every image is the moment the source starts emitting: the propagation delay to each
microphone is kept (so inter-microphone delays match the geometry), the simulator's own filter
delay is removed, and the reverberant tail past the last source sample is cut, as in a recording
that stops when the sources stop. The same rule holds for every source and microphone, so
``mixture = images.sum(0)`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from demix.errors import ParameterError

DEFAULT_MIC_SPACING = 0.05
"""Metres between neighbouring microphones of the linear array unless ``--mic-spacing`` says."""

WALL_MARGIN = 0.5
"""Randomly placed sources keep at least this many metres from every wall."""

RT60_TOLERANCE = 0.04
"""Absorption calibration stops once the measured RT60 is within 4 % of the request."""

RT60_MAX_STEPS = 5

_INSTALL_HINT = "pip install 'demix[room]'"


@dataclass(frozen=True)
class RoomMix:
    """A simulated room mixture and the facts of its simulation.

    Attributes
    ----------
    images : ndarray, (n_sources, n_mics, n_samples)
        Each source alone as every microphone hears it; the mixture is ``images.sum(0)``.
    rt60_requested : float
        The RT60 asked for, in seconds.
    rt60_measured : float
        Median over all source–microphone responses of the RT60 measured by Schroeder backward
        integration (``pyroomacoustics.experimental.measure_rt60``, 60 dB decay), in seconds.
    absorption : float
        Energy absorption coefficient of every wall after calibration.
    absorption_sabine : float
        The inverse-Sabine coefficient the calibration started from.
    max_order : int
        Reflection order of the image-source method (inverse Sabine's, for the requested RT60).
    calibration_steps : int
        Simulations of the probe response used to calibrate the absorption.
    direct_delays : ndarray, (n_sources, n_mics)
        Direct-path propagation delay of each source to each microphone, in samples.
    """

    images: np.ndarray
    rt60_requested: float
    rt60_measured: float
    absorption: float
    absorption_sabine: float
    max_order: int
    calibration_steps: int
    direct_delays: np.ndarray

    @property
    def mixture(self) -> np.ndarray:
        """``(n_mics, n_samples)``: the sum of the images."""
        return np.asarray(self.images.sum(axis=0))

    def facts(self) -> dict[str, Any]:
        """JSON-serialisable record of the simulation (no audio, no per-source delays)."""
        return {
            "rt60_requested": self.rt60_requested,
            "rt60_measured": round(self.rt60_measured, 4),
            "absorption": round(self.absorption, 5),
            "absorption_sabine": round(self.absorption_sabine, 5),
            "max_order": self.max_order,
            "calibration_steps": self.calibration_steps,
        }


@dataclass(frozen=True)
class RoomSpec:
    """A room mixture as ``demix mix --room`` asks for it (sizes and positions in metres).

    ``centre`` defaults to the middle of the room; without ``positions`` or ``distances`` and
    ``azimuths_deg`` the sources are placed by :func:`place_sources` from the mix's seed.
    """

    room: tuple[float, ...]
    rt60: float
    n_mics: int
    spacing: float
    centre: tuple[float, ...] | None = None
    positions: tuple[tuple[float, ...], ...] | None = None
    distances: tuple[float, ...] | None = None
    azimuths_deg: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PanSpec:
    """An anechoic stereo mixture as ``demix mix --pan`` asks for it (see :func:`pan_images`)."""

    pans_deg: tuple[float, ...]
    delays: tuple[int, ...] | None = None


def spatial_images(
    sources: np.ndarray, sample_rate: int, spec: RoomSpec | PanSpec, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Images ``(n_sources, n_mics, n_samples)`` for ``spec`` and the facts the manifest records.

    The facts hold ``kind`` (``"room"`` or ``"pan"``), the geometry or pans, and ``per_source``:
    one entry per source, in the order of the sources.
    """
    n_src = sources.shape[0]
    if isinstance(spec, PanSpec):
        images = pan_images(sources, spec.pans_deg, spec.delays)
        delays = spec.delays or (0,) * n_src
        per_source = [
            {"pan_deg": p, "delay_samples": int(d)} for p, d in zip(spec.pans_deg, delays, strict=True)
        ]
        return images, {"kind": "pan", "per_source": per_source}
    dims = _room(spec.room)
    centre = np.asarray(spec.centre if spec.centre is not None else dims / 2, dtype=float)
    mics = linear_array(spec.n_mics, spec.spacing, centre.tolist())
    if spec.positions is not None:
        positions, placement = np.asarray(spec.positions, dtype=float).T, "given positions"
        if positions.shape != (3, n_src):
            raise ParameterError(
                f"--positions needs {n_src} points x,y,z (one per source), got {len(spec.positions)}"
            )
    elif spec.distances is not None or spec.azimuths_deg is not None:
        if spec.distances is None or spec.azimuths_deg is None or len(spec.distances) != n_src:
            raise ParameterError(f"--distances and --azimuths need one value per source ({n_src}) each")
        positions = polar_positions(spec.distances, spec.azimuths_deg, centre.tolist())
        placement = "given distances and azimuths"
    else:
        positions, placement = place_sources(n_src, centre.tolist(), dims.tolist(), rng), "seeded"
    result = room_images(
        sources, sample_rate, room=dims.tolist(), rt60=spec.rt60, mics=mics, positions=positions
    )
    offsets = positions - centre[:, None]
    per_source = [
        {
            "position": positions[:, k].round(4).tolist(),
            "distance_m": round(float(np.linalg.norm(offsets[:, k])), 4),
            "azimuth_deg": round(float(np.degrees(np.arctan2(offsets[1, k], offsets[0, k]))), 2),
            "direct_delay_samples": result.direct_delays[k].round(3).tolist(),
        }
        for k in range(n_src)
    ]
    facts = {
        "kind": "room",
        "room": {"size": dims.tolist(), **result.facts()},
        "array": {
            "kind": "linear, along x",
            "centre": centre.tolist(),
            "spacing_m": spec.spacing,
            "microphones": mics.T.round(4).tolist(),
        },
        "placement": placement,
        "per_source": per_source,
    }
    return result.images, facts


def linear_array(n_mics: int, spacing: float, centre: Sequence[float]) -> np.ndarray:
    """Positions ``(3, n_mics)`` of a uniform linear array along x, centred on ``centre``.

    Microphone 0 is the one with the smallest x.
    """
    if n_mics < 1:
        raise ParameterError(f"--channels must be ≥ 1 microphone, got {n_mics}")
    if not np.isfinite(spacing) or spacing <= 0:
        raise ParameterError(f"--mic-spacing must be a positive number of metres, got {spacing}")
    c = _point(centre, "--array-centre")
    mics = np.repeat(c[:, None], n_mics, axis=1)
    mics[0] += (np.arange(n_mics) - (n_mics - 1) / 2) * spacing
    return mics


def polar_positions(
    distances: Sequence[float], azimuths_deg: Sequence[float], centre: Sequence[float]
) -> np.ndarray:
    """Positions ``(3, n)`` at ``distances`` metres and ``azimuths_deg`` from ``centre``.

    Azimuth is measured in the horizontal plane from the array axis (+x) towards +y; sources are
    at the height of ``centre``.
    """
    if len(distances) != len(azimuths_deg):
        raise ParameterError(
            f"--distances has {len(distances)} value(s) but --azimuths has {len(azimuths_deg)}"
        )
    d = np.asarray(distances, dtype=float)
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ParameterError(f"--distances must be positive metres, got {list(distances)}")
    phi = np.deg2rad(np.asarray(azimuths_deg, dtype=float))
    c = _point(centre, "--array-centre")
    return np.stack([c[0] + d * np.cos(phi), c[1] + d * np.sin(phi), np.full(len(d), c[2])])


def place_sources(
    n_sources: int,
    centre: Sequence[float],
    room: Sequence[float],
    rng: np.random.Generator,
    *,
    min_distance: float = 1.0,
    max_distance: float = 2.0,
    min_separation_deg: float = 30.0,
) -> np.ndarray:
    """Seeded source positions ``(3, n_sources)`` around an array centre.

    The rule: azimuths lie in the half-plane in front of the array, ``[0°, 180°]`` from the array
    axis (+x) towards +y, because a linear array cannot tell front from back; they are drawn
    uniformly among the configurations whose sorted neighbours are at least ``min_separation_deg``
    apart (uniform gaps plus the minimum), then shuffled. Distances are uniform in
    ``[min_distance, max_distance]``; sources are at the array's height and keep
    ``WALL_MARGIN`` metres from every wall (a configuration that does not is drawn again).
    """
    dims = _room(room)
    c = _point(centre, "--array-centre")
    if n_sources < 1:
        raise ParameterError(f"need at least one source to place, got {n_sources}")
    span = 180.0 - (n_sources - 1) * min_separation_deg
    if span < 0:
        raise ParameterError(
            f"{n_sources} sources cannot be {min_separation_deg:g}° apart within 180° in front of a "
            "linear array; give --positions or --azimuths"
        )
    if not 0 < min_distance <= max_distance:
        raise ParameterError(f"distances must satisfy 0 < min ≤ max, got {min_distance}, {max_distance}")
    for _ in range(1000):
        offsets = np.sort(rng.uniform(0.0, span, size=n_sources))
        azimuths = rng.permutation(offsets + np.arange(n_sources) * min_separation_deg)
        distances = rng.uniform(min_distance, max_distance, size=n_sources)
        positions = polar_positions(distances.tolist(), azimuths.tolist(), c.tolist())
        if _inside(positions, dims, WALL_MARGIN):
            return positions
    raise ParameterError(
        f"cannot place {n_sources} sources {min_distance:g}–{max_distance:g} m from the array at "
        f"{c.tolist()} and {WALL_MARGIN} m from the walls of a {dims.tolist()} m room; "
        "use a larger --room, move --array-centre, or give --positions"
    )


def room_images(
    sources: np.ndarray,
    sample_rate: int,
    *,
    room: Sequence[float],
    rt60: float,
    mics: np.ndarray,
    positions: np.ndarray,
) -> RoomMix:
    """Simulate ``sources`` in a shoebox room and return each source's image at every microphone.

    Parameters
    ----------
    sources : ndarray, (n_sources, n_samples)
    sample_rate : int
    room : (3,) floats
        Width, length and height in metres.
    rt60 : float
        Reverberation time to reach, in seconds. Inverse Sabine gives the starting wall absorption
        and the reflection order; the image-source responses then decay more slowly than Sabine's
        formula says (measured 0.78–0.81 s for 0.6 s in a 6 × 5 × 3 m room), so the absorption is
        corrected from the RT60 measured on one probe response (first source, every microphone),
        ``α ← α · measured / requested`` (Sabine's RT60 ∝ 1/α; later steps fit the exponent), until
        within 4 %.
    mics : ndarray, (3, n_mics)
    positions : ndarray, (3, n_sources)

    Returns
    -------
    RoomMix
        ``images[k, m]`` is source ``k`` convolved with its response at microphone ``m``, from the
        moment of emission (propagation delay kept), cut to ``n_samples``.

    References
    ----------
    J. B. Allen and D. A. Berkley, "Image method for efficiently simulating small-room acoustics",
    J. Acoust. Soc. Am. 65(4), 1979. R. Scheibler, E. Bezzam and I. Dokmanić, "Pyroomacoustics: a
    Python package for audio room simulations and array processing algorithms", ICASSP 2018.
    """
    from scipy.signal import fftconvolve  # scipy.signal takes a second to import: only when simulating

    pra = _pyroomacoustics()
    dims = _room(room)
    S = np.atleast_2d(np.asarray(sources, dtype=float))
    mics = np.asarray(mics, dtype=float)
    positions = np.asarray(positions, dtype=float)
    if positions.shape != (3, S.shape[0]):
        raise ParameterError(
            f"{S.shape[0]} source(s) need positions of shape (3, {S.shape[0]}), got {positions.shape}"
        )
    if mics.ndim != 2 or mics.shape[0] != 3:
        raise ParameterError(f"microphone positions must be (3, n_mics), got {mics.shape}")
    for name, pts in (("source", positions), ("microphone", mics)):
        if not _inside(pts, dims, 0.0):
            raise ParameterError(
                f"every {name} must be inside the {dims.tolist()} m room, got {pts.T.round(3).tolist()}"
            )
    if not np.isfinite(rt60) or rt60 <= 0:
        raise ParameterError(f"--rt60 must be a positive number of seconds, got {rt60}")
    try:
        alpha0, max_order = pra.inverse_sabine(rt60, dims.tolist())
    except ValueError:
        raise ParameterError(
            f"--rt60 {rt60} s is too short for a {dims.tolist()} m room (walls would absorb more than "
            "everything); ask for a longer RT60 or a smaller room"
        ) from None

    def simulate(alpha: float, pos: np.ndarray) -> list[list[np.ndarray]]:
        """Room responses ``[source][microphone]``, from the moment of emission."""
        shoebox = pra.ShoeBox(
            dims.tolist(), fs=sample_rate, materials=pra.Material(alpha), max_order=max_order
        )
        for p in pos.T:
            shoebox.add_source(p.tolist())
        shoebox.add_microphone_array(mics)
        shoebox.compute_rir()
        offset = pra.constants.get("frac_delay_length") // 2  # the fractional-delay filter's delay
        return [
            [np.asarray(shoebox.rir[m][k])[offset:] for m in range(mics.shape[1])]
            for k in range(pos.shape[1])
        ]

    def measure(responses: list[list[np.ndarray]]) -> float:
        rt = [
            pra.experimental.measure_rt60(h, fs=sample_rate) for per_source in responses for h in per_source
        ]
        return float(np.median(rt))

    # The probe is source 0 alone; its responses at the calibrated absorption are kept.
    alpha, steps, responses = _calibrate(lambda a: simulate(a, positions[:, :1]), measure, alpha0, rt60)
    if S.shape[0] > 1:
        responses += simulate(alpha, positions[:, 1:])
    n = S.shape[1]
    images = np.zeros((S.shape[0], mics.shape[1], n))
    for k, per_source in enumerate(responses):
        for m, h in enumerate(per_source):
            images[k, m] = fftconvolve(S[k], h)[:n]
    distances = np.linalg.norm(positions[:, :, None] - mics[:, None, :], axis=0)
    return RoomMix(
        images=images,
        rt60_requested=float(rt60),
        rt60_measured=measure(responses),
        absorption=float(alpha),
        absorption_sabine=float(alpha0),
        max_order=int(max_order),
        calibration_steps=steps,
        direct_delays=distances / pra.constants.get("c") * sample_rate,
    )


def pan_images(
    sources: np.ndarray, pans_deg: Sequence[float], delays: Sequence[int] | None = None
) -> np.ndarray:
    """Anechoic stereo images ``(n_sources, 2, n_samples)`` by amplitude panning and delays.

    Source ``k`` with pan ``θ`` and delay ``d`` (samples) gives, with ``s[t] = 0`` for ``t < 0``::

        image[k, 0, t] = cos θ · s_k[t − max(0, −d)]
        image[k, 1, t] = sin θ · s_k[t − max(0, d)]

    so ``θ = 0°`` is channel 0 only, ``90°`` channel 1 only, and channel 1 hears the source ``d``
    samples after channel 0 (before it when ``d < 0``); the later channel is the delayed one, so
    nothing is heard before the source starts, and the end is cut to ``n_samples``.
    """
    S = np.atleast_2d(np.asarray(sources, dtype=float))
    n_src, n = S.shape
    pans = np.asarray(pans_deg, dtype=float)
    if pans.shape != (n_src,):
        raise ParameterError(f"--pan needs one angle per source ({n_src}), got {len(pans)}")
    if not np.all(np.isfinite(pans)) or np.any((pans < 0) | (pans > 90)):
        raise ParameterError(f"--pan angles must be between 0 and 90 degrees, got {pans.tolist()}")
    lags = np.zeros(n_src, dtype=int) if delays is None else np.asarray(delays)
    if lags.shape != (n_src,):
        raise ParameterError(f"--delays needs one integer per source ({n_src}), got {len(lags)}")
    if not np.all(lags == np.round(lags)) or np.any(np.abs(lags) >= n):
        raise ParameterError(
            f"--delays must be whole samples shorter than the signal ({n}), got {lags.tolist()}"
        )
    theta = np.deg2rad(pans)
    images = np.zeros((n_src, 2, n))
    for k in range(n_src):
        d = int(lags[k])
        for ch, (gain, lag) in enumerate(((np.cos(theta[k]), max(0, -d)), (np.sin(theta[k]), max(0, d)))):
            images[k, ch, lag:] = gain * S[k, : n - lag]
    return images


def _calibrate(
    simulate: Callable[[float], list[list[np.ndarray]]],
    measure: Callable[[list[list[np.ndarray]]], float],
    alpha: float,
    rt60: float,
) -> tuple[float, int, list[list[np.ndarray]]]:
    """Absorption whose measured RT60 is within ``RT60_TOLERANCE`` of ``rt60``, steps, responses.

    Modelled as ``RT60 ∝ α^(-p)``: the first step takes Sabine's ``p = 1``, later steps the ``p``
    of the last two measurements (a secant in log-log), so two or three simulations suffice.
    """
    history: list[tuple[float, float]] = []
    for step in range(1, RT60_MAX_STEPS + 1):
        responses = simulate(alpha)
        measured = measure(responses)
        if abs(measured / rt60 - 1) <= RT60_TOLERANCE or step == RT60_MAX_STEPS:
            break
        history.append((alpha, measured))
        p = 1.0
        if len(history) > 1:
            (a1, r1), (a2, r2) = history[-2:]
            with np.errstate(divide="ignore", invalid="ignore"):
                fitted = np.log(r1 / r2) / np.log(a2 / a1)
            p = float(fitted) if np.isfinite(fitted) and 0.2 < fitted < 5 else 1.0
        alpha = min(1.0, alpha * (measured / rt60) ** (1.0 / p))
    return alpha, step, responses


def _pyroomacoustics() -> Any:
    try:
        import pyroomacoustics
    except ImportError:
        raise ParameterError(
            f"room simulation needs pyroomacoustics, the optional extra: {_INSTALL_HINT}"
        ) from None
    return pyroomacoustics


def _room(room: Sequence[float]) -> np.ndarray:
    dims = np.asarray(room, dtype=float)
    if dims.shape != (3,) or not np.all(np.isfinite(dims)) or np.any(dims <= 0):
        raise ParameterError(f"--room must be three positive sizes W,L,H in metres, got {list(room)}")
    return dims


def _point(point: Sequence[float], name: str) -> np.ndarray:
    p = np.asarray(point, dtype=float)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ParameterError(f"{name} must be three coordinates x,y,z in metres, got {list(point)}")
    return p


def _inside(points: np.ndarray, dims: np.ndarray, margin: float) -> bool:
    return bool(np.all(points > margin) and np.all(points < dims[:, None] - margin))
