"""The LightningCLI of ``python -m dereverb.train``: builds the :class:`DereverbModule` (its
network from ``model.net: {class_path, init_args}``) and the :class:`DereverbDataModule` from YAML
and dotted overrides, with the project's trainer defaults and always-on checkpointing
(``checkpoint``: the best at validation; ``autosave``: ``last.ckpt`` every N steps and on
SIGTERM / Ctrl-C / an exception) and LR logging. Bad input becomes one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dereverb.cli_errors import EXIT_USAGE, debug_requested, one_line, report
from dereverb.data.datamodule import DereverbDataModule
from dereverb.models.checkpoints import CheckpointError, read_checkpoint
from dereverb.models.net_spec import DEFAULT_NET, NetSpecError
from dereverb.training.callbacks import CompileNetwork
from dereverb.training.checks import ConfigError, check_representation, resume_version
from dereverb.training.module import DereverbModule

DESCRIPTION = "Train a dereverberation network (python -m dereverb.train --config configs/<x>.yaml)."
AUTOSAVE_STEPS = 200


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
        parser.add_argument("--init_weights", type=str | None, default=None, help="start from the weights of this checkpoint, model folder or `pretrained` (fine-tuning); optimizer, schedule and step count start fresh, unlike --ckpt_path")
        parser.add_argument("--test", type=bool, default=False, help="run the test split with the best checkpoint after training")
        parser.add_argument("--debug", action="store_true", help="show tracebacks with errors")
        parser.link_arguments("data.sample_rate", "model.sample_rate")
        # The best checkpoint is chosen at validation; a separate step-based callback writes
        # last.ckpt (one callback doing both would file newer weights under an older score), in
        # the same folder, and run.py adds one at each epoch's end.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/stoi",
            "checkpoint.mode": "max",
            "checkpoint.save_top_k": 1,
            "checkpoint.filename": "best-epoch{epoch:03d}-step{step}-stoi{val/stoi:.3f}",
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(ModelCheckpoint, "autosave")
        parser.set_defaults({
            "autosave.filename": "last",
            "autosave.every_n_train_steps": AUTOSAVE_STEPS,
            "autosave.save_on_exception": True,
            "autosave.enable_version_counter": False,
        })
        parser.link_arguments("checkpoint.dirpath", "autosave.dirpath")
        parser.add_lightning_class_args(CompileNetwork, "compile")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        # The network is always shown in --print_config and the saved config.yaml.
        parser.set_defaults({"model.net": {"class_path": DEFAULT_NET}})

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        check_representation(cfg.model)
        ckpt = Path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
        if ckpt is not None and (not ckpt.is_file() or ckpt.stat().st_size == 0):
            read_checkpoint(ckpt, option="--ckpt_path")  # raises its one-line error, loads nothing
        # Resuming from runs/<name>/version_k/checkpoints/x.ckpt logs into version_k again, so
        # TensorBoard shows one continuous run instead of a new version per restart.
        logger = cfg.trainer.get("logger")
        if ckpt is not None and isinstance(logger, Namespace) and "TensorBoardLogger" in str(logger.get("class_path")):
            version = resume_version(cfg.ckpt_path)
            if version is not None and logger.init_args.get("version") is None:
                logger.init_args.version = version


def check_config_files(argv: list[str]) -> None:
    """Every ``--config`` file exists and is readable, before the parser reads it."""
    pairs = [a.split("=", 1) for a in argv if a.startswith("--config=")] + list(zip(argv, argv[1:], strict=False))
    for value in (v for flag, v in pairs if flag == "--config"):
        if not (Path(value).is_file() and os.access(value, os.R_OK)):
            raise ConfigError(f"--config {value}: no readable file there; pass a YAML config such as configs/quickstart.yaml")


def build_cli(args: list[str] | None = None) -> DereverbCLI:
    """Parse and instantiate. A parse error prints jsonargparse's message as one ``error:``
    line and raises ``SystemExit(2)`` (without its usage block); a class that refuses its
    arguments raises :class:`ConfigError` with that class's own message."""
    argv = sys.argv[1:] if args is None else list(args)
    check_config_files(argv)
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
        report(f"{one_line(str(exc))} (see python -m dereverb.train --help)", exc, debug=debug_requested(argv))
        raise SystemExit(EXIT_USAGE) from exc
    except (ConfigError, CheckpointError):
        raise
    except (ValueError, TypeError) as exc:
        cause = exc  # jsonargparse wraps a nested class's own error: report that one
        while isinstance(cause.__cause__, (ValueError, TypeError)) and not isinstance(cause, NetSpecError):
            cause = cause.__cause__
        raise ConfigError(one_line(str(cause)) or type(cause).__name__) from exc
