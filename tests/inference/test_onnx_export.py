"""``python -m dereverb.export``: the ONNX model computes what PyTorch computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dereverb.export import main
from dereverb.inference.checkpoint import load_model
from dereverb.inference.onnx_export import MagnitudePath
from dereverb.models.dereverber import Dereverber

ort = pytest.importorskip("onnxruntime")


def _checkpoint(path: Path, **hp) -> Path:
    """A checkpoint in the layout ``dereverb.train`` writes (weights under ``model.``)."""
    hp = {"representation": "log_magnitude", "target": "log_magnitude", "sample_rate": 16000, "n_fft": 512,
          "hop_length": 128, "net": {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}},
          **hp}
    torch.manual_seed(0)
    model = Dereverber.from_hparams(hp)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is really exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": hp}, path)
    return path


def test_onnx_matches_pytorch_within_1e_4_on_any_length(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "model.onnx"
    assert main(["--ckpt", str(ckpt), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "STFT" in printed and "phase" in printed
    session = ort.InferenceSession(str(out))
    ref_model = MagnitudePath(load_model(ckpt)).eval()
    rng = np.random.default_rng(0)
    for shape in [(1, 256, 100), (3, 256, 37), (1, 256, 1), (2, 128, 250)]:  # dynamic batch, bins, frames
        mag = (rng.random(shape, dtype=np.float32) ** 4 + 1e-4).astype(np.float32)
        got = session.run(None, {"magnitude": mag})[0]
        with torch.no_grad():
            ref = ref_model(torch.from_numpy(mag)).numpy()
        assert got.shape == ref.shape == shape
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_export_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.ckpt" in err[0] and "not found" in err[0]
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "m.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
