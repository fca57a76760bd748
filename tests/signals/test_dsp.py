import numpy as np
import pytest
import torch

from dereverb.signals import dsp
from tests.conftest import harmonic_speechlike, toy_rir

CFG = dsp.StftConfig()


def spectral_convergence(mag_full: torch.Tensor, wave: torch.Tensor, cfg: dsp.StftConfig) -> torch.Tensor:
    """``||S - |STFT(x)|||_F / ||S||_F`` per item ``(B,)``: how consistent a waveform is with ``S (B, F+1, N)``."""
    diff = (mag_full.float() - dsp.stft(wave, cfg).abs()).flatten(1).norm(dim=1)
    return diff / mag_full.float().flatten(1).norm(dim=1).clamp_min(1e-12)


def test_stft_shapes_and_roundtrip():
    x = torch.randn(3, 16000)
    spec = dsp.stft(x, CFG)
    assert spec.shape == (3, 257, 16000 // CFG.hop_length + 1) and spec.dtype == torch.complex64
    mag = dsp.magnitude(spec)
    assert mag.shape == (3, 256, 126) and mag.dtype == torch.float32
    y = dsp.istft(spec, CFG, 16000)
    assert y.shape == x.shape
    assert (y - x).abs().max() < 1e-5


def test_reverberant_phase_with_true_magnitude_is_exact():
    x = torch.randn(2, 8000)
    spec = dsp.stft(x, CFG)
    y = dsp.reconstruct(dsp.magnitude(spec), CFG, 8000, phase="reverberant", reverb_spec=spec)
    assert (y - x).abs().max() < 1e-4


def test_stft_under_autocast_stays_float32():
    x = torch.randn(1, 4000, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = dsp.stft(x, CFG)
    assert spec.dtype == torch.complex64


def test_restore_nyquist():
    mag = torch.rand(2, 256, 10)
    full = dsp.restore_nyquist(mag)
    assert full.shape == (2, 257, 10) and full[:, -1].abs().sum() == 0


def _reverberant_example(seconds=1.5):
    clean = harmonic_speechlike(seconds)
    rev = np.convolve(clean, toy_rir(0.6))[: clean.size]
    return torch.from_numpy(clean)[None], torch.from_numpy(rev.astype(np.float32))[None]


def test_griffin_lim_convergence_falls_with_iterations():
    clean, _ = _reverberant_example()
    full = dsp.stft(clean, CFG).abs()
    sc = [
        spectral_convergence(full, dsp.griffin_lim(full, CFG, clean.shape[-1], n_iter=n), CFG).item()
        for n in (2, 8, 32)
    ]
    assert sc[0] > sc[1] > sc[2]
    assert sc[2] < 0.5 * sc[0]


def test_griffin_lim_is_reproducible_without_global_rng():
    clean, _ = _reverberant_example(0.5)
    full = dsp.stft(clean, CFG).abs()
    torch.manual_seed(1)
    a = dsp.griffin_lim(full, CFG, clean.shape[-1], n_iter=4, seed=3)
    state = torch.random.get_rng_state()
    b = dsp.griffin_lim(full, CFG, clean.shape[-1], n_iter=4, seed=3)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_warm_start_beats_random_start_on_reverberant_utterance():
    clean, rev = _reverberant_example()
    L = clean.shape[-1]
    clean_mag = dsp.magnitude(dsp.stft(clean, CFG))
    rev_spec = dsp.stft(rev, CFG)
    full = dsp.restore_nyquist(clean_mag, rev_spec[:, -1:].abs())
    for n_iter in (8, 32):
        cold = dsp.reconstruct(clean_mag, CFG, L, "griffinlim", rev_spec, n_iter=n_iter)
        warm = dsp.reconstruct(clean_mag, CFG, L, "griffinlim-warm", rev_spec, n_iter=n_iter)
        sc_cold = spectral_convergence(full, cold, CFG).item()
        sc_warm = spectral_convergence(full, warm, CFG).item()
        assert sc_warm < sc_cold, (n_iter, sc_warm, sc_cold)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_fft"):
        dsp.StftConfig(n_fft=511)
    with pytest.raises(ValueError, match="phase must be one of"):
        dsp.reconstruct(torch.rand(1, 256, 5), CFG, 512, phase="magic")
    with pytest.raises(ValueError, match="reverb_spec"):
        dsp.reconstruct(torch.rand(1, 256, 5), CFG, 512, phase="reverberant")
