"""Checkpoint writing that a kill mid-write cannot truncate."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer

from dereverb.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each local checkpoint to ``.<name>.partial`` in its own folder and renames it, so a
    kill mid-write never leaves a truncated ``last.ckpt`` (Lightning's default stages the file in
    the system temp folder, which is a copy, not a rename, when that is another file system)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path, suffix=".partial", fsync=True) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)


def use_atomic_checkpoint_io(trainer: Trainer) -> None:
    """Swap the default checkpoint writer for :class:`AtomicCheckpointIO` (a custom one is kept)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
