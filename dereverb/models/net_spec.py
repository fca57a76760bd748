"""A network as plain data, ``{"class_path": "package.module.Class", "init_args": {...}}``, checked
and completed by jsonargparse (the parser LightningCLI uses for ``model.net``).

The training module keeps this dict in its hyperparameters, so checkpoints load with
``torch.load(weights_only=True)``; a network is any ``nn.Module`` built as
``Class(in_channels=..., out_channels=..., **init_args)`` (the channels come from the
representation). Only modules of this package or ones already imported are imported, so a
checkpoint naming another module cannot make loading it run that module.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from jsonargparse import ArgumentError, ArgumentParser
from torch import nn

DEFAULT_NET = "dereverb.models.unet.UNet"


class NetSpecError(ValueError):
    """A network spec that cannot be built; the message names ``model.net``."""


def import_class(class_path: str) -> type:
    """The class at ``package.module.Class``, importing only this package's modules."""
    module_name, _, name = str(class_path).rpartition(".")
    if not module_name:
        raise NetSpecError(f"model.net.class_path: expected 'package.module.Class', got {class_path!r}; e.g. {DEFAULT_NET}")
    if module_name not in sys.modules and module_name.split(".")[0] != "dereverb":
        raise NetSpecError(f"model.net.class_path: {class_path}: module not imported; import {module_name} first")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise NetSpecError(f"model.net.class_path: cannot import {class_path} ({exc}); e.g. {DEFAULT_NET}") from exc


def _plain(value: Any) -> Any:
    """Namespaces and mappings -> dicts, tuples -> lists, recursively."""
    value = value.as_dict() if hasattr(value, "as_dict") else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@functools.cache
def _parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--net", type=Callable[[int, int], nn.Module])
    return parser


def net_spec(value: Any = None) -> dict[str, Any]:
    """``value`` (None for the U-Net, a ``{class_path, init_args}`` mapping, a class, or
    jsonargparse's ``functools.partial`` of one) -> the checked plain spec, class path in full
    and every argument filled in. Raises :class:`NetSpecError`."""
    if isinstance(value, functools.partial):  # jsonargparse's Callable: the class and its arguments
        cls = next(a for a in (value.func, *value.args) if isinstance(a, type))
        value = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": value.keywords}
    elif isinstance(value, type):
        value = {"class_path": f"{value.__module__}.{value.__qualname__}"}
    spec = _plain(value) if value is not None else {"class_path": DEFAULT_NET}
    if not isinstance(spec, dict):
        raise NetSpecError(f"model.net: expected {{class_path, init_args}}, got {type(value).__name__}")
    cls = import_class(spec.get("class_path", DEFAULT_NET))
    try:
        parsed = _parser().parse_object({"net": {**spec, "class_path": spec.get("class_path", DEFAULT_NET)}}).net
    except ArgumentError as exc:
        raise NetSpecError(f"model.net: {' '.join(str(exc).split())}") from exc
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": _plain(parsed.init_args or {})}


def build_net(spec: Mapping[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    """The network of a spec (see :func:`net_spec`) for ``in_channels`` -> ``out_channels``."""
    cls = import_class(spec["class_path"])
    try:
        return cls(in_channels=in_channels, out_channels=out_channels, **dict(spec.get("init_args") or {}))
    except (ValueError, TypeError) as exc:  # the network refuses its arguments
        raise NetSpecError(f"model.net.init_args: {exc}") from exc
