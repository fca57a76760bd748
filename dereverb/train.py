"""``python -m dereverb.train --config configs/<x>.yaml``: train a dereverberation U-Net.

LightningCLI builds the :class:`~dereverb.training.module.DereverbModule` and the
:class:`~dereverb.data.datamodule.DereverbDataModule` from YAML: several ``--config`` files compose,
dotted overrides work (``--trainer.max_epochs 3``), ``--print_config`` shows the result, and
``--ckpt_path runs/.../last.ckpt`` resumes. The data's sample rate is linked to the model's STFT.

Reliability (docs/reliability.md): bad configuration is one ``error:`` line naming the key and
the fix, exit 2 (``--debug`` shows the traceback); ``last.ckpt`` is refreshed every
``autosave.every_n_train_steps`` steps and on SIGTERM / Ctrl-C, written atomically; a resumed
run continues mid-epoch with the same data order, optimiser, scheduler and RNG states.
"""

from __future__ import annotations

import os
import random
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dereverb import representations as reps
from dereverb.atomic import atomic_path
from dereverb.cli_errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    debug_requested,
    one_line,
    report,
    unexpected,
    unwritable_reason,
)
from dereverb.data.datamodule import DereverbDataModule
from dereverb.data.rir import RirError, RoomSampler
from dereverb.data.speech import CorpusError
from dereverb.inference.checkpoint import CheckpointError, read_checkpoint
from dereverb.models.dereverber import upgrade_state_dict
from dereverb.signal.audio import AudioError
from dereverb.training.module import DereverbModule

CONFIG_KEY = "dereverb_config"
RNG_KEY = "rng_states"
DEFAULT_AUTOSAVE_STEPS = 200
# Lightning warns on every mid-epoch resume of a loader without state_dict(); the DataModule
# carries the position instead (single process), so the warning would be wrong there.
_NOT_RESUMABLE_WARNING = r"You're resuming from a checkpoint that ended before the epoch ended"


class ConfigError(ValueError):
    """A bad training configuration; the message names the key and the fix."""


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


# ---------------------------------------------------------------------------- callbacks
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
        trainer.save_checkpoint(path)
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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each local checkpoint to ``.<name>.partial`` in its own folder and renames it, so a
    kill mid-write never leaves a truncated ``last.ckpt`` (Lightning's default stages the file in
    the system temp folder, which is a copy, not a rename, when that is another file system)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path, suffix=".partial", fsync=True) as tmp:
            torch.save(checkpoint, tmp)


def use_atomic_checkpoint_io(trainer: Trainer) -> None:
    """Swap the default checkpoint writer for :class:`AtomicCheckpointIO` (a custom one is kept)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


# ---------------------------------------------------------------------------- the CLI
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
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        check_representation(cfg.model)
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


def check_representation(model_cfg: Namespace) -> None:
    """``model.representation`` / ``model.representation_kwargs`` build; else :class:`ConfigError`
    naming the key and the valid choices (instead of a ValueError deep in instantiation)."""
    name = model_cfg.get("representation")
    kwargs = model_cfg.get("representation_kwargs") or {}
    if name not in reps.names():
        raise ConfigError(f"model.representation: unknown representation {name!r}; choose one of: {', '.join(reps.names())}")
    try:
        reps.build(name, **dict(kwargs))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.representation_kwargs: {one_line(str(exc))}") from exc


def resume_version(ckpt_path: str) -> str | None:
    """``.../version_3/checkpoints/last.ckpt`` -> ``"version_3"``; None for other layouts."""
    parts = Path(ckpt_path).parts
    if len(parts) >= 3 and parts[-2] == "checkpoints" and parts[-3].startswith("version_"):
        return parts[-3]
    return None


def check_resume_checkpoint(ckpt_path: str, model: LightningModule) -> None:
    """Refuse a ``--ckpt_path`` that cannot resume this configuration, with one clear message:
    not a DereverbModule checkpoint, weights only (no optimizer/loop state), or weights whose
    names or shapes do not fit the configured model (names the differing hyperparameters)."""
    p = Path(ckpt_path)
    ckpt = read_checkpoint(p, option="--ckpt_path")
    if "loops" not in ckpt or "optimizer_states" not in ckpt:
        raise ConfigError(
            f"{p}: holds weights only (no optimizer or loop state), so training cannot resume from it; "
            "pass a last.ckpt written by python -m dereverb.train or start a new run without --ckpt_path"
        )
    own, theirs = model.state_dict(), upgrade_state_dict(ckpt["state_dict"])
    bad = sorted(set(own) ^ set(theirs)) + [k for k in own if k in theirs and tuple(own[k].shape) != tuple(theirs[k].shape)]
    if not bad:
        return
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    diffs = [f"model.{k}={v!r} in the checkpoint, {model.hparams[k]!r} here" for k, v in hp.items() if k in model.hparams and model.hparams[k] != v]
    detail = "; ".join(diffs[:4]) if diffs else f"e.g. {bad[0]}"
    config = p.parent.parent / "config.yaml"
    hint = f" (e.g. --config {config})" if config.exists() else ""
    raise ConfigError(
        f"{p}: the checkpoint's model does not fit this configuration ({detail}); "
        f"resume with the configuration it was trained with{hint}"
    )


def check_writable(path: str | os.PathLike, key: str) -> None:
    """``path`` (need not exist yet) can be created and written; creates nothing."""
    reason = unwritable_reason(path)
    if reason is not None:
        raise ConfigError(f"{key}={path}: {reason}; choose a writable {key}")


def check_output_folders(trainer: Trainer) -> None:
    """Every folder training will write to (logs, checkpoints) can be written, before any work."""
    loggers = [lg for lg in trainer.loggers if getattr(lg, "save_dir", None)]
    for lg in loggers:
        check_writable(lg.save_dir, "trainer.logger.init_args.save_dir")
    if not loggers:
        check_writable(trainer.default_root_dir, "trainer.default_root_dir")
    cb = trainer.checkpoint_callback
    if isinstance(cb, ModelCheckpoint) and cb.dirpath:
        check_writable(cb.dirpath, "checkpoint.dirpath")


def check_data(datamodule: Any) -> None:
    """Read the speech folder and measured RIRs now (the DataModule caches both), so an empty or
    unusable folder fails with one line before any log or checkpoint is written."""
    if not isinstance(datamodule, DereverbDataModule):
        return
    try:
        if datamodule.speech != "synthetic":
            source = datamodule.speech_source()
            for split in ("train", "val"):
                source.split(split)
    except CorpusError as exc:
        raise ConfigError(f"data.speech: {one_line(str(exc))}") from exc
    try:
        if datamodule.rirs != "simulated":
            for split in ("train", "val"):
                datamodule.rir_bank(split)
    except RirError as exc:
        raise ConfigError(f"data.rirs: {one_line(str(exc))}") from exc


_COMPONENTS: tuple[tuple[type, str], ...] = (
    (RoomSampler, "data.room"),
    (DereverbDataModule, "data"),
    (DereverbModule, "model"),
    (ModelCheckpoint, "checkpoint"),
    (AutoSave, "autosave"),
    (LearningRateMonitor, "lr_monitor"),
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


_LITERAL = re.compile(r"a typing\.Literal\[(.*?)\]")


def tidy_parse_error(message: str) -> str:
    """jsonargparse's multi-line error -> one line ``key: what was expected (got value)``."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:
        return ""
    prefix = ""
    m = re.match(r'Parser key "([^"]+)":\s*(.*)', lines[0])
    if m:
        prefix = f"{m.group(1)}: "
        lines = ([m.group(2)] if m.group(2) else []) + lines[1:]
    lines = [_LITERAL.sub(lambda m: f"one of {m.group(1)}", one_line(ln)).replace("a int", "an int") for ln in lines]
    if not any("Union subtypes" in ln for ln in lines):
        return prefix + one_line("\n".join(lines))
    errors: list[str] = []
    given = ""
    capture = False
    for ln in lines:
        if ln.startswith("Errors:"):
            capture = True
        elif ln.startswith("Given value type:"):
            capture = False
        elif ln.startswith("Given value:"):
            given = ln[len("Given value:") :].strip()
        elif capture and "NoneType" not in ln:
            errors.append(ln.lstrip("- ").strip())
    text = one_line(" ".join(errors)) or "invalid value"
    if given and len(given) <= 60 and not given.startswith(("NestedArg", "Namespace")):
        text += f" (got {given})"
    return prefix + text


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
            parser_kwargs={"description": __doc__.splitlines()[0], "exit_on_error": False},
            args=args,  # None: LightningCLI reads sys.argv itself
        )
    except ArgumentError as exc:
        report(f"{tidy_parse_error(str(exc))} (see python -m dereverb.train --help)", exc, debug=debug_requested(argv))
        raise SystemExit(EXIT_USAGE) from exc
    except (ConfigError, CheckpointError):
        raise
    except (ValueError, TypeError) as exc:
        cause = exc
        while cause.__cause__ is not None:  # jsonargparse wraps a nested class's own error
            cause = cause.__cause__
        key = _component_of(cause)
        msg = tidy_parse_error(str(cause)) or type(cause).__name__
        if key is not None and not msg.startswith(key):
            msg = f"{key}: {msg}"
        raise ConfigError(msg) from exc


def run(args: list[str] | None = None, callbacks: list[Callback] | None = None) -> DereverbCLI:
    """Parse ``args`` (default: ``sys.argv``), train, optionally test; returns the CLI object
    (``cli.trainer``, ``cli.model``, ``cli.datamodule``) for use from Python and tests.

    ``callbacks`` are added to the trainer's. Raises :class:`ConfigError` /
    :class:`~dereverb.inference.checkpoint.CheckpointError` for a bad configuration or ``--ckpt_path``, and
    :class:`TrainingInterrupted` after SIGTERM or Ctrl-C (``last.ckpt`` saved).
    """
    cli = build_cli(args)
    trainer = cli.trainer
    if cli.config.ckpt_path:
        check_resume_checkpoint(cli.config.ckpt_path, cli.model)
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
    if cli.config.test:
        trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and trainer.is_global_zero:
        print(f"checkpoints: best={ckpt.best_model_path or '-'} last={ckpt.last_model_path or '-'}")
    return cli


def main(args: list[str] | None = None) -> int:
    """CLI entry point: exit 0 done, 2 bad configuration/input, 1 unexpected error, 143 SIGTERM,
    130 Ctrl-C; every error is one ``error:`` line on stderr (tracebacks with ``--debug``)."""
    debug = debug_requested(sys.argv[1:] if args is None else args)
    try:
        run(args)
    except TrainingInterrupted as exc:
        report(str(exc), exc, debug=debug)
        return exc.exit_code
    except (ConfigError, CheckpointError, CorpusError, RirError, AudioError) as exc:
        report(str(exc), exc, debug=debug)
        return EXIT_USAGE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        report(f"{where}{exc.strerror or exc}; check the path, free space and permissions", exc, debug=debug)
        return EXIT_USAGE
    except Exception as exc:
        report(unexpected(exc), exc, debug=debug)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
