"""The strength knob: ``dereverberate(..., strength=S)``, ``predict --strength S`` and
:func:`dereverb.models.dereverber.apply_strength` (S = 0 the input exactly, 1 the full output)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import fftconvolve

from dereverb.inference import dereverberate, load_model
from dereverb.models.dereverber import Dereverber, apply_strength
from dereverb.predict import main
from tests.conftest import harmonic_speechlike, noise, toy_rir, write_wav


@pytest.fixture(scope="module")
def model() -> Dereverber:
    return load_model("pretrained", "cpu")


@pytest.fixture(scope="module")
def reverberant() -> np.ndarray:
    """2 s of speech-like sound in a 0.8-s toy room, 16 kHz."""
    x = fftconvolve(harmonic_speechlike(2.0), toy_rir(0.8))[:32000]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_apply_strength_goes_from_the_input_to_the_estimate_bin_by_bin() -> None:
    g = torch.Generator().manual_seed(0)
    rev = torch.rand(2, 8, 10, generator=g) + 0.1
    est = rev * torch.rand(2, 8, 10, generator=g)  # suppression only, as dereverberation does
    assert torch.equal(apply_strength(est, rev, 1.0), est)
    assert torch.allclose(apply_strength(est, rev, 0.0), rev)
    mixes = [apply_strength(est, rev, s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    for lo, hi in zip(mixes[1:], mixes[:-1], strict=True):
        assert (lo <= hi + 1e-6).all()  # more strength never gives a bin more energy
        assert lo.shape == rev.shape


@pytest.mark.parametrize("shape, sr", [((32000,), 16000), ((2, 44100), 44100)])
def test_strength_zero_returns_the_input_exactly(model: Dereverber, shape, sr) -> None:
    x = noise(shape, seed=3)
    assert np.array_equal(dereverberate(x, sr, model, strength=0.0), x)
    xt = torch.from_numpy(x)
    assert torch.equal(dereverberate(xt, sr, model, strength=0.0, chunk_seconds=0.5), xt)


def test_strength_one_is_the_full_model_output(model: Dereverber, reverberant: np.ndarray) -> None:
    full = dereverberate(reverberant, 16000, model)
    assert np.array_equal(dereverberate(reverberant, 16000, model, strength=1.0), full)


def test_more_strength_removes_more(model: Dereverber, reverberant: np.ndarray) -> None:
    """Output shape kept; energy falls and the distance from the input grows with S."""
    outs = [dereverberate(reverberant, 16000, model, strength=s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(y.shape == reverberant.shape and y.dtype == np.float32 for y in outs)
    energy = [float(np.sum(y.astype(np.float64) ** 2)) for y in outs]
    assert all(a > b for a, b in zip(energy, energy[1:], strict=False)), energy
    moved = [float(np.sum((y - reverberant).astype(np.float64) ** 2)) for y in outs]
    assert all(a < b for a, b in zip(moved, moved[1:], strict=False)), moved


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_strength_outside_0_1_is_refused(model: Dereverber, bad: float) -> None:
    with pytest.raises(ValueError, match=r"strength must be between 0 .* and 1"):
        dereverberate(noise((1000,)), 16000, model, strength=bad)


def test_cli_strength(tmp_path, capsys) -> None:
    src = write_wav(tmp_path / "in.wav", noise((2, 8000), seed=1), 22050)
    assert main(["--strength", "0", "-o", str(tmp_path / "out.wav"), str(src)]) == 0
    got, sr = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    want, _ = sf.read(src, dtype="float32", always_2d=True)
    assert sr == 22050 and np.array_equal(got, want)
    with pytest.raises(SystemExit) as exc:
        main(["--strength", "2", "-o", str(tmp_path / "x"), str(src)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --strength must be between 0") and "got 2" in err
    assert not (tmp_path / "x").exists()
