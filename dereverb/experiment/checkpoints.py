"""The weights a study run is evaluated with: checkpoints right after chosen training steps."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from lightning.pytorch import Callback


class SaveAtSteps(Callback):
    """Save the weights right after each optimizer step in ``steps`` as ``dirpath/step=<k>.ckpt``
    (weights only: enough to evaluate, not to resume). Validation in between runs in eval mode
    and changes neither the weights nor the BatchNorm statistics. ``saved``: ``{step: path}``.

    Lightning's ``ModelCheckpoint(every_n_train_steps=...)`` saves at multiples of one interval;
    the study evaluates at any list of steps (e.g. 60, 240, 960)."""

    def __init__(self, steps: Iterable[int], dirpath: str | os.PathLike) -> None:
        self.steps, self.dirpath, self.saved = {int(s) for s in steps}, Path(dirpath), {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step in self.steps and step not in self.saved and not trainer.sanity_checking:
            self.saved[step] = self.dirpath / f"step={step}.ckpt"
            trainer.save_checkpoint(self.saved[step], weights_only=True)
