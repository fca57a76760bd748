"""Checkpoints at chosen training steps: the weights a study run is evaluated with.

:class:`SaveAtSteps` is a Lightning callback that writes ``step=<k>.ckpt`` right after
optimizer step ``k`` for each requested ``k`` (``evaluation.at_steps`` of the study), so one
run yields the metric-vs-training-length curve: every checkpoint holds exactly the weights (and
BatchNorm statistics) after that step; validation in between runs in eval mode and changes
neither. With gradient accumulation the first batch end at which ``trainer.global_step == k``
is right after the ``k``-th optimizer step, before the next one.

It lives in the study's package (not :mod:`dereverb.training.callbacks`) because only the study
needs it; ``dereverb.train`` users can add it with ``--trainer.callbacks``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


def step_checkpoint_name(step: int) -> str:
    """File name of the checkpoint written after optimizer step ``step``."""
    return f"step={int(step)}.ckpt"


class SaveAtSteps(Callback):
    """Save a checkpoint after each optimizer step in ``steps`` into ``dirpath``.

    Args:
        steps: global steps (optimizer steps, >= 1) to save at.
        dirpath: the folder of the ``step=<k>.ckpt`` files (created when needed).
        weights_only: leave out the optimizer and scheduler states (a third of the size with
            AdamW; enough to evaluate, not to resume).

    ``saved`` maps each step saved so far to its file. A step the run never reaches (it stopped
    earlier) is simply absent from ``saved``; :meth:`missing` lists them.
    """

    def __init__(
        self, steps: Iterable[int], dirpath: str | os.PathLike, weights_only: bool = True
    ) -> None:
        self.steps = sorted({int(s) for s in steps})
        self.weights_only = bool(weights_only)
        if any(s < 1 for s in self.steps):
            raise ValueError(f"SaveAtSteps: steps must be >= 1, got {self.steps}")
        self.dirpath = Path(dirpath)
        self.saved: dict[int, Path] = {}

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step in self.steps and step not in self.saved and not trainer.sanity_checking:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            path = self.dirpath / step_checkpoint_name(step)
            trainer.save_checkpoint(path, weights_only=self.weights_only)
            self.saved[step] = path

    def missing(self) -> list[int]:
        """Requested steps not saved (training stopped before them)."""
        return [s for s in self.steps if s not in self.saved]
