"""The pretrained model shipped with the package, and how to make such a bundle.

A *bundle* is what a user needs to dereverberate and nothing more: the model's plain
hyperparameters and the :class:`~dereverb.models.dereverber.Dereverber`'s state dict in
float16 (half the bytes of a training checkpoint's float32 weights, and no optimizer or loop
state), saved with ``torch.save`` so it loads with ``torch.load(weights_only=True)``::

    {"format": "dereverb-pretrained/1", "hyper_parameters": {...}, "state_dict": {...}, "meta": {...}}

:func:`dereverb.inference.checkpoint.load_model` reads it like a checkpoint (the float16 weights
cast back to float32), and the name ``pretrained`` stands for :data:`PRETRAINED_FILE`, so
``python -m dereverb.predict -o out/ my.wav`` needs no training. ``python -m dereverb.export
--ckpt X.ckpt --pretrained -o Y.pt`` calls :func:`write_pretrained`. The model card:
docs/pretrained.md.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dereverb.atomic import write_atomic
from dereverb.inference.checkpoint import (
    BUNDLE_FORMAT,
    PRETRAINED,
    CheckpointError,
    model_from_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
)

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_BYTES",
    "PRETRAINED",
    "PRETRAINED_FILE",
    "bundle_state_dict",
    "write_pretrained",
]

#: The bundle ``load_model("pretrained")`` and ``--ckpt pretrained`` load (package data).
PRETRAINED_FILE = Path(__file__).resolve().parents[1] / "pretrained" / "librispeech_unet.pt"
#: Largest bundle :func:`write_pretrained` writes: it ships inside every install of the package.
MAX_BYTES = 10 * 2**20
_F16_MAX = torch.finfo(torch.float16).max


def _plain(value: Any) -> Any:
    """Hyperparameters as plain containers (mappings -> ``dict``), so the bundle holds nothing
    ``weights_only`` loading could refuse."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def bundle_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict for a bundle: floating tensors as float16 (contiguous CPU copies),
    others (batch norm's step counters) unchanged.

    A tensor with a finite value beyond float16's range (±65504), which the cast would turn into
    inf, stays float32: the loader casts every floating tensor to float32 either way.
    """
    out: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        t = t.detach().cpu()
        if t.is_floating_point():
            finite = t[torch.isfinite(t)]
            if finite.numel() == 0 or float(finite.abs().max()) <= _F16_MAX:
                t = t.to(torch.float16)
        out[key] = t.clone().contiguous()
    return out


def write_pretrained(
    ckpt: str | os.PathLike, dest: str | os.PathLike, meta: dict | None = None
) -> Path:
    """Write the pretrained bundle of checkpoint ``ckpt`` (a training ``.ckpt``, another bundle,
    or ``pretrained``) to ``dest``, atomically; returns ``dest``.

    The model is built and filled exactly as :func:`~dereverb.inference.checkpoint.load_model`
    does (so a checkpoint that does not load is refused here with the same one-line
    :class:`CheckpointError`); ``meta`` (plain values: where the weights come from, their
    scores...) is stored as given. Raises :class:`CheckpointError` when the bundle would exceed
    :data:`MAX_BYTES`; nothing is written then.
    """
    src = resolve_checkpoint(ckpt)
    raw = read_checkpoint(src)
    model = model_from_checkpoint(raw, src)
    bundle = {
        "format": BUNDLE_FORMAT,
        "hyper_parameters": _plain(raw["hyper_parameters"]),
        "state_dict": bundle_state_dict(model),
        "meta": _plain(meta or {}),
    }
    buf = io.BytesIO()
    torch.save(bundle, buf)
    data = buf.getvalue()
    if len(data) > MAX_BYTES:
        params = sum(p.numel() for p in model.parameters())
        raise CheckpointError(
            f"{dest}: the bundle of {src} would be {len(data) / 2**20:.1f} MiB ({params / 1e6:.1f} M parameters), "
            f"over the {MAX_BYTES / 2**20:g} MiB limit for a model shipped in the package; "
            "train a smaller network (e.g. --model.net.init_args.base_channels 24)"
        )
    return write_atomic(dest, data)
