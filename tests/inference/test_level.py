"""The model ignores the recording's level: ``dereverberate(k x) = k dereverberate(x)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from dereverb.inference.enhance import dereverberate
from dereverb.models.dereverber import Dereverber, level_sums, speech_level
from tests.conftest import harmonic_speechlike, toy_rir


def _model(input_level: float | None = 1.0, phase: str = "griffinlim-warm") -> Dereverber:
    torch.manual_seed(0)
    model = Dereverber.from_hparams({
        "net": {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}},
        "input_level": input_level, "phase": phase, "griffin_lim_iters": 8,
    })
    with torch.no_grad():  # non-trivial batch-norm statistics: a level-dependent net in eval mode
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    return model.eval()


def _reverberant(seconds: float = 3.0) -> np.ndarray:
    x = fftconvolve(harmonic_speechlike(seconds), toy_rir(0.6))[: int(seconds * 16000)]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)  # +10 dB still peaks below 1


def test_speech_level_scales_with_the_signal_and_ignores_pauses():
    mag = torch.rand(1, 256, 200) + 0.1
    lv = speech_level(level_sums(mag))
    assert torch.allclose(speech_level(level_sums(1e-3 * mag)), 1e-3 * lv, rtol=1e-5)
    paused = torch.cat([mag, torch.full((1, 256, 200), 1e-4)], dim=-1)  # half the file quiet
    assert abs(float(speech_level(level_sums(paused)) / lv) - 1.0) < 0.01


@pytest.mark.parametrize("chunk_seconds", [None, 1.0])
def test_output_scales_with_the_input_from_minus_50_to_plus_10_db(chunk_seconds):
    model, x = _model(), _reverberant()
    ref = dereverberate(x, 16000, model, chunk_seconds=chunk_seconds, context_seconds=0.5)
    assert np.abs(ref).max() > 1e-3
    for db in (-50.0, -30.0, -10.0, 10.0):
        k = 10 ** (db / 20)
        y = dereverberate(k * x, 16000, model, chunk_seconds=chunk_seconds, context_seconds=0.5)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y / k, ref, atol=2e-4 * np.abs(ref).max())


def test_without_input_level_the_output_depends_on_level():
    model, x = _model(input_level=None), _reverberant()
    k = 10 ** (-40 / 20)
    y, ref = dereverberate(k * x, 16000, model), dereverberate(x, 16000, model)
    assert np.abs(y / k - ref).max() > 1e-2 * np.abs(ref).max()


def test_silence_and_near_silence_stay_finite_and_silent():
    model = _model()
    zeros = np.zeros(16000, np.float32)
    assert np.array_equal(dereverberate(zeros, 16000, model), zeros)
    hiss = (1e-7 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    y = dereverberate(hiss, 16000, model)
    assert np.isfinite(y).all() and np.abs(y).max() < 1e-4


def test_onnx_export_is_level_free_too(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from dereverb.inference.onnx_export import export_onnx

    model = _model()
    export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    mag = (np.random.default_rng(0).random((1, 256, 80), dtype=np.float32) ** 4 + 1e-4).astype(np.float32)
    ref = session.run(None, {"magnitude": mag})[0]
    for k in (10 ** (-50 / 20), 10 ** (10 / 20)):
        got = session.run(None, {"magnitude": (k * mag).astype(np.float32)})[0]
        np.testing.assert_allclose(got / k, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


@pytest.mark.slow
def test_griffin_lim_chunks_match_one_piece_around_every_boundary():
    """Chunks are phase-recovered separately (warm Griffin-Lim) and crossfaded: with context the
    result matches the one-piece run everywhere, including next to each chunk boundary."""
    from dereverb.signals import dsp

    model, x = _model(phase="griffinlim-warm"), _reverberant(8.0)
    model.griffin_lim_iters = 32
    whole = dereverberate(x, 16000, model, chunk_seconds=None)
    chunked = dereverberate(x, 16000, model, chunk_seconds=2.0, context_seconds=1.0)

    def db(y):
        return 20 * np.log10(dsp.magnitude(dsp.stft(torch.from_numpy(y)[None], dsp.StftConfig()))[0].numpy() + 1e-4)

    lsd = np.sqrt(np.mean((db(whole) - db(chunked)) ** 2, axis=0))  # per frame, dB
    frames_per_s = 16000 / 128
    for boundary in (2.0, 4.0, 6.0):
        near = lsd[int((boundary - 0.25) * frames_per_s) : int((boundary + 0.25) * frames_per_s)]
        assert near.max() < 0.02, (boundary, near.max())
    assert 10 * np.log10(np.sum(whole**2) / np.sum((whole - chunked) ** 2)) > 80


def test_channels_keep_their_own_level():
    """Channels (and evaluation items batched as channels) are normalised each by its own level:
    a quiet channel beside a loud one comes out as it would alone."""
    model = _model(phase="reverberant")
    x = _reverberant()
    loud_quiet = np.stack([x, 10 ** (-30 / 20) * _reverberant(3.0)[::-1].copy()])
    both = dereverberate(loud_quiet, 16000, model)
    for c in range(2):
        alone = dereverberate(loud_quiet[c], 16000, model)
        np.testing.assert_allclose(both[c], alone, atol=1e-4 * np.abs(alone).max())
