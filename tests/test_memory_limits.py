"""--max-memory decides when a method streams its input from disk (every method can)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from demix import streaming
from demix.cli import app
from demix.jobs import Job, WriteOptions
from demix.registry import METHODS, method_spec
from tests.conftest import write_wav

runner = CliRunner()


def test_max_memory_makes_ica_stream_a_40_s_file(tmp_path: Path) -> None:
    S = np.random.default_rng(0).laplace(size=(2, 40 * 16000)) * 0.1
    path = write_wav(tmp_path / "x.wav", np.array([[0.8, 0.4], [0.3, 0.9]]) @ S)
    # 40 s stereo in float64 × 6 copies is 61 MB: above a 50 MB bound, below the 400 MB default
    for bound, streams in (("50", True), ("400", False)):
        out = tmp_path / f"o{bound}"
        result = runner.invoke(app, ["ica", str(path), "-o", str(out), "--max-memory", bound, "--json"])
        assert result.exit_code == 0, result.stderr
        manifest = json.loads(result.stdout)["runs"][0]
        assert ("streaming" in manifest) is streams
        if streams:
            assert manifest["streaming"]["memory_bound_mb"] == 50


def test_every_method_streams_an_input_beyond_the_bound(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", np.random.default_rng(1).standard_normal((2, 16000)) * 0.1)
    for name in METHODS:
        spec = method_spec(name)
        assert spec.stream is not None, name
        params = spec.params(**({"bases": {"a": "a.npz"}} if name == "nmf-supervised" else {}))
        job = Job(spec.command, name, params, path, tmp_path / "o", WriteOptions(max_memory_mb=0.5))
        # 16000 stereo samples x 8 bytes x its copies (6 to 32): 1.5-8 MB, beyond 0.5 MB
        assert streaming.plan_stream(spec, job) is not None, name
        small = Job(spec.command, name, job.params, path, tmp_path / "o", WriteOptions())
        assert streaming.plan_stream(spec, small) is None, name  # fits: runs in memory
