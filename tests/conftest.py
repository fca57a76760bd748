"""Shared test fixtures: tiny signals made here (the project ships no third-party audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when that data is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not present: {p}")
    return p


def harmonic_speechlike(seconds: float = 2.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced, 4-Hz syllable-modulated harmonic signal with a gliding F0 (not real speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    x = x * env + 1e-3 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def toy_rir(t60: float = 0.6, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Exponentially decaying noise tail after a unit direct path (a stand-in room)."""
    rng = np.random.default_rng(seed)
    n = int(t60 * sr)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (t60 * sr)) * 0.3
    tail[: int(0.002 * sr)] = 0
    tail[0] = 1.0
    return tail.astype(np.float32)


@pytest.fixture
def speechlike() -> np.ndarray:
    return harmonic_speechlike()
