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


# ---------------------------------------------------------------------------- shared by many tests
def noise(shape: tuple[int, ...], seed: int = 0, scale: float = 0.1) -> np.ndarray:
    """Gaussian noise ``shape`` (e.g. ``(L,)`` or ``(C, L)``), float32, RMS ``scale``."""
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int = 16000) -> Path:
    """``x`` ``(L,)`` or ``(C, L)`` as an audio file (float WAV for ``.wav``; the format follows
    the suffix otherwise); parent folders are created."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.T if x.ndim == 2 else x, sr, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


def tiny_train_args(tmp: Path, cache: Path, name: str = "tiny", **over: str) -> list[str]:
    """``dereverb.train`` arguments for the quickstart shrunk to seconds: 0.5-s items, 8 items a
    training epoch in batches of 2, a depth-2 U-Net of width 4, 4 small rooms; ``over`` sets
    more keys (``{"trainer.max_epochs": "1"}``)."""
    opts = {
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "trainer.num_sanity_val_steps": "0",
        "trainer.log_every_n_steps": "1",
        "trainer.logger.init_args.save_dir": str(tmp / "runs"),
        "trainer.logger.init_args.name": name,
        "trainer.max_epochs": "2",
        "data.segment_seconds": "0.5",
        "data.batch_size": "2",
        "data.train_items": "8",
        "data.val_items": "2",
        "data.test_items": "2",
        "data.rir_bank_sizes": "[4, 2, 2]",
        "data.rir_cache_dir": str(cache),
        "data.room.t60_range": "[0.3, 0.5]",
        "data.rir_max_order": "10",
        "data.rir_calibrate": "0",
        "data.synthetic_speakers": "30",
        "model.net.init_args.base_channels": "4",
        "model.net.init_args.depth": "2",
        "model.griffin_lim_iters": "2",
        "model.val_metric_batches": "1",
        "model.n_media_examples": "1",
        **over,
    }
    return [arg for k, v in opts.items() for arg in (f"--{k}", v)]


def write_tiny_checkpoint(path: Path, seed: int = 0, **hparams) -> Path:
    """An untrained tiny model (U-Net width 4, depth 2) saved as ``dereverb.train`` saves one:
    plain hyperparameters and the ``model.*`` state dict, loadable with ``weights_only=True``.
    ``hparams`` override ``DereverbModule``'s arguments (e.g. ``representation="grayscale"``)."""
    import torch

    from dereverb.training.module import DereverbModule

    torch.manual_seed(seed)
    args = {"net": {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}},
            "phase": "reverberant", "val_metric_batches": 0, **hparams}
    model = DereverbModule(**args)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path
