"""PCEN: no start-up artefact, agreement with librosa."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dereverb import representations as R


def test_pcen_has_no_startup_artefact():
    gen = torch.Generator().manual_seed(0)
    noise = torch.complex(torch.randn(2, 64, 400, generator=gen), torch.randn(2, 64, 400, generator=gen)).abs()
    for init in ("reflect", "loop"):
        p = R.build("pcen", init=init).encode(noise)[0]
        first, later = p[..., :10].mean(), p[..., 200:].mean()
        assert abs(float(first / later) - 1) < 0.03, init
    cold = R.build("pcen", init="zero").encode(noise)[0]
    assert float(cold[..., :10].mean() / cold[..., 200:].mean()) > 2  # what the warm start removes


def test_pcen_matches_librosa_after_startup():
    librosa = pytest.importorskip("librosa")
    gen = np.random.default_rng(0)
    s = np.abs(gen.standard_normal((1, 32, 500)) + 1j * gen.standard_normal((1, 32, 500))).astype(np.float32)
    s[..., 250:] *= 10
    ours = R.build("pcen").encode(torch.from_numpy(s))[0][:, 0].numpy()
    ref = librosa.pcen(s, sr=16000, hop_length=128, gain=0.98, bias=2, power=0.5, time_constant=0.4, eps=1e-6)
    np.testing.assert_allclose(ours[..., 400:], ref[..., 400:], rtol=1e-3)
