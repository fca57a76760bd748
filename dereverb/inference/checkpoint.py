"""Checkpoints for inference: read and validate them, load their :class:`Dereverber` without
Lightning, pick the device.

A training checkpoint holds plain hyperparameters and a state dict, so it loads with
``torch.load(weights_only=True)`` into the pure network and representation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dereverb.models.dereverber import Dereverber, upgrade_state_dict
from dereverb.models.net_spec import NetSpecError

# Hyperparameters every DereverbModule checkpoint has; their absence means another model.
REQUIRED_HPARAMS = (
    "representation",
    "target",
    "sample_rate",
    "n_fft",
    "hop_length",
)
# And its network: ``net`` ({class_path, init_args}), or in checkpoints written before networks
# were pluggable the U-Net's flat ``base_channels`` and ``depth``.
LEGACY_NET_HPARAMS = ("base_channels", "depth")


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message names the file and the fix."""


class DeviceError(ValueError):
    """A device name that cannot be used here; the message says which to use instead."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: CUDA is not available on this machine; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); pick cuda:0.."
            )
    elif dev.type != "cpu":
        raise DeviceError(f"--device {name}: unsupported; use auto, cpu, cuda or cuda:N")
    return dev


def read_checkpoint(ckpt_path: str | os.PathLike, option: str = "--ckpt") -> dict:
    """Read a ``DereverbModule`` checkpoint dict with ``torch.load(weights_only=True)`` (CPU).

    Raises :class:`CheckpointError` (its message names the file, ``option`` and the fix) for a
    missing, empty, truncated or non-checkpoint file, a file holding Python objects, a plain
    dict, or another model's Lightning checkpoint (no DereverbModule hyperparameters).
    """
    p = Path(ckpt_path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found; check the {option} path")
    if p.is_dir():
        raise CheckpointError(
            f"{p}: is a folder; pass a .ckpt file (e.g. runs/<name>/version_0/checkpoints/last.ckpt)"
        )
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint is empty (0 bytes); use another checkpoint")
    with open(p, "rb") as f:
        head = f.read(4)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a usable checkpoint"
        msg = str(exc).lower()
        if head == b"PK\x03\x04" or "zip archive" in msg:  # torch's archive, cut short or damaged
            raise CheckpointError(
                f"{p}: checkpoint is truncated or corrupt (its archive cannot be read); copy it again or use another one"
            ) from exc
        if head[:1] != b"\x80":  # neither an archive nor a (legacy) pickle: text, HTML, audio...
            raise CheckpointError(
                f"{p}: not a PyTorch checkpoint (the file is neither a torch archive nor a pickle); "
                "pass a .ckpt written by python -m dereverb.train"
            ) from exc
        if "weights only" in msg or "weights_only" in msg:
            raise CheckpointError(
                f"{p}: holds Python objects that cannot be loaded safely (weights_only=True); "
                "use a checkpoint written by python -m dereverb.train"
            ) from exc
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint ({type(exc).__name__} while loading); "
            "pass a .ckpt written by python -m dereverb.train"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{p}: not a Lightning checkpoint (no state_dict / hyper_parameters); "
            "use a checkpoint written by python -m dereverb.train"
        )
    hp = ckpt["hyper_parameters"]
    missing = [k for k in REQUIRED_HPARAMS if k not in hp]
    if "net" not in hp and not all(k in hp for k in LEGACY_NET_HPARAMS):
        missing.append("net")
    if missing:
        raise CheckpointError(
            f"{p}: not a DereverbModule checkpoint (hyperparameters lack {', '.join(missing)}); "
            "use a checkpoint written by python -m dereverb.train"
        )
    return ckpt


def load_model(ckpt_path: str | os.PathLike, device: str | torch.device = "cpu") -> Dereverber:
    """Load the :class:`Dereverber` of a checkpoint written by ``python -m dereverb.train``
    (eval mode), without Lightning.

    The file is read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code; its
    hyperparameters build the network (``net``, or the U-Net's flat arguments of older
    checkpoints; a ``class_path`` outside this package is only used if its module is imported)
    and representation, its weights fill them. Raises
    :class:`CheckpointError` for a missing, truncated or non-checkpoint file, one of a different
    model (no DereverbModule hyperparameters) or weights that do not fit the model.
    """
    p = Path(ckpt_path)
    ckpt = read_checkpoint(p)
    state = upgrade_state_dict(ckpt["state_dict"])
    try:
        model = Dereverber.from_hparams(ckpt["hyper_parameters"])
        prefix = "model."
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        model.load_state_dict(weights, strict=True)
    except NetSpecError as exc:
        raise CheckpointError(f"{p}: {exc}") from exc
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: weights or hyperparameters do not fit this version of the model ({reason[:160]}); "
            "use a checkpoint trained with this version"
        ) from exc
    return model.to(device).eval()


def compile_model(model: Dereverber) -> Dereverber:
    """Compile the network with ``torch.compile`` (dynamic shapes: chunks differ in length).

    Only the network is compiled; STFT, representation and Griffin-Lim stay eager in float32.
    """
    model.net = torch.compile(model.net, dynamic=True)
    return model
