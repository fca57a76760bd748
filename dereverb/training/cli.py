"""The LightningCLI of ``python -m dereverb.train``: builds the :class:`DereverbModule` (its
network from ``model.net: {class_path, init_args}``) and the :class:`DereverbDataModule` from YAML
and dotted overrides, with the project's trainer defaults, always-on checkpointing, autosave and
LR logging. Parse errors and classes that refuse their arguments become one line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dereverb.cli_errors import EXIT_USAGE, debug_requested, one_line, report, tidy_parse_error
from dereverb.data.datamodule import DereverbDataModule
from dereverb.data.rooms import RoomSampler
from dereverb.models.checkpoints import CheckpointError, read_checkpoint
from dereverb.models.net_spec import DEFAULT_NET, LEGACY_NET_KEYS, NetSpecError
from dereverb.training.callbacks import AutoSave, CompileNetwork, LogLearningRate
from dereverb.training.checks import (
    ConfigError,
    check_net,
    check_representation,
    legacy_key_hint,
    resume_version,
)
from dereverb.training.module import DereverbModule

DESCRIPTION = "Train a dereverberation network (python -m dereverb.train --config configs/<x>.yaml)."
_LEGACY = "|".join(LEGACY_NET_KEYS)
_LEGACY_KEY = re.compile(rf"\bmodel\.({_LEGACY})\b|Group 'model' does not accept option '({_LEGACY})'")


def default_precision() -> str:
    """Mixed precision on a GPU that has bf16, full precision elsewhere."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def trainer_defaults() -> dict[str, Any]:
    return {
        "default_root_dir": "runs",
        "precision": default_precision(),
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "runs", "name": "dereverb"},
        },
        "log_every_n_steps": 10,
    }


class DereverbCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="resume training from this checkpoint (e.g. runs/<name>/version_0/checkpoints/last.ckpt)")
        parser.add_argument("--init_weights", type=str | None, default=None, help="start from the weights of this checkpoint, pretrained bundle or `pretrained` (fine-tuning); optimizer, schedule and step count start fresh, unlike --ckpt_path")
        parser.add_argument("--test", type=bool, default=False, help="run the test split with the best checkpoint after training")
        parser.add_argument("--debug", action="store_true", help="show tracebacks with errors")
        parser.link_arguments("data.sample_rate", "model.sample_rate")
        # Checkpointing and LR logging are always on; their options are config keys.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/stoi",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best-epoch{epoch:03d}-step{step}-stoi{val/stoi:.3f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(AutoSave, "autosave")
        parser.add_lightning_class_args(CompileNetwork, "compile")
        parser.add_lightning_class_args(LogLearningRate, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        # The network is always shown in --print_config and the saved config.yaml.
        parser.set_defaults({"model.net": {"class_path": DEFAULT_NET}})

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        check_representation(cfg.model)
        check_net(cfg.model)
        ckpt = Path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
        if ckpt is not None and (not ckpt.is_file() or ckpt.stat().st_size == 0):
            read_checkpoint(ckpt, option="--ckpt_path")  # raises its one-line error, loads nothing
        # Resuming from runs/<name>/version_k/checkpoints/x.ckpt logs into version_k again, so
        # TensorBoard shows one continuous run instead of a new version per restart.
        logger = cfg.trainer.get("logger")
        if cfg.get("ckpt_path") and isinstance(logger, Namespace) and "TensorBoardLogger" in str(logger.get("class_path")):
            version = resume_version(cfg.ckpt_path)
            if version is not None and logger.init_args.get("version") is None:
                logger.init_args.version = version


_COMPONENTS: tuple[tuple[type, str], ...] = (
    (RoomSampler, "data.room"),
    (DereverbDataModule, "data"),
    (DereverbModule, "model"),
    (ModelCheckpoint, "checkpoint"),
    (AutoSave, "autosave"),
    (CompileNetwork, "compile"),
    (LogLearningRate, "lr_monitor"),
    (Trainer, "trainer"),
)


def _component_of(exc: BaseException) -> str | None:
    """The config group whose class raised ``exc`` during instantiation (outermost frame)."""
    import traceback

    for frame, _ in traceback.walk_tb(exc.__traceback__):
        obj = frame.f_locals.get("self")
        for cls, key in _COMPONENTS:
            if isinstance(obj, cls):
                return key
    return None


def legacy_key_error(message: str) -> ConfigError | None:
    """A parse error caused by a U-Net argument at its old place (``--model.depth 2``,
    ``model: {depth: 2}``) -> the one-line hint to ``model.net.init_args``; else None."""
    m = _LEGACY_KEY.search(message)
    return ConfigError(legacy_key_hint(m.group(1) or m.group(2))) if m else None


def tidy_net_error(message: str) -> str | None:
    """jsonargparse's error for a bad ``model.net`` -> one line naming ``model.net.class_path``
    or ``model.net.init_args.<arg>``; None for other errors."""
    text = one_line(message)
    if not text.startswith('Parser key "model.net"'):
        return None
    m = re.search(r"expects a function or a callable class: (.*?)(?: - Expected a NoneType| Given value type:|$)", text)
    reason = re.sub(r"\.? Got value: Namespace\(.*$", "", m.group(1) if m else text)
    cls = re.search(r"class_path='([\w.]+)'", text)
    cls_name = cls.group(1).rsplit(".", 1)[-1] if cls else "the network"
    if m := re.match(r"Option '(\w+)' is not accepted", reason):
        return f"model.net.init_args.{m.group(1)}: not an argument of {cls_name}"
    if m := re.match(r'Parser key "(\w+)":\s*(.*)', reason):
        detail = re.sub(r"\.? Got value: (.*)$", r" (got \1)", m.group(2))
        return f"model.net.init_args.{m.group(1)}: {tidy_parse_error(detail)}"
    if m := re.search(r"Expected '([\w.]+)' to be a subclass of", reason):
        return f"model.net.class_path: {m.group(1)} is not a torch.nn.Module class; e.g. {DEFAULT_NET}"
    given = re.search(r"Given value: (?:\{'class_path': ')?([\w.]+)", text)
    path = given.group(1) if given else (cls.group(1) if cls else "?")
    return f"model.net.class_path: cannot import {path} ({reason}); give an importable nn.Module class, e.g. {DEFAULT_NET}"


def build_cli(args: list[str] | None = None) -> DereverbCLI:
    """Parse and instantiate. A parse error prints one ``error:`` line and raises
    ``SystemExit(2)`` (as jsonargparse does, without its 100-line usage); a class that refuses
    its arguments raises :class:`ConfigError` naming the config group."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        return DereverbCLI(
            DereverbModule,
            DereverbDataModule,
            run=False,
            seed_everything_default=0,
            trainer_defaults=trainer_defaults(),
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": DESCRIPTION, "exit_on_error": False},
            args=args,  # None: LightningCLI reads sys.argv itself
        )
    except ArgumentError as exc:
        legacy = legacy_key_error(str(exc))
        if legacy is not None:
            raise legacy from exc
        net_error = tidy_net_error(str(exc))
        if net_error is not None:
            raise ConfigError(net_error) from exc
        report(f"{tidy_parse_error(str(exc))} (see python -m dereverb.train --help)", exc, debug=debug_requested(argv))
        raise SystemExit(EXIT_USAGE) from exc
    except (ConfigError, CheckpointError):
        raise
    except (ValueError, TypeError) as exc:
        cause = exc
        # jsonargparse wraps a nested class's own error; a NetSpecError already names its key.
        while cause.__cause__ is not None and not isinstance(cause, NetSpecError):
            cause = cause.__cause__
        key = _component_of(cause)
        msg = tidy_parse_error(str(cause)) or type(cause).__name__
        if key is not None and not msg.startswith(key):
            msg = f"{key}: {msg}"
        raise ConfigError(msg) from exc
