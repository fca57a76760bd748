"""``python -m dereverb.train --config configs/<x>.yaml``: train a dereverberation U-Net.

LightningCLI builds the :class:`~dereverb.module.DereverbModule` and the
:class:`~dereverb.data.DereverbDataModule` from YAML: several ``--config`` files compose,
dotted overrides work (``--trainer.max_epochs 3``), ``--print_config`` shows the result, and
``--ckpt_path runs/.../last.ckpt`` resumes. The data's sample rate is linked to the model's STFT.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dereverb.data import DereverbDataModule
from dereverb.module import DereverbModule

CONFIG_KEY = "dereverb_config"


class ConfigInCheckpoint(Callback):
    """Stores the full resolved config (YAML text) in every checkpoint, so a checkpoint alone
    says how it was trained; plain text keeps ``weights_only=True`` loading possible."""

    def __init__(self, config_yaml: str) -> None:
        self.config_yaml = config_yaml

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config_yaml


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
        parser.add_argument("--test", type=bool, default=False, help="run the test split with the best checkpoint after training")
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
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})


    def before_instantiate_classes(self) -> None:
        # Resuming from runs/<name>/version_k/checkpoints/x.ckpt logs into version_k again, so
        # TensorBoard shows one continuous run instead of a new version per restart.
        cfg = self.config
        logger = cfg.trainer.get("logger")
        if cfg.get("ckpt_path") and isinstance(logger, Namespace) and "TensorBoardLogger" in str(logger.get("class_path")):
            version = resume_version(cfg.ckpt_path)
            if version is not None and logger.init_args.get("version") is None:
                logger.init_args.version = version


def resume_version(ckpt_path: str) -> str | None:
    """``.../version_3/checkpoints/last.ckpt`` -> ``"version_3"``; None for other layouts."""
    parts = Path(ckpt_path).parts
    if len(parts) >= 3 and parts[-2] == "checkpoints" and parts[-3].startswith("version_"):
        return parts[-3]
    return None


def build_cli(args: list[str] | None = None) -> DereverbCLI:
    return DereverbCLI(
        DereverbModule,
        DereverbDataModule,
        run=False,
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": __doc__.splitlines()[0]},
        args=args,
    )


def run(args: list[str] | None = None) -> DereverbCLI:
    """Parse ``args`` (default: ``sys.argv``), train, optionally test; returns the CLI object
    (``cli.trainer``, ``cli.model``, ``cli.datamodule``) for use from Python and tests."""
    cli = build_cli(args)
    yaml_text = cli.parser.dump(cli.config, skip_check=True)
    cli.trainer.callbacks.append(ConfigInCheckpoint(yaml_text))
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    if cli.config.test:
        cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    ckpt = cli.trainer.checkpoint_callback
    if ckpt is not None and cli.trainer.is_global_zero:
        print(f"checkpoints: best={ckpt.best_model_path or '-'} last={ckpt.last_model_path or '-'}")
    return cli


def main(args: list[str] | None = None) -> int:
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
