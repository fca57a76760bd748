"""Shared fixtures and helpers for the representation tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dereverb import representations as R
from tests.conftest import harmonic_speechlike, toy_rir

HALF_STEP_DB = 80 / 255 / 2  # half an 8-bit quantisation step of an 80 dB range


def _mag(x: np.ndarray) -> torch.Tensor:
    spec = torch.stft(torch.from_numpy(x), 512, 128, window=torch.hann_window(512), return_complex=True)
    return spec.abs()[..., :-1, :]


@pytest.fixture(scope="module")
def reverb_mag() -> torch.Tensor:
    """(2, 256, 126): two different reverberant speech-like items, 1 s each."""
    items = [np.convolve(harmonic_speechlike(1.0, seed=s), toy_rir(0.5, seed=s))[:16000] for s in (0, 1)]
    mag = _mag(np.stack(items).astype(np.float32))
    mag[1] *= 0.05  # a quieter second item: per-item references must differ
    return mag


def db_err(rep, mag):
    x, ctx = rep.encode(mag)
    err, inside = R.db_error(mag, rep.decode(x, ctx).detach())  # learned ones carry a graph
    return err[inside]


def ramp(levels: int = 256, dynamic_range: float = 80.0, ref_db: float = 20.0) -> torch.Tensor:
    """(1, 1, levels) magnitudes whose dB values sit exactly on the grey levels k/(levels-1)."""
    db = ref_db - dynamic_range + dynamic_range * torch.arange(levels, dtype=torch.float64) / (levels - 1)
    return (10 ** (db / 20)).float()[None, None]
