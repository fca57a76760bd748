"""Training callbacks beyond Lightning's own: the resolved config in every checkpoint and the
network compiled for training. ``last.ckpt`` every N steps, at each epoch's end and on SIGTERM /
Ctrl-C is Lightning's ``ModelCheckpoint`` (:mod:`dereverb.training.cli`, :mod:`.run`)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

CONFIG_KEY = "dereverb_config"


class ConfigInCheckpoint(Callback):
    """Stores the resolved config (YAML text) in every checkpoint, so a checkpoint alone says how
    it was trained (LightningCLI writes it only beside the logs)."""

    def __init__(self, config_yaml: str) -> None:
        self.config_yaml = config_yaml

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config_yaml


class CompileNetwork(Callback):
    """``torch.compile`` the network for training (YAML ``compile: {enabled: true}``, ``mode``
    as for ``torch.compile``). Only ``model.net`` is compiled, in place, so the state dict keeps
    its keys; STFT, representation and loss stay eager."""

    def __init__(self, enabled: bool = False, mode: str = "default") -> None:
        self.enabled = bool(enabled)
        self.mode = mode

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        net = getattr(getattr(pl_module, "model", None), "net", None)
        if self.enabled and isinstance(net, torch.nn.Module) and not getattr(net, "_compiled_call_impl", None):
            net.compile(mode=self.mode)
