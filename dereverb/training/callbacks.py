"""Training callbacks: the resolved config and the RNG states in every checkpoint,
``last.ckpt`` kept fresh between validations and on SIGTERM / Ctrl-C (docs/reliability.md), and
the network compiled for training (docs/recipe.md), the learning rate logged when there is a
logger."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

CONFIG_KEY = "dereverb_config"
RNG_KEY = "rng_states"
DEFAULT_AUTOSAVE_STEPS = 200


class ConfigInCheckpoint(Callback):
    """Stores the full resolved config (YAML text) in every checkpoint, so a checkpoint alone
    says how it was trained; plain text keeps ``weights_only=True`` loading possible."""

    def __init__(self, config_yaml: str) -> None:
        self.config_yaml = config_yaml

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config_yaml


def capture_rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python global RNG states as tensors, ints and lists, so a
    checkpoint holding them still loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_states`."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RngStateInCheckpoint(Callback):
    """Saves the global RNG states in every checkpoint and puts them back when training resumes.

    They are applied at ``on_train_start`` (after the isolated sanity check and the loader set-up),
    so the first resumed step sees the state the interrupted run had after its last saved step.
    dereverb's own randomness does not read them (data items are a pure function of
    ``(seed, split, epoch, index)``, Griffin-Lim is seeded); they matter for user extensions.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = capture_rng_states()

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(RNG_KEY)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)
            self._pending = None


class AutoSave(Callback):
    """Keeps ``last.ckpt`` fresh between validations, for resuming a killed run.

    Args:
        every_n_train_steps: rewrite ``last.ckpt`` every this many optimizer steps (0: only at
            the end of each epoch); a SIGKILL loses at most this many steps.
        on_interrupt: also write it when training stops on SIGTERM, Ctrl-C or an exception, so
            ``--ckpt_path .../last.ckpt`` continues from the last finished step.

    ``last.ckpt`` is also rewritten at the end of every training epoch unless a checkpoint was
    saved at that step already (Lightning 2.6 refreshes it at validation only when the best
    checkpoint improves). It goes to the ``checkpoint`` callback's folder and is registered as
    its ``last_model_path``, so that callback keeps overwriting the same file. The ``best-*``
    checkpoint is only ever chosen at validation (a separate callback, so a step-based save never
    stores newer weights under an older validation score).
    """

    def __init__(self, every_n_train_steps: int = DEFAULT_AUTOSAVE_STEPS, on_interrupt: bool = True) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"autosave.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.every_n_train_steps = int(every_n_train_steps)
        self.on_interrupt = bool(on_interrupt)
        self.last_saved: str | None = None
        self._saved_step = -1

    def _active(self, trainer: Trainer) -> bool:
        return not trainer.fast_dev_run and not trainer.sanity_checking and trainer.state.fn == "fit"

    def last_path(self, trainer: Trainer) -> str:
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            return cb.format_checkpoint_name(
                {"epoch": torch.tensor(trainer.current_epoch), "step": torch.tensor(trainer.global_step)},
                cb.CHECKPOINT_NAME_LAST,
            )
        return os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")

    def save(self, trainer: Trainer) -> str:
        path = self.last_path(trainer)
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and cb.save_last:
            cb.last_model_path = path  # before saving: it is part of the saved callback state
        trainer.save_checkpoint(path, weights_only=False)  # the full state, for resuming (and no log line)
        self.last_saved, self._saved_step = path, trainer.global_step
        return path

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # With save_last, every checkpoint the ``checkpoint`` callback writes includes last.ckpt.
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and cb.save_last and trainer.state.fn == "fit":
            self._saved_step = trainer.global_step
            self.last_saved = cb.last_model_path or self.last_saved

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n, step = self.every_n_train_steps, trainer.global_step
        if n > 0 and step > 0 and step % n == 0 and step != self._saved_step and self._active(trainer):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step > 0 and trainer.global_step != self._saved_step and self._active(trainer):
            self.save(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not (self.on_interrupt and self._active(trainer)) or trainer.global_step == 0:
            return
        if trainer.global_step == self._saved_step:
            return  # last.ckpt was saved at this very step already
        self.save(trainer)


class CompileNetwork(Callback):
    """``torch.compile`` the network for training (YAML ``compile: {enabled: true}``).

    Args:
        enabled: compile (off by default: the first step then takes ~0.5-2 min to compile).
        mode: ``torch.compile``'s mode (``default``, ``reduce-overhead``, ``max-autotune``, ...).

    Only ``model.net`` is compiled, in place (``nn.Module.compile``), so the state dict keeps
    its keys and checkpoints load anywhere; STFT, representation and loss stay eager. Training
    segments all have one shape, so the network compiles once for training; validation and test
    shapes compile once more each.
    """

    def __init__(self, enabled: bool = False, mode: str = "default") -> None:
        self.enabled = bool(enabled)
        self.mode = mode

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        net = getattr(getattr(pl_module, "model", None), "net", None)
        if self.enabled and isinstance(net, torch.nn.Module) and not getattr(net, "_compiled_call_impl", None):
            net.compile(mode=self.mode)


class LogLearningRate(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` that stands aside in a run without a logger
    (``--trainer.logger false``) instead of refusing to train: the monitor is always on, so
    turning logging off must not turn training off."""

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
