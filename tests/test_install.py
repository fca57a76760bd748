"""The installed environment: the pinned torch/torchaudio pair, and every compiled extension the
project relies on loads and computes on a tiny input (a broken wheel fails here, by name)."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m.group(1): m.group(2) for d in deps if (m := re.fullmatch(r"([\w-]+)==([\w.]+)", d))}


def _release(version: str) -> str:
    return version.split("+")[0]  # "2.15.0+cu132" -> "2.15.0"


@pytest.mark.parametrize("name", ["torch", "torchaudio"])
def test_installed_versions_equal_the_exact_pins(name: str) -> None:
    pins = _pins()
    assert name in pins, f"pyproject.toml must pin {name} exactly (==)"
    assert _release(md.version(name)) == pins[name]


def test_lock_file_pins_the_same_torch_pair() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    for name, version in _pins().items():
        assert re.search(rf"^{name}=={re.escape(version)}\b", lock, re.MULTILINE), f"{name}=={version} not in requirements.lock"


def test_torchaudio_compiled_ops_compute() -> None:
    import torchaudio.functional as AF

    x = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    # fftconvolve against [1, 1]: running pairwise sums.
    torch.testing.assert_close(AF.fftconvolve(x, torch.tensor([[1.0, 1.0]])), torch.tensor([[1.0, 3.0, 5.0, 3.0, 0.0]]), atol=1e-5, rtol=0)
    # lfilter: y[n] = x[n] + 0.5 y[n-1] on an impulse gives 0.5**n.
    imp = torch.zeros(1, 6)
    imp[0, 0] = 1.0
    y = AF.lfilter(imp, torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0]), clamp=False)
    torch.testing.assert_close(y, 0.5 ** torch.arange(6.0)[None], atol=1e-6, rtol=0)
    # resample halves the length and keeps a slow sine.
    t = torch.arange(1600) / 16000
    sine = torch.sin(2 * torch.pi * 200 * t)[None]
    down = AF.resample(sine, 16000, 8000)
    assert down.shape == (1, 800)
    ref = torch.sin(2 * torch.pi * 200 * torch.arange(800) / 8000)[None]
    assert float((down - ref)[:, 50:-50].abs().max()) < 1e-2


def test_pesq_extension_scores() -> None:
    from pesq import pesq

    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    ref = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    assert pesq(16000, ref, ref, "wb") > 4.0
    noisy = ref + 0.05 * rng.standard_normal(t.size).astype(np.float32)
    assert pesq(16000, ref, noisy, "wb") < pesq(16000, ref, ref, "wb")


@pytest.mark.parametrize(
    ("fmt", "ext", "subtype", "atol"),
    [
        ("WAV", "wav", "FLOAT", 0.0),
        ("FLAC", "flac", "PCM_16", 1e-4),
        ("OGG", "ogg", "VORBIS", 0.1),
        ("MP3", "mp3", "MPEG_LAYER_III", 0.1),
    ],
)
def test_soundfile_writes_and_reads(tmp_path: Path, fmt: str, ext: str, subtype: str, atol: float) -> None:
    assert fmt in sf.available_formats(), f"this libsndfile cannot handle {fmt}"
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    y, sr_read = sf.read(path, dtype="float32")
    assert sr_read == sr
    # Lossy codecs add encoder delay/padding; compare the energy and a delay-aligned stretch.
    assert abs(len(y) - len(x)) <= 2400
    assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 0.05
    if atol == 0.0:
        np.testing.assert_array_equal(y, x)
    else:
        lag = int(np.argmax(np.correlate(y[:4000], x[:2000], mode="valid")))
        seg = y[lag : lag + 8000]
        assert np.max(np.abs(seg - x[: len(seg)])) < atol


def test_console_scripts_point_at_the_commands_main() -> None:
    """``dereverb-train`` etc. are the same code as ``python -m dereverb.<x>``."""
    import importlib

    eps = {ep.name: ep for ep in md.entry_points(group="console_scripts") if ep.name.startswith("dereverb-")}
    assert set(eps) == {"dereverb-train", "dereverb-predict", "dereverb-evaluate", "dereverb-study", "dereverb-export",
                        "dereverb-demo"}
    for name, ep in eps.items():
        assert ep.value == f"dereverb.{name.split('-')[1]}:main"
        assert callable(getattr(importlib.import_module(ep.module), ep.attr))


def test_dereverb_predict_script_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "dereverb-predict"  # beside the interpreter, activated or not
    assert exe.is_file(), f"{exe} is missing: reinstall with pip install -e ."
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "--ckpt" in out.stdout
