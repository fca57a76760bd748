"""Configuration checks run before training starts: each raises :class:`ConfigError` with one
line naming the key and the fix, before any log or checkpoint is written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from dereverb import representations as reps
from dereverb.cli_errors import one_line, unwritable_reason
from dereverb.data.datamodule import DereverbDataModule
from dereverb.data.rooms import RirError
from dereverb.data.speech import CorpusError
from dereverb.models.checkpoints import read_checkpoint, read_model, resolve_checkpoint
from dereverb.models.dilated_unet import DilatedUNet
from dereverb.models.unet import UNet


class ConfigError(ValueError):
    """A bad training configuration; the message names the key and the fix."""


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


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"net": {"init_args": {"depth": 2}}}`` -> ``{"net.init_args.depth": 2}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) and v else {f"{prefix}{k}": v})
    return out


def _misfit(own: Mapping[str, Any], theirs: Mapping[str, Any], own_hp: Mapping, their_hp: Mapping, there: str) -> str | None:
    """Why weights ``theirs`` do not fit state dict ``own`` (the differing hyperparameters,
    else a differing weight), or None when names and shapes all match."""
    bad = sorted(set(own) ^ set(theirs)) + [k for k in own if k in theirs and tuple(own[k].shape) != tuple(theirs[k].shape)]
    if not bad:
        return None
    mine = _flat(dict(own_hp))
    diffs = [f"model.{k}={v!r} {there}, {mine[k]!r} here" for k, v in _flat(their_hp).items()
             if not k.startswith("_") and k in mine and mine[k] != v]
    return "; ".join(diffs[:4]) if diffs else f"e.g. {bad[0]}"


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
    detail = _misfit(model.state_dict(), ckpt["state_dict"], model.hparams, ckpt["hyper_parameters"], "in the checkpoint")
    if detail is None:
        return
    config = p.parent.parent / "config.yaml"
    hint = f" (e.g. --config {config})" if config.exists() else ""
    raise ConfigError(
        f"{p}: the checkpoint's model does not fit this configuration ({detail}); "
        f"resume with the configuration it was trained with{hint}"
    )


def load_init_weights(path_or_name: str, model: LightningModule) -> Path:
    """Fill ``model`` (a ``DereverbModule``) with the weights of a checkpoint, a model folder
    or ``pretrained`` (``--init_weights``): the optimizer, schedule and step count start fresh.
    A U-Net's weights fill a configured ``DilatedUNet`` of the same arguments by growing it
    (:meth:`DilatedUNet.grown_state`: the dilated stack starts near the identity), and a wider
    ``UNet`` by widening it (:meth:`UNet.widened_state`: the same function, the new channels copies).

    Raises :class:`ConfigError` naming the differing hyperparameters when the weights do not fit
    the configured model (another representation or network size)."""
    option = "--init_weights"
    p = resolve_checkpoint(path_or_name, option)
    stored = read_model(p, option)
    own, weights = model.model.state_dict(), stored.weights
    net, theirs = model.model.net, _flat(stored.hparams)
    their_net = {k.removeprefix("net."): v for k, v in weights.items() if k.startswith("net.")}
    grown = None
    if theirs.get("net.class_path") == "dereverb.models.unet.UNet" and isinstance(net, DilatedUNet):
        grown = net.grown_state(their_net)
    elif (type(net) is UNet and net.norm != "group" and set(their_net) == set(net.state_dict())  # the same layers
          and their_net["down.0.0.weight"].shape[0] < net.base_channels):  # other channels in or out: _misfit says so
        grown = net.widened_state(their_net)
    if grown is not None:
        weights = {k: v for k, v in weights.items() if not k.startswith("net.")} | {f"net.{k}": v for k, v in grown.items()}
    detail = _misfit(own, weights, model.hparams, stored.hparams, "there")
    if detail is not None:
        raise ConfigError(
            f"{p}: {option} weights do not fit this model ({detail}); "
            "configure the same representation and network as they were trained with"
        )
    model.model.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()}, strict=True)
    return p


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
