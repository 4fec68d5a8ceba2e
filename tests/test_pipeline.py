"""The pipeline core: registry, jobs, and per-source facts that follow their files."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demix import registry
from demix.errors import ParameterError
from demix.jobs import Job, WriteOptions
from demix.methods.fastica import FastICAParams
from demix.methods.sobi import DecorrParams
from demix.pipeline import run_job, separate_batch
from demix.post import excess_kurtosis
from demix.types import Instantaneous, Separation
from tests.conftest import SAMPLE_AUDIO, write_wav

#: The test method's mixing: microphone 1 hears source 0 quietest, then 2, then 1.
_A = np.array([[1.0, 0.2, 0.3], [0.5, 2.0, 1.0], [0.1, 0.4, 1.5]])
#: The (arbitrary) order in which the test method returns the sources.
_METHOD_ORDER = [0, 2, 1]


@dataclasses.dataclass(frozen=True)
class _TagParams:
    """Parameters of a test method that returns the true sources, tagged, in its own order."""

    seed: int = 0


def _tagging_method(X: np.ndarray, sample_rate: int, params: _TagParams, callback: object) -> Separation:
    """Unmix ``X = _A @ S`` exactly and return the sources in ``_METHOD_ORDER``, each tagged."""
    W = np.linalg.inv(_A)[_METHOD_ORDER]
    return Separation(
        sources=W @ X,
        layout="mono",
        model=Instantaneous(mixing=_A[:, _METHOD_ORDER], unmixing=W),
        n_iter=1,
        converged=True,
        final_change=0.0,
        facts=tuple({"tag": f"true source {i}"} for i in _METHOD_ORDER),
        names=tuple(f"named_{i}" for i in _METHOD_ORDER),
        diagnostics={"run_level": 1},
    )


@pytest.fixture
def tagging(monkeypatch: pytest.MonkeyPatch) -> str:
    spec = registry.MethodSpec("tagging", "test", _TagParams, _tagging_method, "instantaneous", 6)
    monkeypatch.setitem(registry.METHODS, "tagging", spec)
    return "tagging"


def test_names_and_facts_follow_the_sources_into_their_final_order(tmp_path: Path, tagging: str) -> None:
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(3, 8000)) ** 3  # different kurtoses, so a file's kurtosis says which it is
    S /= np.sqrt(np.mean(S**2, axis=1, keepdims=True))
    X = write_wav(tmp_path / "x.wav", 0.1 * _A @ S)
    job = Job(
        "test", tagging, _TagParams(), X, tmp_path / "out", WriteOptions(subtype="FLOAT", ref_channel=1)
    )
    manifest = run_job(job)
    # Loudest first at microphone 1: sources 1 (gain 2.0), 2 (1.0), 0 (0.5).
    files = [o["file"] for o in manifest["outputs"]]
    assert files == ["named_1.wav", "named_2.wav", "named_0.wav"]
    for output in manifest["outputs"]:
        i = int(output["file"][len("named_") : -len(".wav")])
        written = sf.read(tmp_path / "out" / output["file"])[0]
        assert output["tag"] == f"true source {i}"
        assert output["kurtosis"] == pytest.approx(excess_kurtosis(written[None])[0], abs=1e-3)
        assert output["kurtosis"] == pytest.approx(excess_kurtosis(S[i][None])[0], abs=1e-3)
        assert np.corrcoef(written, S[i])[0, 1] > 0.9999
    assert [o["method_index"] for o in manifest["outputs"]] == [2, 1, 0]
    assert manifest["diagnostics"]["run_level"] == 1 and manifest["diagnostics"]["model_fit"]["fits"]
    assert manifest["params"] == {"method": "tagging", "seed": 0, "ref_channel": 1, "scale": "reference",
                                  "format": "wav", "subtype": "FLOAT", "sr": None}  # fmt: skip
    assert json.loads((tmp_path / "out" / "demix.json").read_text()) == manifest


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("fastica", FastICAParams()),
        ("decorr", DecorrParams(method="amuse", lags="3")),
        ("decorr", DecorrParams(method="lsq", lags="1-20")),
    ],
)
def test_facts_of_real_methods_follow_their_files(tmp_path: Path, method: str, params: object) -> None:
    """Each per-source fact in ``outputs[i]`` is re-measured on file ``i`` (fails if left in method order)."""
    voices = [sf.read(SAMPLE_AUDIO / f"voice_{i}.wav")[0][:48000] for i in (1, 2)]
    S = np.stack(voices)
    A = np.array([[1.0, 0.6], [0.3, 1.0]]) if method != "decorr" else np.array([[0.2, 1.0], [1.0, 0.4]])
    path = write_wav(tmp_path / "x.wav", A @ S * 0.5)
    options = WriteOptions(subtype="FLOAT", images=False)  # mono files: one kurtosis per file
    manifest = run_job(Job("t", method, params, path, tmp_path / "o", options))
    outputs = manifest["outputs"]
    assert sorted(o["method_index"] for o in outputs) == [0, 1]
    for output in outputs:
        written = sf.read(tmp_path / "o" / output["file"])[0]
        assert output["kurtosis"] == pytest.approx(excess_kurtosis(written[None])[0], abs=1e-3)
        if "autocorrelation" in output:  # AMUSE: the lag-3 autocorrelation of this very source
            w = written - written.mean()
            rho = float(w[3:] @ w[:-3]) / float(w @ w)
            assert output["autocorrelation"] == pytest.approx(rho, abs=2e-3)
        if "mixing_angle_deg" in output:  # LSQ: the direction of this source's mixing column
            column = np.asarray(manifest["model"]["mixing"])[:, outputs.index(output)]
            angle = np.degrees(np.arctan2(column[1], column[0])) % 180
            assert output["mixing_angle_deg"] == pytest.approx(angle, abs=1e-6)
    assert "kurtosis" not in manifest["diagnostics"]


def test_a_job_is_plain_data_that_pickles(tmp_path: Path) -> None:
    job = Job(
        "ica", "fastica", FastICAParams(sources=2, seed=3), tmp_path / "a.wav", tmp_path / "o", WriteOptions()
    )
    assert pickle.loads(pickle.dumps(job)) == job


def test_every_registered_method_has_validated_default_parameters() -> None:
    for name, spec in registry.METHODS.items():
        assert spec.name == name and spec.model in ("instantaneous", "none")
        if name != "nmf-supervised":  # needs --bases, so it has no default
            params = spec.params()
            assert dataclasses.is_dataclass(params) and json.dumps(dataclasses.asdict(params))
    with pytest.raises(ParameterError, match="unknown method 'nope'"):
        registry.method_spec("nope")


def test_parameter_messages_speak_cli_terms() -> None:
    cases = [
        (lambda: FastICAParams(max_iter=0), "--max-iter 0 is invalid; expected an integer ≥ 1"),
        (lambda: FastICAParams(tol=float("nan")), "--tol nan is invalid"),
        (lambda: DecorrParams(method="amuse", lags="1,2"), "--lags '1,2': amuse"),
        (lambda: DecorrParams(lags="5-2"), "--lags"),
    ]
    for make, message in cases:
        with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
            make()


def test_a_bad_input_in_a_batch_does_not_stop_the_others(tmp_path: Path) -> None:
    good = SAMPLE_AUDIO / "voice_1.wav"
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([sf.read(good)[0], np.roll(sf.read(good)[0], 7)]))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    options = WriteOptions()
    jobs = [
        Job("ica", "fastica", FastICAParams(), source, tmp_path / name, options)
        for source, name in ((broken, "b"), (stereo, "s"))
    ]
    result = separate_batch(jobs)
    assert [path for path, _ in result.failures] == [str(broken)]
    assert len(result.manifests) == 1 and (tmp_path / "s" / "demix.json").exists()
    assert not (tmp_path / "b").exists()


def test_history_is_recorded_and_plot_writes_listed_figures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from demix.plots import panel_count

    voices = np.stack([sf.read(SAMPLE_AUDIO / f"voice_{i}.wav")[0][:32000] for i in (1, 2)])
    path = write_wav(tmp_path / "x.wav", np.array([[0.7, 0.3], [0.2, 0.8]]) @ voices)
    options = WriteOptions(plot=True)
    manifest = run_job(Job("ica", "fastica", FastICAParams(), path, tmp_path / "o", options))
    history = manifest["convergence"]["history"]
    assert history["n_reports"] == manifest["convergence"]["n_iter"] == len(history["change"])
    figures = [o for o in manifest["outputs"] if o["role"] == "figure"]
    assert [f["file"] for f in figures] == ["spectrograms.png", "convergence.png"]
    # spectrograms: the mixture and both sources, one panel each
    assert panel_count((tmp_path / "o" / "spectrograms.png").read_bytes()) == 3
