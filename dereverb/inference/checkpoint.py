"""Loading for inference: a checkpoint, model folder or ``pretrained`` into an eval-mode
:class:`Dereverber` on a device, without Lightning (the files: :mod:`dereverb.models.checkpoints`).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dereverb.models.checkpoints import build_model, read_model, resolve_checkpoint
from dereverb.models.dereverber import Dereverber


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


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> Dereverber:
    """The :class:`Dereverber` of a checkpoint written by ``python -m dereverb.train``, of a model
    folder (``config.json`` + ``model.safetensors``) or, for ``"pretrained"``, of the model shipped
    with the package, in eval mode on ``device``. Nothing in the file can run code; a bad file
    raises :class:`~dereverb.models.checkpoints.CheckpointError` (one line: the file and the fix).
    Prepared for inference (:func:`prepare_for_inference`).
    """
    p = resolve_checkpoint(path_or_name)
    return prepare_for_inference(build_model(read_model(p), p).eval()).to(device)


def prepare_for_inference(model: Dereverber) -> Dereverber:
    """The same function, faster (docs/performance.md): batch norms folded into the convolutions
    before them (:func:`fold_batch_norms`) and the network's weights in channels-last memory
    format, which selects oneDNN's faster convolutions on a CPU (inputs may stay contiguous)."""
    fold_batch_norms(model)
    model.net.to(memory_format=torch.channels_last)
    return model


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an
    ``nn.Sequential`` into that convolution's weights and bias (torch's ``fuse_conv_bn_eval``),
    in place: the same function in eval mode with one pass fewer over every feature map."""
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def compile_model(model: Dereverber) -> Dereverber:
    """Compile the network with ``torch.compile`` (dynamic shapes: chunks differ in length).

    Only the network is compiled; STFT, representation and Griffin-Lim stay eager in float32.
    """
    model.net = torch.compile(model.net, dynamic=True)
    return model
