"""The multi-frame filter option (``filter_taps``): the filter itself, the identity start, level
freedom, gradients at silence, a short training that fits, and the clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from dereverb.inference.enhance import dereverberate
from dereverb.models.dereverber import Dereverber
from dereverb.signals import dsp
from dereverb.training.module import DereverbModule
from tests.conftest import harmonic_speechlike, toy_rir

TINY_NET = {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}}


def _model(taps: int = 3, **kw) -> Dereverber:
    torch.manual_seed(0)
    return Dereverber.from_hparams({"net": TINY_NET, "filter_taps": taps, "griffin_lim_iters": 4, **kw}).eval()


def _reverberant(seconds: float = 2.0) -> np.ndarray:
    x = fftconvolve(harmonic_speechlike(seconds), toy_rir(0.6))[: int(seconds * 16000)]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_multiframe_filter_matches_the_sum_over_past_frames():
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(2, 5, 7, dtype=torch.complex64, generator=g)
    taps = torch.randn(2, 3, 5, 7, dtype=torch.complex64, generator=g)
    out = dsp.multiframe_filter(spec, taps)
    ref = torch.zeros_like(spec)
    for n in range(7):
        for k in range(3):
            if n - k >= 0:
                ref[..., n] += taps[:, k, :, n] * spec[..., n - k]
    torch.testing.assert_close(out, ref)
    delay = torch.zeros(2, 3, 5, 7, dtype=torch.complex64)
    delay[:, 1] = 1  # one frame late, the first frame silent
    shifted = dsp.multiframe_filter(spec, delay)
    assert shifted[..., 0].abs().max() == 0
    torch.testing.assert_close(shifted[..., 1:], spec[..., :-1])


def test_network_channels_and_output_domain():
    model = _model(taps=4)
    assert model.net.in_channels == 3 and model.net.out_channels == 8  # log magnitude + Re/Im; 4 complex taps
    x = torch.from_numpy(_reverberant())[None]
    spec, mag = model.analyse(x)
    y, ctx = model(mag, spec=spec)
    assert y.shape == (1, 1, 256, spec.shape[-1]) and ctx["filtered"].shape == mag.shape
    # The output is the log magnitude of the filtered spectrum (level-normalised).
    torch.testing.assert_close(model.decode(y, ctx), ctx["filtered"].abs() / ctx["level_gain"], rtol=1e-4, atol=1e-6)


def test_a_silent_network_is_the_identity_filter():
    """Residual start: with the network's output at zero the filter passes the input through, and
    its phase is the input's, so the waveform comes back unchanged."""
    model = _model()
    last = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.from_numpy(_reverberant())[None]
    y = model.enhance(x, phase="reverberant")
    assert (y - x).abs().max() < 1e-4


def test_output_scales_with_the_input():
    model, x = _model(), _reverberant()
    ref = dereverberate(x, 16000, model, chunk_seconds=None)
    assert np.abs(ref).max() > 1e-3
    for db in (-50.0, 10.0):
        k = 10 ** (db / 20)
        y = dereverberate(k * x, 16000, model, chunk_seconds=None)
        np.testing.assert_allclose(y / k, ref, atol=2e-4 * np.abs(ref).max())


def test_silence_gives_silence_and_finite_gradients():
    model = _model().train()
    spec, mag = model.analyse(torch.zeros(2, 8000))
    y, ctx = model(mag, spec=spec)
    y.mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert np.array_equal(dereverberate(np.zeros(8000, np.float32), 16000, model.eval()), np.zeros(8000, np.float32))


def test_a_short_training_fits_a_reverberant_batch():
    torch.manual_seed(0)
    module = DereverbModule(net=TINY_NET, filter_taps=3, griffin_lim_iters=2, val_metric_batches=0)
    dry = harmonic_speechlike(1.0)
    wet = fftconvolve(dry, toy_rir(0.6))[: dry.size]
    batch = {"reverb": torch.tensor(wet / np.abs(wet).max(), dtype=torch.float32)[None],
             "clean": torch.tensor(dry / np.abs(wet).max(), dtype=torch.float32)[None]}
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = module._step(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def test_refusals_are_one_clear_line():
    with pytest.raises(ValueError, match="target: log_magnitude"):
        Dereverber.from_hparams({"net": TINY_NET, "filter_taps": 2, "target": "same", "representation": "grayscale"})
    with pytest.raises(ValueError, match="filter_taps must be an integer >= 0"):
        Dereverber.from_hparams({"net": TINY_NET, "filter_taps": -1})
    model = _model()
    with pytest.raises(ValueError, match="needs the complex spectrum"):
        model(torch.rand(1, 256, 10))
    from dereverb.inference.onnx_export import ExportError, export_onnx

    with pytest.raises(ExportError, match="magnitude path only"):
        export_onnx(model, "unused.onnx")
