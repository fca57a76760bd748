"""Training from a command line's arguments: parse and check the configuration, fit (resuming
from ``--ckpt_path``), optionally test; :func:`run` is what ``python -m dereverb.train`` and the
study call."""

from __future__ import annotations

import re
import warnings

from lightning.pytorch import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dereverb.cli_errors import EXIT_INTERRUPTED, EXIT_TERMINATED
from dereverb.training.callbacks import AutoSave, ConfigInCheckpoint, RngStateInCheckpoint
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
_WORKER_KILLED = re.compile(r"DataLoader worker \(pid[^)]*\) is killed by signal: (Terminated|Interrupt)")
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
    :class:`~dereverb.inference.checkpoint.CheckpointError` for a bad configuration or ``--ckpt_path``, and
    :class:`TrainingInterrupted` after SIGTERM or Ctrl-C (``last.ckpt`` saved).
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
    yaml_text = cli.parser.dump(cli.config, skip_check=True)
    trainer.callbacks.extend([ConfigInCheckpoint(yaml_text), RngStateInCheckpoint(), *(callbacks or [])])
    use_atomic_checkpoint_io(trainer)
    if trainer.fast_dev_run:
        # Lightning 2.6's ModelCheckpoint.on_train_end writes last.ckpt even in a fast_dev_run
        # (into default_root_dir/checkpoints, as last-vN.ckpt on every run); a smoke test writes nothing.
        for cb in trainer.checkpoint_callbacks:
            cb.save_last = False
    with warnings.catch_warnings():
        if trainer.world_size == 1:
            warnings.filterwarnings("ignore", message=_NOT_RESUMABLE_WARNING)
        try:
            trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
        except SystemExit as exc:  # Lightning turns SIGTERM and Ctrl-C into SystemExit
            if not trainer.interrupted:
                raise
            autosave = next((c for c in trainer.callbacks if isinstance(c, AutoSave)), None)
            saved = autosave.last_saved if autosave is not None else None
            name = "SIGTERM" if isinstance(exc, SIGTERMException) else "Ctrl-C"
            raise TrainingInterrupted(name, trainer.global_step, saved) from exc
        except RuntimeError as exc:
            # A signal sent to the whole process group (``kill -- -PGID``, a job scheduler
            # stopping the job, Ctrl-C) may kill a DataLoader worker before Lightning's own
            # handler stops the loop: the same interruption, and last.ckpt was saved
            # (AutoSave.on_exception) — not an "unexpected" error.
            m = _WORKER_KILLED.search(str(exc))
            if m is None:
                raise
            autosave = next((c for c in trainer.callbacks if isinstance(c, AutoSave)), None)
            saved = autosave.last_saved if autosave is not None else None
            name = "SIGTERM" if m.group(1) == "Terminated" else "Ctrl-C"
            raise TrainingInterrupted(name, trainer.global_step, saved) from exc
    if cli.config.test:
        trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and trainer.is_global_zero:
        print(f"checkpoints: best={ckpt.best_model_path or '-'} last={ckpt.last_model_path or '-'}")
    return cli
