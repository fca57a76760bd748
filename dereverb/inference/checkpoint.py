"""Checkpoints for inference: read and validate them, load their :class:`Dereverber` without
Lightning, pick the device.

Two layouts load, both with ``torch.load(weights_only=True)`` into the pure network and
representation: a training checkpoint (Lightning's, plain hyperparameters and a ``model.*``
state dict) and the pretrained *bundle* of :mod:`dereverb.inference.pretrained` (``format``
``dereverb-pretrained/1``, the :class:`Dereverber`'s own state dict in float16). The name
``pretrained`` stands for the bundle shipped with the package.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dereverb.models.dereverber import Dereverber, upgrade_state_dict
from dereverb.models.net_spec import NetSpecError

# Hyperparameters every DereverbModule checkpoint has; their absence means another model.
REQUIRED_HPARAMS = (
    "representation",
    "target",
    "sample_rate",
    "n_fft",
    "hop_length",
)
# And its network: ``net`` ({class_path, init_args}), or in checkpoints written before networks
# were pluggable the U-Net's flat ``base_channels`` and ``depth``.
LEGACY_NET_HPARAMS = ("base_channels", "depth")
#: The name that stands for the model shipped with the package (``--ckpt pretrained``).
PRETRAINED = "pretrained"
#: ``format`` of a pretrained bundle; a Lightning checkpoint has no ``format`` key.
BUNDLE_FORMAT = "dereverb-pretrained/1"


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message names the file and the fix."""


class DeviceError(ValueError):
    """A device name that cannot be used here; the message says which to use instead."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: CUDA is not available on this machine; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); pick cuda:0.."
            )
    elif dev.type != "cpu":
        raise DeviceError(f"--device {name}: unsupported; use auto, cpu, cuda or cuda:N")
    return dev


def resolve_checkpoint(path_or_name: str | os.PathLike, option: str = "--ckpt") -> Path:
    """``pretrained`` -> the bundle shipped with the package
    (:data:`dereverb.inference.pretrained.PRETRAINED_FILE`); anything else -> itself as a ``Path``.

    Raises :class:`CheckpointError` (one line: the path and the fix) when ``pretrained`` is asked
    for but its file is not installed, e.g. in a source checkout without the weights.
    """
    if str(path_or_name) != PRETRAINED:
        return Path(path_or_name)
    # Imported here: pretrained builds on this module. Read at call time, so a test (or a
    # packager) can point PRETRAINED_FILE elsewhere.
    from dereverb.inference import pretrained

    p = Path(pretrained.PRETRAINED_FILE)
    if not p.is_file():
        raise CheckpointError(
            f"{p}: the pretrained model is not installed; reinstall the package (in a git checkout: "
            f"git checkout -- dereverb/pretrained) or pass {option} with your own checkpoint"
        )
    return p


def read_checkpoint(ckpt_path: str | os.PathLike, option: str = "--ckpt") -> dict:
    """Read a ``DereverbModule`` checkpoint dict with ``torch.load(weights_only=True)`` (CPU):
    a training checkpoint, a pretrained bundle (``format`` key), or the name ``pretrained``.

    Raises :class:`CheckpointError` (its message names the file, ``option`` and the fix) for a
    missing, empty, truncated or non-checkpoint file, a file holding Python objects, a plain
    dict, another model's Lightning checkpoint (no DereverbModule hyperparameters), a bundle of
    an unknown format, or ``pretrained`` when its file is not installed.
    """
    p = resolve_checkpoint(ckpt_path, option)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found; check the {option} path")
    if p.is_dir():
        raise CheckpointError(
            f"{p}: is a folder; pass a .ckpt file (e.g. runs/<name>/version_0/checkpoints/last.ckpt)"
        )
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint is empty (0 bytes); use another checkpoint")
    with open(p, "rb") as f:
        head = f.read(4)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a usable checkpoint"
        msg = str(exc).lower()
        if head == b"PK\x03\x04" or "zip archive" in msg:  # torch's archive, cut short or damaged
            raise CheckpointError(
                f"{p}: checkpoint is truncated or corrupt (its archive cannot be read); copy it again or use another one"
            ) from exc
        if head[:1] != b"\x80":  # neither an archive nor a (legacy) pickle: text, HTML, audio...
            raise CheckpointError(
                f"{p}: not a PyTorch checkpoint (the file is neither a torch archive nor a pickle); "
                "pass a .ckpt written by python -m dereverb.train"
            ) from exc
        if "weights only" in msg or "weights_only" in msg:
            raise CheckpointError(
                f"{p}: holds Python objects that cannot be loaded safely (weights_only=True); "
                "use a checkpoint written by python -m dereverb.train"
            ) from exc
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint ({type(exc).__name__} while loading); "
            "pass a .ckpt written by python -m dereverb.train"
        ) from exc
    if isinstance(ckpt, dict) and "format" in ckpt and ckpt["format"] != BUNDLE_FORMAT:
        fmt = ckpt["format"]
        fix = (
            "upgrade dereverb (pip install -U dereverb)"
            if str(fmt).startswith("dereverb-pretrained/")
            else "pass a .ckpt written by python -m dereverb.train or a bundle written by python -m dereverb.export --pretrained"
        )
        raise CheckpointError(f"{p}: unknown checkpoint format {str(fmt)[:60]!r} (this version reads {BUNDLE_FORMAT}); {fix}")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{p}: not a Lightning checkpoint (no state_dict / hyper_parameters); "
            "use a checkpoint written by python -m dereverb.train"
        )
    hp = ckpt["hyper_parameters"]
    missing = [k for k in REQUIRED_HPARAMS if k not in hp]
    if "net" not in hp and not all(k in hp for k in LEGACY_NET_HPARAMS):
        missing.append("net")
    if missing:
        raise CheckpointError(
            f"{p}: not a DereverbModule checkpoint (hyperparameters lack {', '.join(missing)}); "
            "use a checkpoint written by python -m dereverb.train"
        )
    return ckpt


def is_bundle(ckpt: dict) -> bool:
    """Whether a checkpoint dict read by :func:`read_checkpoint` is a pretrained bundle."""
    return ckpt.get("format") == BUNDLE_FORMAT


def model_weights(ckpt: dict) -> dict[str, torch.Tensor]:
    """The :class:`Dereverber`'s state dict from a checkpoint dict of either layout, float32:
    a training checkpoint's ``model.*`` entries without the prefix (first-layout ``net.*``
    upgraded), or a bundle's entries with its float16 tensors cast back."""
    if is_bundle(ckpt):
        return {
            k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in ckpt["state_dict"].items()
        }
    prefix = "model."
    state = upgrade_state_dict(ckpt["state_dict"])
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike) -> Dereverber:
    """Build the :class:`Dereverber` of a checkpoint dict (from :func:`read_checkpoint`) and fill
    it with its weights (CPU, train mode as built). ``path`` only names the file in errors.

    Raises :class:`CheckpointError` when the network spec or the weights do not fit the model.
    """
    p = Path(path)
    try:
        model = Dereverber.from_hparams(ckpt["hyper_parameters"])
        model.load_state_dict(model_weights(ckpt), strict=True)
    except NetSpecError as exc:
        raise CheckpointError(f"{p}: {exc}") from exc
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: weights or hyperparameters do not fit this version of the model ({reason[:160]}); "
            "use a checkpoint trained with this version"
        ) from exc
    return model


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> Dereverber:
    """Load the :class:`Dereverber` of a checkpoint written by ``python -m dereverb.train``, of a
    pretrained bundle, or (``"pretrained"``) of the model shipped with the package (eval mode),
    without Lightning.

    The file is read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code; its
    hyperparameters build the network (``net``, or the U-Net's flat arguments of older
    checkpoints; a ``class_path`` outside this package is only used if its module is imported)
    and representation, its weights fill them (a bundle's float16 weights as float32). Raises
    :class:`CheckpointError` for a missing, truncated or non-checkpoint file, one of a different
    model (no DereverbModule hyperparameters), weights that do not fit the model, or
    ``pretrained`` when its file is not installed.
    """
    p = resolve_checkpoint(path_or_name)
    return model_from_checkpoint(read_checkpoint(p), p).to(device).eval()


def compile_model(model: Dereverber) -> Dereverber:
    """Compile the network with ``torch.compile`` (dynamic shapes: chunks differ in length).

    Only the network is compiled; STFT, representation and Griffin-Lim stay eager in float32.
    """
    model.net = torch.compile(model.net, dynamic=True)
    return model
