"""The manifest (strict JSON, records, reading) and NMF bases files (plain data, settings pinned)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from demix.bases import SupervisedParams, check_settings, load_bases, parse_bases_specs, save_bases
from demix.errors import ParameterError
from demix.manifest import clean, input_record, new_manifest, output_record, read_manifest
from demix.types import Signal
from tests.conftest import write_wav


def test_clean_makes_strict_json() -> None:
    value = {
        "a": np.float32(1.5),
        "b": [np.int64(3), (1, 2)],
        "c": float("nan"),
        "d": np.array([[1.0, np.inf]]),
        "e": Path("x/y.wav"),
        1: None,
    }
    cleaned = clean(value)
    assert cleaned == {"a": 1.5, "b": [3, [1, 2]], "c": None, "d": [[1.0, None]], "e": "x/y.wav", "1": None}
    json.dumps(cleaned, allow_nan=False)


def test_records_describe_inputs_and_outputs(tmp_path: Path) -> None:
    data = np.stack([np.linspace(-0.5, 0.5, 800), np.zeros(800)])
    path = write_wav(tmp_path / "in.wav", data, rate=8000)
    record = input_record(path, Signal(data, 8000))
    assert record["channels"] == 2 and record["frames"] == 800 and record["sample_rate"] == 8000
    assert len(record["sha256"]) == 64
    out = output_record("s.wav", "source", data[0], label="x")
    assert out["peak"] == pytest.approx(0.5) and out["rms"] == pytest.approx(
        math.sqrt(np.mean(data[0] ** 2)), 1e-5
    )
    assert out["label"] == "x" and out["role"] == "source"
    head = new_manifest("ica", {"seed": 1})
    assert head["command"] == "ica" and head["params"] == {"seed": 1} and head["demix_version"]


def test_read_manifest_refuses_missing_broken_and_foreign(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"no demix\.json"):
        read_manifest(tmp_path)
    (tmp_path / "demix.json").write_text("{broken")
    with pytest.raises(ParameterError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "demix.json").write_text('{"hello": 1}')
    with pytest.raises(ParameterError, match="not a demix manifest"):
        read_manifest(tmp_path)
    (tmp_path / "demix.json").write_text('{"command": "ica"}')
    assert read_manifest(tmp_path) == {"command": "ica"}


def test_bases_files_round_trip_and_pin_their_settings(tmp_path: Path) -> None:
    W = np.abs(np.random.default_rng(0).standard_normal((1025, 4)))
    path = tmp_path / "b.npz"
    settings = {"n_fft": 2048, "hop": 512, "beta": 1.0, "sample_rate": 16000}
    save_bases(path, W, settings, force=False)
    loaded = load_bases(path)
    np.testing.assert_allclose(loaded.W, W, rtol=1e-6)  # stored as float32
    assert loaded.metadata["format"] == "demix-nmf-bases" and loaded.metadata["hop"] == 512
    check_settings(path, loaded, settings)
    with pytest.raises(ParameterError, match="hop=512 but this run uses hop=256"):
        check_settings(path, loaded, {**settings, "hop": 256})
    with pytest.raises(ParameterError, match="--force"):
        save_bases(path, W, settings, force=False)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: np.savez(p, W=np.array([object()], dtype=object)), "not a demix bases file"),
        (lambda p: np.save(p.open("wb"), np.ones(3)), "not a demix bases file"),
        (lambda p: p.write_bytes(b""), "not a demix bases file"),
        (
            lambda p: np.savez(p, W=-np.ones((3, 2)), metadata=np.array('{"format": "demix-nmf-bases"}')),
            "non-negative",
        ),
        (lambda p: np.savez(p, W=np.ones((3, 2)), metadata=np.array('{"format": "other"}')), "format"),
    ],
)
def test_bad_bases_files_are_one_clear_refusal(tmp_path: Path, write, message: str) -> None:
    path = tmp_path / "x.npz"
    write(path)
    with pytest.raises(ParameterError, match=message):
        load_bases(path)


def test_supervised_parameters_check_labels() -> None:
    assert parse_bases_specs(["voice=v.npz", "drums=d.npz"]) == {"voice": "v.npz", "drums": "d.npz"}
    with pytest.raises(ParameterError, match="LABEL=FILE"):
        parse_bases_specs(["v.npz"])
    with pytest.raises(ParameterError, match="given twice"):
        parse_bases_specs(["a=1.npz", "a=2.npz"])
    with pytest.raises(ParameterError, match="file-safe"):
        SupervisedParams(bases={"../evil": "x.npz"})
    with pytest.raises(ParameterError, match="'residual'"):
        SupervisedParams(bases={"residual": "x.npz"}, free=1)
    with pytest.raises(ParameterError, match="at least one"):
        SupervisedParams()
