"""Training from a command line's arguments: parse and check the configuration, fit (resuming
from ``--ckpt_path``), optionally test; :func:`run` is what ``python -m dereverb.train`` and the
study call."""

from __future__ import annotations

import os
import warnings

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dereverb.cli_errors import EXIT_INTERRUPTED, EXIT_TERMINATED
from dereverb.training.callbacks import ConfigInCheckpoint
from dereverb.training.checkpoint_io import use_atomic_checkpoint_io
from dereverb.training.checks import (
    ConfigError,
    check_data,
    check_output_folders,
    check_resume_checkpoint,
    load_init_weights,
)
from dereverb.training.cli import DereverbCLI, build_cli

# Lightning warns on every mid-epoch resume of a loader without state_dict(); the DataModule
# carries the position instead (single process), so the warning would be wrong there.
_NOT_RESUMABLE_WARNING = r"You're resuming from a checkpoint that ended before the epoch ended"


class TrainingInterrupted(Exception):
    """Training stopped by SIGTERM or Ctrl-C; ``checkpoint`` is the saved ``last.ckpt`` (or None)."""

    def __init__(self, signal_name: str, step: int, checkpoint: str | None) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        self.exit_code = EXIT_TERMINATED if signal_name == "SIGTERM" else EXIT_INTERRUPTED
        saved = (
            f"saved {checkpoint}; resume by adding --ckpt_path {checkpoint}"
            if checkpoint
            else "no checkpoint was saved (nothing trained yet)"
        )
        super().__init__(f"training stopped by {signal_name} at global step {step}; {saved}")


def run(args: list[str] | None = None, callbacks: list[Callback] | None = None) -> DereverbCLI:
    """Parse ``args`` (default: ``sys.argv``), train, optionally test; returns the CLI object
    (``cli.trainer``, ``cli.model``, ``cli.datamodule``) for use from Python and tests.

    ``callbacks`` are added to the trainer's. Raises :class:`ConfigError` /
    :class:`~dereverb.models.checkpoints.CheckpointError` for a bad configuration or ``--ckpt_path``,
    and :class:`TrainingInterrupted` after SIGTERM or Ctrl-C (``last.ckpt`` saved).
    """
    cli = build_cli(args)
    trainer = cli.trainer
    if cli.config.ckpt_path and cli.config.get("init_weights"):
        raise ConfigError("give --ckpt_path (resume a run) or --init_weights (start a new run from weights), not both")
    if cli.config.ckpt_path:
        check_resume_checkpoint(cli.config.ckpt_path, cli.model)
    if cli.config.get("init_weights"):
        load_init_weights(cli.config.init_weights, cli.model)
    check_output_folders(trainer)
    check_data(cli.datamodule)
    if not trainer.loggers:  # Lightning's LearningRateMonitor refuses a run without a logger
        trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
    # last.ckpt also at the end of every epoch (the autosave writes it every N steps only).
    epoch_end = ModelCheckpoint(
        trainer.checkpoint_callback.dirpath, "last", every_n_epochs=1, save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    yaml_text = cli.parser.dump(cli.config, skip_check=True)
    trainer.callbacks.extend([ConfigInCheckpoint(yaml_text), *(callbacks or []), epoch_end])
    use_atomic_checkpoint_io(trainer)
    with warnings.catch_warnings():
        if trainer.world_size == 1:
            warnings.filterwarnings("ignore", message=_NOT_RESUMABLE_WARNING)
        try:
            trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
        except (SystemExit, RuntimeError) as exc:
            # Lightning turns SIGTERM and Ctrl-C into SystemExit. A signal sent to the whole
            # process group (a job scheduler, ``kill -- -PGID``) may kill a DataLoader worker
            # before the loop stops: a RuntimeError, but the same interruption.
            sigterm = isinstance(exc, SIGTERMException) or trainer.received_sigterm
            if not (sigterm or isinstance(exc, SystemExit) and trainer.interrupted):
                raise
            name = "SIGTERM" if sigterm else "Ctrl-C"
            last = os.path.join(epoch_end.dirpath or "", "last.ckpt")  # written by autosave on the exception
            saved = last if trainer.global_step > 0 and os.path.isfile(last) else None
            raise TrainingInterrupted(name, trainer.global_step, saved) from exc
    if cli.config.test:
        trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    if trainer.is_global_zero:
        print(f"checkpoints: best={trainer.checkpoint_callback.best_model_path or '-'} last={epoch_end.best_model_path or '-'}")
    return cli
