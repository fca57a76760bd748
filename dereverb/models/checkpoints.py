"""Model files, read and written below training and inference. Two kinds hold a model:

- a training checkpoint, Lightning's ``.ckpt`` of a ``DereverbModule``: ``hyper_parameters`` and
  the :class:`Dereverber` under ``model.*`` in ``state_dict``, read with
  ``torch.load(weights_only=True)``;
- a *model folder*, the convention of ``huggingface_hub.PyTorchModelHubMixin``
  (:mod:`dereverb.inference.hub`)::

      config.json        {"format_version": 1, "hparams": {...}, "meta": {...}}
      model.safetensors  the Dereverber's state dict, float16

  ``hparams`` is the plain dict :meth:`Dereverber.from_hparams` takes, stored as given, ``meta``
  where the weights come from. A folder of another ``format_version`` is refused.

The name ``pretrained`` stands for the folder shipped in the package (:data:`PRETRAINED_DIR`).
Every bad input raises :class:`CheckpointError`: one line naming the file and the fix, found by
checking the file before a library reads it, or a library's error passed on with that context.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import safetensors.torch
import torch
from safetensors import SafetensorError

from dereverb.atomic import write_atomic
from dereverb.cli_errors import one_line
from dereverb.models.dereverber import Dereverber

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
#: The name that stands for the model shipped with the package (``--ckpt pretrained``).
PRETRAINED = "pretrained"
#: The model folder ``pretrained`` means (package data).
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "librispeech_unet"
#: Largest model folder :func:`write_model_folder` writes: one ships inside every install.
MAX_BYTES = 10 * 2**20
#: Hyperparameters every DereverbModule has; their absence means another model.
REQUIRED_HPARAMS = ("representation", "target", "sample_rate", "n_fft", "hop_length", "net")
_TRAIN = "use a checkpoint written by python -m dereverb.train"
_EXPORT = "python -m dereverb.export --ckpt X.ckpt --pretrained -o FOLDER"


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message names the file and the fix."""


class Stored(NamedTuple):
    """A model as stored: its hyperparameters, the :class:`Dereverber`'s state dict, provenance."""

    hparams: dict
    weights: dict[str, torch.Tensor]
    meta: dict


def resolve_checkpoint(path_or_name: str | os.PathLike, option: str = "--ckpt") -> Path:
    """``pretrained`` -> :data:`PRETRAINED_DIR` (a one-line :class:`CheckpointError` when it is not
    installed); anything else -> itself as a ``Path``."""
    if str(path_or_name) != PRETRAINED:
        return Path(path_or_name)
    if not (PRETRAINED_DIR / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{PRETRAINED_DIR}: the pretrained model is not installed; reinstall the package (in a git "
            f"checkout: git checkout -- dereverb/pretrained) or pass {option} with your own checkpoint"
        )
    return PRETRAINED_DIR


def read_checkpoint(path: str | os.PathLike, option: str = "--ckpt") -> dict:
    """A ``DereverbModule``'s Lightning checkpoint as a dict (CPU), checked: the file exists, is
    not empty, is a whole torch archive or a pickle, loads with ``weights_only=True``, and holds a
    ``state_dict`` with ``model.*`` weights and the DereverbModule hyperparameters."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found; check the {option} path")
    if p.is_dir():
        raise CheckpointError(
            f"{p}: is a folder; pass a .ckpt file (e.g. runs/<name>/version_0/checkpoints/last.ckpt)"
        )
    if not os.access(p, os.R_OK):
        raise CheckpointError(f"{p}: cannot be read (permission denied); check its permissions")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint is empty (0 bytes); use another checkpoint")
    with open(p, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(p):  # a torch archive without its end
        raise CheckpointError(f"{p}: checkpoint is truncated or corrupt; copy it again or use another one")
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(f"{p}: not a PyTorch checkpoint (neither a torch archive nor a pickle); {_TRAIN}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p}: torch.load(weights_only=True) refuses it (Python objects, or a damaged pickle); {_TRAIN}"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{p}: torch.load cannot read it ({type(exc).__name__}: {one_line(exc)[:160]}); {_TRAIN}") from exc
    if isinstance(ckpt, dict) and "format" in ckpt:
        raise CheckpointError(
            f"{p}: a pretrained bundle of format {str(ckpt['format'])[:40]!r}, which this version no longer "
            f"reads; export its training checkpoint as a model folder: {_EXPORT}"
        )
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{p}: not a Lightning checkpoint (no state_dict / hyper_parameters); {_TRAIN}")
    missing = [k for k in REQUIRED_HPARAMS if k not in ckpt["hyper_parameters"]]
    if missing == ["net"] or (not missing and not any(k.startswith("model.") for k in ckpt["state_dict"])):
        raise CheckpointError(f"{p}: a checkpoint of an older dereverb, which this version no longer reads; "
                              "train again with python -m dereverb.train")
    if missing:
        raise CheckpointError(
            f"{p}: not a DereverbModule checkpoint (hyperparameters lack {', '.join(missing)}); {_TRAIN}"
        )
    return ckpt


def read_config(config: object, path: str | os.PathLike) -> dict:
    """The ``hparams`` of a model folder's parsed ``config.json`` (``path`` names it in errors),
    after checking its ``format_version`` and the DereverbModule hyperparameters."""
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version!r}, this version of dereverb reads {FORMAT_VERSION}; "
            f"export the model again with {_EXPORT}"
        )
    hp = config.get("hparams")
    missing = [k for k in REQUIRED_HPARAMS if k not in hp] if isinstance(hp, dict) else ["hparams"]
    if missing:
        raise CheckpointError(f"{path}: not a dereverb model (lacks {', '.join(missing)}); export it with {_EXPORT}")
    return hp


def _read_folder(p: Path) -> Stored:
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (p / name).is_file():
            raise CheckpointError(
                f"{p}: a folder without {name}; pass a model folder ({CONFIG_FILE} + {WEIGHTS_FILE}, "
                f"written by {_EXPORT}) or a .ckpt file"
            )
    try:
        config = json.loads((p / CONFIG_FILE).read_text(encoding="utf-8"))
        hparams = read_config(config, p / CONFIG_FILE)
        weights = safetensors.torch.load_file(p / WEIGHTS_FILE)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"{p}: cannot be read ({type(exc).__name__}: {one_line(exc)[:160]}); "
                              f"export it again with {_EXPORT}") from exc
    return Stored(hparams, weights, dict(config.get("meta") or {}))


def read_model(path_or_name: str | os.PathLike, option: str = "--ckpt") -> Stored:
    """The stored model of a training checkpoint, a model folder or ``pretrained``; the meta of a
    checkpoint is its file name, epoch and step."""
    p = resolve_checkpoint(path_or_name, option)
    if p.is_dir():
        return _read_folder(p)
    ckpt = read_checkpoint(p, option)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    meta = {"source": p.name, **{k: ckpt[k] for k in ("epoch", "global_step") if isinstance(ckpt.get(k), int)}}
    return Stored(dict(ckpt["hyper_parameters"]), weights, meta)


def build_model(stored: Stored, path: str | os.PathLike) -> Dereverber:
    """The :class:`Dereverber` ``stored.hparams`` describe, filled with ``stored.weights`` (cast to
    its float32; CPU, train mode). ``path`` names the file in errors."""
    try:
        model = Dereverber.from_hparams(stored.hparams)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: {one_line(exc)}") from exc
    own, theirs = model.state_dict(), stored.weights
    bad = sorted(set(own) ^ set(theirs)) + [k for k in own if k in theirs and own[k].shape != theirs[k].shape]
    if bad:
        raise CheckpointError(
            f"{path}: weights do not fit the model its hyperparameters describe ({len(bad)} differ, "
            f"e.g. {bad[0]}); use a checkpoint trained with this version"
        )
    model.load_state_dict(theirs, strict=True)
    return model


def mean_of_models(sources: Sequence[str | os.PathLike]) -> Stored:
    """One model whose every floating tensor (BatchNorm statistics too) is the mean of the sources'
    (a "model soup", Wortsman et al. 2022: fine-tunes of one model, averaged); integer tensors and
    hyperparameters from the first. The sources must share the input/output path and network
    (:data:`REQUIRED_HPARAMS`); ``meta`` lists them."""
    stored = [read_model(src) for src in sources]
    first = stored[0]
    for src, other in zip(sources[1:], stored[1:], strict=True):
        key = next((k for k in REQUIRED_HPARAMS if other.hparams.get(k) != first.hparams.get(k)), None)
        if key is not None:
            raise CheckpointError(
                f"{src}: {key}={other.hparams.get(key)!r}, {sources[0]} has {first.hparams.get(key)!r}; "
                "average only models of one configuration (fine-tunes of one model)"
            )
    states = [build_model(Stored(first.hparams, st.weights, st.meta), src).state_dict() for src, st in zip(sources, stored, strict=True)]
    mean = {k: sum(st[k] for st in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()}
    return Stored(first.hparams, mean, {"mean_of": [str(src) for src in sources]})


def _half(t: torch.Tensor) -> torch.Tensor:
    """A floating tensor as float16, unless that would turn a finite value into inf."""
    t = t.detach().cpu()
    h = t.half() if t.is_floating_point() else t
    return (h if torch.isfinite(h).sum() == torch.isfinite(t).sum() else t).contiguous()


def write_model_folder(
    src: str | os.PathLike | Sequence[str | os.PathLike], dest: str | os.PathLike, meta: dict | None = None
) -> Path:
    """Write the model folder of ``src`` (a ``.ckpt``, a model folder or ``pretrained``; several:
    the mean of their weights, :func:`mean_of_models`) to ``dest``: ``model.safetensors`` then
    ``config.json``, each atomically; returns ``dest``.

    The model is built as :func:`build_model` builds it, so what does not load is refused
    here; ``meta`` defaults to the source's. Raises :class:`CheckpointError` when ``dest`` is a
    file or the weights exceed :data:`MAX_BYTES` (nothing is written then)."""
    sources = [src] if isinstance(src, (str, os.PathLike)) else list(src)
    p, dest = resolve_checkpoint(sources[0]), Path(dest)
    stored = read_model(p) if len(sources) == 1 else mean_of_models(sources)
    model = build_model(stored, p)
    if dest.exists() and not dest.is_dir():
        raise CheckpointError(f"{dest}: is a file; name a folder for the model (e.g. -o my_model)")
    data = safetensors.torch.save({k: _half(v) for k, v in model.state_dict().items()})
    if len(data) > MAX_BYTES:
        params = sum(t.numel() for t in model.parameters())
        raise CheckpointError(
            f"{dest}: the weights of {p} would be {len(data) / 2**20:.1f} MiB ({params / 1e6:.1f} M parameters), "
            f"over the {MAX_BYTES / 2**20:g} MiB limit for a model shipped in the package; "
            "train a smaller network (e.g. --model.net.init_args.base_channels 24)"
        )
    config = {"format_version": FORMAT_VERSION, "hparams": stored.hparams, "meta": stored.meta if meta is None else meta}
    write_atomic(dest / WEIGHTS_FILE, data)
    write_atomic(dest / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return dest
