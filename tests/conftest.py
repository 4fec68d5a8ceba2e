"""Shared fixtures: paths to the shared real audio and small signals made in numpy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_AUDIO = ROOT / "sample_audio"


def shared(relative: str) -> Path:
    """A file from ../shared/data; skip (with the reason) where that folder is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def benchmark_songs() -> ModuleType:
    """``benchmarks/songs.py``, the benchmark songs' generator (a script folder, not a package)."""
    name = "demix_benchmark_songs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "songs.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def write_wav(path: Path, data: np.ndarray, rate: int = 16000, subtype: str = "FLOAT") -> Path:
    """Write ``(channels, samples)`` audio for a test."""
    sf.write(path, np.atleast_2d(data).T, rate, subtype=subtype)
    return path


@pytest.fixture
def voices() -> list[Path]:
    return [SAMPLE_AUDIO / f"voice_{i}.wav" for i in (1, 2, 3)]
