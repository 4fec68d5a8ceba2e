"""--max-memory decides when ica/decorr/nmf stream; methods that cannot stream refuse inputs too big."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from demix import streaming
from demix.cli import app
from demix.errors import ParameterError
from demix.jobs import Job, WriteOptions
from demix.methods.duet import DuetParams
from demix.registry import method_spec
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


def test_a_method_that_cannot_stream_refuses_what_memory_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_wav(tmp_path / "x.wav", np.random.default_rng(1).standard_normal((2, 16000)) * 0.1)
    job = Job("duet", "duet", DuetParams(), path, tmp_path / "o", WriteOptions())
    assert streaming.plan_stream(method_spec("duet"), job) is None  # fits: runs in memory
    pages = {"SC_PHYS_PAGES": 100, "SC_PAGE_SIZE": 4096}  # a machine with 400 KiB of memory
    monkeypatch.setattr(streaming.os, "sysconf", lambda name: pages[name])
    # 16000 stereo samples × 8 bytes × 18 copies = 4.4 MB needed
    expected = r"demix duet holds its input in memory: about 4\.4 MB .* has 0\.4 MB; separate a section"
    with pytest.raises(ParameterError, match=expected):
        streaming.plan_stream(method_spec("duet"), job)
