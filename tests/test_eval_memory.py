"""``demix eval --max-memory``: a small bound scores v3 block by block, with the in-memory scores."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from demix import evaluate as ev
from demix.cli import app
from demix.errors import ParameterError
from tests.conftest import ROOT

runner = CliRunner()
SCHEMA = json.loads((ROOT / "demix" / "schemas" / "scores.schema.json").read_text())
RATE = 8000
#: Five stereo files of this many samples take 2 copies × 5 × 2 × 8 B × N ≈ 61 MiB in memory:
#: over the smallest bound (50 MB), under the default (400 MB).
N = 400_000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two stereo references, two imperfect estimates of them and their mixture."""
    folder = tmp_path_factory.mktemp("eval_memory")
    rng = np.random.default_rng(7)
    s = rng.laplace(size=(2, N))
    images = {"a": np.outer([1.0, 0.8], s[0]), "b": np.outer([0.6, 1.0], s[1])}
    signals = {
        **images,
        "x": images["a"] + 0.1 * images["b"] + 0.01 * rng.standard_normal((2, N)),
        "y": images["b"] + 0.2 * images["a"] + 0.01 * rng.standard_normal((2, N)),
        "m": images["a"] + images["b"],
    }
    paths = {}
    for name, data in signals.items():
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], 0.2 * data.T, RATE, subtype="FLOAT")
    return paths


def _eval(files: dict[str, Path], *extra: str) -> dict:
    args = ["eval", "-r", files["a"], "-r", files["b"], "-e", files["x"], "-e", files["y"]]
    result = runner.invoke(
        app, [str(a) for a in [*args, "--mixture", files["m"], "--no-scores", "--json", *extra]]
    )
    assert result.exit_code == 0, result.stderr
    document: dict = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    return document


def test_a_small_bound_streams_with_the_in_memory_scores(files: dict[str, Path]) -> None:
    in_memory = _eval(files)
    streamed = _eval(files, "--max-memory", "50")
    assert (in_memory["max_memory_mb"], streamed["max_memory_mb"]) == (400, 50)
    assert not any("block by block" in note for note in in_memory["notes"])
    assert any("block by block" in note for note in streamed["notes"])
    keys = ("sdr", "sir", "sar", "si_sdr", "sdri", "si_sdri")
    for mine, theirs in zip(streamed["scores"], in_memory["scores"], strict=True):
        assert mine["estimate_name"] == theirs["estimate_name"]
        np.testing.assert_allclose([mine[k] for k in keys], [theirs[k] for k in keys], rtol=0, atol=1e-6)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "20", "inf"])
def test_a_bad_bound_is_one_line_and_a_failing_exit(files: dict[str, Path], value: str) -> None:
    args = ["eval", "-r", str(files["a"]), "-e", str(files["x"]), "--no-scores", "--max-memory", value]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--max-memory" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_the_library_refuses_a_bound_that_is_not_positive(files: dict[str, Path], value: float) -> None:
    refs = ev.load_side([str(files["a"])], role="reference")
    ests = ev.load_side([str(files["x"])], role="estimate")
    with pytest.raises(ParameterError, match="--max-memory"):
        ev.evaluate(refs, ests, max_memory_mb=value)
