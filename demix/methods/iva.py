r"""Independent vector analysis in the STFT domain: convolutive (reverberant) mixtures.

In a room every microphone hears each source through its own impulse response, so the mixture is
a convolution, not the instantaneous ``x = A s`` of time-domain ICA (which gains about 1 dB SDR on
a reverberant two-speaker recording). With frames longer than most of the reverberation, the
convolution becomes one mixing matrix per frequency, ``x_fn ≈ A_f s_fn``, and separation is one
complex ICA per frequency. Solved independently, each frequency would return its sources in its
own order; IVA [1]_ avoids that by modelling each source as a *vector* over all frequencies that
share one activity in time, so the frequencies of a source stay together.

The models (``model``), all fitted by auxiliary-function updates (:mod:`demix.methods.auxiva`):

* ``laplace``: AuxIVA [2]_ with the spherical Laplace prior ``p(y_k) ∝ exp(-‖y_kn‖)``; weights
  ``1/r_kn``, ``r_kn² = Σ_f |y_kfn|²``.
* ``gauss``: AuxIVA with a time-varying Gaussian prior (variance ``r_kn² / F``); weights ``1/r_kn²``.
* ``nmf``: ILRMA [3]_: the variance of ``y_kfn`` is a low-rank non-negative matrix factorisation
  ``Σ_l t_kfl v_kln`` per source, which ties frequencies together through shared spectral shapes
  rather than one shared envelope (:mod:`demix.methods.ilrma`).

Steps:

1. STFT of every channel (:func:`demix.spectral.stft`).
2. Per frequency, PCA whitening ``z_fn = D_f^{-1/2} E_f^H x_fn`` on the ``n_sources`` leading
   eigenpairs of the channel covariance. This is how fewer sources than microphones are handled:
   the weakest ``M - K`` principal directions (noise and reverberation, at every frequency) are
   dropped before separating; it also makes every frequency equally well conditioned, so the
   low frequencies, whose covariances are nearly singular with closely spaced microphones, do not
   drift (everything is float64).
3. The model's iterations from ``W_f = I`` on the whitened data.
4. Projection back (minimal distortion principle, Matsuoka [4]_): the mixing estimate
   ``A_f = E_f D_f^{1/2} W_f^{-1}`` (the least-squares fit of ``x`` by ``A_f y``) scales each
   source's spectrum as a microphone hears it: the image of source ``k`` at microphone ``m`` is
   ``A_f[m, k] y_kfn``. Images of all sources sum to the mixture (to its ``K``-dimensional
   principal part when ``K < M``).

References
----------
.. [1] T. Kim, H. T. Attias, S.-Y. Lee, T.-W. Lee, "Blind source separation exploiting
   higher-order frequency dependencies", IEEE Trans. ASLP 15(1), 70-79, 2007.
.. [2] N. Ono, "Stable and fast update rules for independent vector analysis based on auxiliary
   function technique", IEEE WASPAA 2011, 189-192.
.. [3] D. Kitamura, N. Ono, H. Sawada, H. Kameoka, H. Saruwatari, "Determined blind source
   separation unifying independent vector analysis and nonnegative matrix factorization",
   IEEE/ACM Trans. ASLP 24(9), 1626-1641, 2016.
.. [4] K. Matsuoka, S. Nakashima, "Minimal distortion principle for blind source separation",
   ICA 2001, 722-727.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from demix import checks
from demix.errors import ParameterError
from demix.methods.auxiva import Fit, Products, fit_spherical, inverse
from demix.methods.ilrma import fit_ilrma
from demix.spectral import istft, stft
from demix.types import Callback, IterInfo, Separation

__all__ = ["MODELS", "IVAParams", "IVAResult", "default_n_fft", "iva", "separate"]

Model = Literal["nmf", "laplace", "gauss"]
Update = Literal["ip2", "ip"]
MODELS: tuple[str, ...] = ("nmf", "laplace", "gauss")
UPDATES: tuple[str, ...] = ("ip2", "ip")

#: Frame length that :func:`default_n_fft` aims at: long enough to hold most of a room's
#: reverberation (the per-frequency model needs it), short enough for speech to vary between
#: frames. Measured on 2 x 2 rooms at 16 kHz: 4096 points beat 2048 by 3 dB and 8192 by 0.5-3 dB.
FRAME_SECONDS = 0.256
#: Iterations by model: ILRMA gains about 0.5 dB from 30 to 40 and little after; the spherical
#: models change by less than 0.2 dB after 30 (2 x 2 and 3 x 3 rooms, ``benchmarks/bench_iva.py``).
DEFAULT_MAX_ITER = {"nmf": 40, "laplace": 30, "gauss": 30}
#: Change of the objective per frequency and source (nats) below which iterations stop.
DEFAULT_TOL = 1e-4


def default_n_fft(sample_rate: int) -> int:
    """The power of two nearest to :data:`FRAME_SECONDS` at ``sample_rate`` (4096 at 16 kHz)."""
    return int(2 ** round(math.log2(FRAME_SECONDS * sample_rate)))


@dataclass(frozen=True)
class IVAParams:
    """Parameters of :func:`iva` (``demix iva``), validated on construction.

    Attributes
    ----------
    sources : int or None
        Sources to separate, at most the channels (``-n/--sources``); None: one per channel.
    model : {"nmf", "laplace", "gauss"}
        Source model (``--model``, see the module docstring).
    n_fft, hop : int or None
        STFT frame and hop in samples (``--n-fft``, ``--hop``); None: :func:`default_n_fft` and a
        quarter of the frame.
    max_iter : int or None
        Iteration limit (``--max-iter``); None: :data:`DEFAULT_MAX_ITER` of the model.
    tol : float
        Change of the objective per frequency and source that stops iterating (``--tol``).
    n_basis : int
        NMF bases per source, ``nmf`` only (``--basis``).
    update : {"ip2", "ip"}
        Demixing update (``--update``): pairwise or one row at a time.
    seed : int
        Seeds the NMF initialisation (``--seed``); the other models are deterministic.
    """

    sources: int | None = None
    model: str = "nmf"
    n_fft: int | None = None
    hop: int | None = None
    max_iter: int | None = None
    tol: float = DEFAULT_TOL
    n_basis: int = 4
    update: str = "ip2"
    seed: int = 0

    def __post_init__(self) -> None:
        checks.optional_integer("-n/--sources", self.sources, low=1)
        checks.choice("--model", self.model, MODELS)
        checks.choice("--update", self.update, UPDATES)
        n_fft = checks.optional_integer("--n-fft", self.n_fft, low=16, high=1 << 16)
        high = None if n_fft is None else n_fft // 2
        checks.optional_integer("--hop", self.hop, low=1, high=high)
        checks.optional_integer("--max-iter", self.max_iter, low=1)
        checks.number("--tol", self.tol, low=0.0)
        checks.integer("--basis", self.n_basis, low=1, high=256)
        checks.integer("--seed", self.seed, low=0)

    def frame(self, sample_rate: int) -> tuple[int, int]:
        """``(n_fft, hop)`` with the defaults resolved for ``sample_rate``."""
        n_fft = self.n_fft if self.n_fft is not None else default_n_fft(sample_rate)
        hop = self.hop if self.hop is not None else n_fft // 4
        if hop > n_fft // 2:
            raise ParameterError(
                f"--hop {hop} is invalid; expected at most half of --n-fft {n_fft} for a perfect resynthesis"
            )
        return n_fft, hop

    @property
    def iterations(self) -> int:
        return self.max_iter if self.max_iter is not None else DEFAULT_MAX_ITER[self.model]


@dataclass(frozen=True)
class IVAResult:
    """What :func:`iva` returns.

    Attributes
    ----------
    images : ndarray, (n_sources, n_channels, n_samples)
        Each source as heard at every microphone (projection back), loudest at ``ref_channel``
        first; they sum to the mixture when ``n_sources == n_channels``.
    demixing : ndarray, (F, n_sources, n_channels) complex
        ``W_f`` acting on the mixture's STFT frames (whitening folded in), rows in image order.
    mixing : ndarray, (F, n_channels, n_sources) complex
        ``A_f`` after projection back: ``images[k, m]`` has STFT ``A_f[m, k] (W_f x_fn)_k``, and
        ``W_f A_f = I``.
    n_iter, converged, final_change
        Iterations run, whether the objective's change per frequency and source fell below
        ``tol``, and that change at the end.
    objective : list of float
        The model's negative log-likelihood per frame (up to a constant) after every iteration;
        it never increases.
    power_share : ndarray, (n_sources,)
        Each source's share of the energy of all images at ``ref_channel``.
    n_fft, hop, model, update : the settings used (defaults resolved).
    """

    images: np.ndarray
    demixing: np.ndarray
    mixing: np.ndarray
    n_iter: int
    converged: bool
    final_change: float
    objective: list[float]
    power_share: np.ndarray
    n_fft: int
    hop: int
    model: str
    update: str


def iva(
    X: np.ndarray,
    sample_rate: int,
    *,
    n_sources: int | None = None,
    model: Model = "nmf",
    n_fft: int | None = None,
    hop: int | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    n_basis: int = 4,
    update: Update = "ip2",
    seed: int = 0,
    ref_channel: int = 0,
    callback: Callback | None = None,
) -> IVAResult:
    """Separate a convolutive (reverberant) mixture by frequency-domain IVA.

    Parameters
    ----------
    X : ndarray, (n_channels, n_samples)
        The mixture, at least two channels.
    sample_rate : int
        In Hz; sets the default frame length.
    n_sources : int, optional
        Sources to separate, 1 to ``n_channels``; fewer than the channels by PCA per frequency
        (module docstring). None: one per channel.
    model : {"nmf", "laplace", "gauss"}
        Source model (module docstring). ``nmf`` (ILRMA) is the default: the best on the rooms
        measured (``benchmarks/bench_iva.py``).
    n_fft, hop : int, optional
        STFT frame and hop in samples; default the power of two nearest to 256 ms, and a quarter
        of it. Frames should be longer than most of the reverberation; ``hop ≤ n_fft // 2``.
    max_iter : int, optional
        Most iterations (default by model: :data:`DEFAULT_MAX_ITER`).
    tol : float, optional
        Stop once the objective changes by less than this per frequency and source (default
        :data:`DEFAULT_TOL`); 0 runs all ``max_iter``.
    n_basis : int
        NMF bases per source (``nmf`` only).
    update : {"ip2", "ip"}
        Demixing update: pairwise iterative projection (default; with two sources the exact
        minimiser for given weights; with three, the one that converges) or one row at a time.
    seed : int
        Seeds the random NMF initialisation (``nmf``); the other models are deterministic.
    ref_channel : int
        Microphone by whose energy the sources are ordered and ``power_share`` is measured.
    callback : callable, optional
        Called with :class:`~demix.types.IterInfo` once per iteration.

    Returns
    -------
    IVAResult

    Raises
    ------
    ParameterError
        Fewer than two channels, too short for one frame, non-finite values, or a parameter out of
        range (messages name the CLI options ``-n/--sources``, ``--n-fft``, ``--hop``, ``--max-iter``).
    """
    params = IVAParams(
        sources=n_sources,
        model=model,
        n_fft=n_fft,
        hop=hop,
        max_iter=max_iter,
        tol=DEFAULT_TOL if tol is None else tol,
        n_basis=n_basis,
        update=update,
        seed=seed,
    )
    return _fit(X, sample_rate, params, ref_channel, callback)


def separate(
    X: np.ndarray, sample_rate: int, params: IVAParams, callback: Callback | None = None
) -> Separation:
    """The registry's runner: :func:`iva` as a :class:`~demix.types.Separation` of source images.

    Images are ordered loudest at microphone 0 first. Per-source facts: ``power_share`` (share of
    the images' energy at microphone 0). Diagnostics: the resolved ``n_fft``, ``hop``,
    ``max_iter``, the ``model``, ``update``, the objective at the first and last iteration.
    """
    res = _fit(X, sample_rate, params, 0, callback)
    diagnostics: dict[str, Any] = {
        "model": res.model,
        "update": res.update,
        "n_fft": res.n_fft,
        "hop": res.hop,
        "max_iter": params.iterations,
        "objective_first": res.objective[0] if res.objective else None,
        "objective_last": res.objective[-1] if res.objective else None,
    }
    if params.model == "nmf":
        diagnostics["n_basis"] = params.n_basis
    facts = tuple({"power_share": round(float(p), 6)} for p in res.power_share)
    return Separation(
        sources=res.images,
        layout="images",
        model=None,
        n_iter=res.n_iter,
        converged=res.converged,
        final_change=res.final_change,
        facts=facts,
        diagnostics=diagnostics,
    )


def _fit(
    X: np.ndarray, sample_rate: int, params: IVAParams, ref_channel: int, callback: Callback | None
) -> IVAResult:
    """:func:`iva` with BLAS held to one thread.

    Every product here is small (a few rows, or a stack of 2 × 2 to 3 × 3 matrices): OpenBLAS's
    threads cost more in hand-overs than they gain, and on a busy machine they spin-wait for each
    other (measured: 2.3 s on one thread against 20 s with the default threads, 8 s of 2 × 2).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_one_thread(X, sample_rate, params, ref_channel, callback)


def _fit_one_thread(
    X: np.ndarray, sample_rate: int, params: IVAParams, ref_channel: int, callback: Callback | None
) -> IVAResult:
    checks.integer("sample rate", sample_rate, low=1)
    n_fft, hop = params.frame(sample_rate)
    X = _check_input(X, params, n_fft, ref_channel)
    n_ch, n_samples = X.shape
    K = n_ch if params.sources is None else params.sources
    max_iter = params.iterations

    S = stft(X, n_fft, hop).transpose(1, 0, 2)  # (F, M, N)
    Z, E_K, d_K = _whiten(S, K)
    W = np.broadcast_to(np.eye(K, dtype=complex), (S.shape[0], K, K)).copy()

    def report(iteration: int, change: float) -> None:
        if callback is not None:
            callback(IterInfo(iteration=iteration, max_iter=max_iter, change=change))

    fit: Fit
    if params.model == "nmf":
        fit = fit_ilrma(
            Z,
            W,
            n_basis=params.n_basis,
            update=params.update,
            max_iter=max_iter,
            tol=params.tol,
            rng=np.random.default_rng(params.seed),
            report=report,
        )
    else:
        fit = fit_spherical(
            Products(Z),
            W,
            model=params.model,
            update=params.update,
            max_iter=max_iter,
            tol=params.tol,
            report=report,
        )
    W = fit.W
    Y = W @ Z  # (F, K, N)
    A = (E_K * np.sqrt(d_K)[:, None, :]) @ inverse(W)  # (F, M, K)
    demixing = W @ (E_K.conj().transpose(0, 2, 1) / np.sqrt(d_K)[:, :, None])  # (F, K, M)
    spectra = A.transpose(2, 1, 0)[:, :, :, None] * Y.transpose(1, 0, 2)[:, None, :, :]  # (K, M, F, N)
    images = istft(spectra, n_fft, hop, n_samples)

    energy = np.einsum("kn,kn->k", images[:, ref_channel], images[:, ref_channel])
    order = np.argsort(-energy, kind="stable")
    share = energy[order] / max(float(energy.sum()), np.finfo(float).tiny)
    return IVAResult(
        images=images[order],
        demixing=demixing[:, order],
        mixing=A[:, :, order],
        n_iter=fit.n_iter,
        converged=fit.converged,
        final_change=fit.change,
        objective=fit.objective,
        power_share=share,
        n_fft=n_fft,
        hop=hop,
        model=params.model,
        update=params.update,
    )


def _whiten(S: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frequency PCA whitening of ``S`` ``(F, M, N)`` onto ``K`` components.

    Returns ``Z`` ``(F, K, N)``, eigenvectors ``E_K`` ``(F, M, K)`` and eigenvalues ``d_K``
    ``(F, K)``, strongest first. Eigenvalues are floored at 1e-12 of the largest at any
    frequency, so silent frequencies stay finite (their ``Z`` is then small, not unit).
    """
    N = S.shape[-1]
    C = S @ S.conj().transpose(0, 2, 1) / N
    d, E = _eigh_2x2(C) if C.shape[-1] == 2 else np.linalg.eigh(C)
    d, E = d[:, ::-1][:, :K], E[:, :, ::-1][:, :, :K]
    d = np.maximum(d, 1e-12 * max(float(d.max()), np.finfo(float).tiny))
    Z = (E.conj().transpose(0, 2, 1) @ S) / np.sqrt(d)[:, :, None]
    return Z, E, d


def _eigh_2x2(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` of Hermitian 2 × 2 stacks ``(F, 2, 2)`` in closed form (ascending)."""
    a, c, b = C[:, 0, 0].real, C[:, 1, 1].real, C[:, 0, 1]
    half = 0.5 * (a - c)
    root = np.sqrt(half**2 + np.abs(b) ** 2)
    top = 0.5 * (a + c) + root
    # Eigenvector of the larger eigenvalue from whichever row of C - top I is better conditioned.
    v0 = np.stack([b, (top - a).astype(complex)], axis=-1)
    v1 = np.stack([(top - c).astype(complex), b.conj()], axis=-1)
    n0, n1 = np.linalg.norm(v0, axis=-1), np.linalg.norm(v1, axis=-1)
    v = np.where((n0 >= n1)[:, None], v0, v1)
    norm = np.maximum(n0, n1)
    v = np.where((norm > 0)[:, None], v / np.where(norm > 0, norm, 1.0)[:, None], np.array([1.0, 0.0]))
    E = np.stack([np.stack([-v[:, 1].conj(), v[:, 0].conj()], axis=-1), v], axis=-1)
    return np.stack([0.5 * (a + c) - root, top], axis=-1), E


def _check_input(X: np.ndarray, params: IVAParams, n_fft: int, ref_channel: int) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2 or np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ParameterError(
            f"mixture: expected a real 2-D array (n_channels, n_samples), got {arr.dtype} {arr.shape}"
        )
    n_ch, n_samples = arr.shape
    if n_ch < 2:
        raise ParameterError(
            f"iva needs at least 2 microphones, got {n_ch} channel; for a mono file try `demix nmf`"
        )
    if params.sources is not None and params.sources > n_ch:
        raise ParameterError(
            f"-n/--sources {params.sources} is more than the {n_ch} channels; "
            "iva separates at most one source per microphone (more sources: try `demix duet`)"
        )
    if not 0 <= ref_channel < n_ch:
        raise ParameterError(f"--ref-channel {ref_channel} is invalid; expected 0 to {n_ch - 1}")
    if n_samples < n_fft:
        raise ParameterError(
            f"--n-fft {n_fft} is longer than the mixture ({n_samples} samples); expected at most {n_samples}"
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ParameterError("mixture: contains NaN or infinite values")
    return arr
