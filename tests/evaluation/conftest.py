"""Shared fixtures of the evaluation tests: toy reverberant items (one per T60 band), their
scores under three baselines, and a tiny untrained checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dereverb.data.pairs import make_pair
from dereverb.data.speech import SyntheticSpeech
from tests.conftest import toy_rir, write_tiny_checkpoint

SR = 16000
T60S = (0.3, 0.55, 0.85, 1.2)  # one item per T60 band


def dry(seed: int, seconds: float) -> np.ndarray:
    """Synthetic speech ``(L,)`` (no download)."""
    return SyntheticSpeech(sample_rate=SR, seed=0).utterance(seed, seconds)


def make_items(n: int = 4, seconds: float = 1.5) -> list[dict]:
    """``n`` items in toy rooms, T60s taken in turn from :data:`T60S`, dry target."""
    items = []
    for i in range(n):
        t60 = T60S[i % len(T60S)]
        reverb, clean = make_pair(dry(i, seconds), toy_rir(t60, SR, i), 0, SR, "dry", -3.0)
        items.append(
            {"id": f"it{i}", "reverb": reverb, "clean": clean, "t60": t60, "rir": f"toy{i}"}
        )
    return items


class Counting:
    """Wraps a system and counts its calls (cache reuse is asserted by calls, not time)."""

    def __init__(self, inner, fingerprint: str) -> None:
        self.inner, self.fingerprint, self.calls = inner, fingerprint, 0
        self.needs_clean = getattr(inner, "needs_clean", False)

    def __call__(self, reverb, sample_rate, clean=None):
        self.calls += 1
        return self.inner(reverb, sample_rate, clean)


@pytest.fixture(scope="session")
def items() -> list[dict]:
    return make_items()


@pytest.fixture(scope="session")
def rows(items: list[dict], tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every item scored by reverberant, WPE and the Griffin-Lim oracle (computed once)."""
    from dereverb.evaluation.scoring import evaluate_systems
    from dereverb.evaluation.systems import build_baselines

    systems = build_baselines("reverberant,wpe,oracle_gl", gl_iters=16)
    return evaluate_systems(
        items, systems, SR, tmp_path_factory.mktemp("cache"), srmr="none", progress=False
    )


@pytest.fixture
def tiny_checkpoint() -> Callable[[Path], Path]:
    """Writes a DereverbModule checkpoint (untrained, tiny) in the layout dereverb.train writes."""
    return write_tiny_checkpoint

