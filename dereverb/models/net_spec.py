"""A network as plain data: ``{"class_path": "package.module.Class", "init_args": {...}}``.

The training module keeps this dict in its hyperparameters, so checkpoints stay loadable with
``torch.load(weights_only=True)``, and builds the network from it with ``in_channels`` /
``out_channels`` taken from the representation. A network is any ``nn.Module`` whose
constructor takes ``in_channels``, ``out_channels`` and its own keyword arguments; one that
pools says so in ``downsampling_factor`` (chunked inference aligns its chunks to it).

Checkpoints written before networks were pluggable hold the U-Net's arguments flat
(``base_channels``, ``depth``, ...): :func:`upgrade_hparams` turns those into a spec.

Building only imports modules of this package or ones already imported, so a checkpoint naming
some other module cannot make loading it import (and run) that module.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from torch import nn

DEFAULT_NET = "dereverb.models.unet.UNet"
CHANNEL_ARGS = ("in_channels", "out_channels")
# The U-Net's arguments as the training module took them before ``net`` existed.
LEGACY_NET_KEYS = ("base_channels", "depth", "norm", "activation", "input_expansion")
_TRUSTED_PACKAGE = "dereverb"


class NetSpecError(ValueError):
    """A network spec that cannot be built; the message names the ``model.net`` key and the fix."""


def class_path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(class_path: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass at ``class_path`` (``package.module.Class``).

    Imports the module only when it belongs to this package or is imported already; raises
    :class:`NetSpecError` otherwise, and when the path does not name an ``nn.Module`` class."""
    if not isinstance(class_path, str) or "." not in class_path:
        raise NetSpecError(
            f"model.net.class_path: expected 'package.module.Class', got {class_path!r}; e.g. {DEFAULT_NET}"
        )
    module_name, _, name = class_path.rpartition(".")
    if module_name not in sys.modules and module_name.split(".")[0] != _TRUSTED_PACKAGE:
        raise NetSpecError(
            f"model.net.class_path: {class_path} is in module {module_name}, which is not imported; "
            f"import {module_name} first (only modules of {_TRUSTED_PACKAGE} are imported automatically)"
        )
    try:
        obj = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise NetSpecError(
            f"model.net.class_path: cannot import {class_path} ({exc}); give an importable nn.Module class, "
            f"e.g. {DEFAULT_NET}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise NetSpecError(f"model.net.class_path: {class_path} is not a torch.nn.Module class; e.g. {DEFAULT_NET}")
    return obj


def _plain(value: Any) -> Any:
    """Tuples -> lists, mappings (jsonargparse Namespaces too) -> dicts, recursively."""
    if hasattr(value, "as_dict") and callable(value.as_dict):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unwrap(value: Any) -> tuple[str, dict[str, Any]]:
    """``value`` as ``(class_path, init_args)``: a spec mapping, a class, or a
    ``functools.partial`` of a class (what jsonargparse makes of a ``Callable[[int, int],
    nn.Module]`` argument: the class and its init_args, waiting for the two channel counts)."""
    if isinstance(value, Mapping) or (hasattr(value, "as_dict") and hasattr(value, "class_path")):
        spec = _plain(value)
        unknown = set(spec) - {"class_path", "init_args"}
        if unknown:
            raise NetSpecError(
                f"model.net: unknown key(s) {', '.join(sorted(unknown))}; a network is {{class_path, init_args}}"
            )
        init_args = spec.get("init_args") or {}
        if not isinstance(init_args, dict):
            raise NetSpecError(f"model.net.init_args: expected a mapping of arguments, got {init_args!r}")
        return spec.get("class_path", DEFAULT_NET), init_args
    if isinstance(value, type):
        return class_path_of(value), {}
    if isinstance(value, functools.partial):
        classes = [a for a in (value.func, *value.args) if isinstance(a, type) and issubclass(a, nn.Module)]
        if len(classes) == 1:
            return class_path_of(classes[0]), _plain(dict(value.keywords))
    raise NetSpecError(
        f"model.net: expected {{class_path, init_args}} (a plain dict, so checkpoints hold plain "
        f"hyperparameters), got {type(value).__name__}"
    )


def _is_plain_default(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain_default(v) for v in value)
    return False


def net_spec(value: Any = None, legacy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Normalise a network choice into a checked plain spec ``{class_path, init_args}``.

    ``value``: None (the U-Net), a ``{class_path, init_args}`` mapping, an ``nn.Module``
    class or a ``functools.partial`` of one. ``legacy``: the U-Net's old flat arguments
    (``base_channels``, ...), folded into ``init_args`` (old checkpoints). The class path is
    written out in full (``module.Class``) and the arguments left at their defaults are filled
    in, so the spec says exactly what was built. Raises :class:`NetSpecError`.
    """
    legacy = dict(legacy or {})
    unknown = set(legacy) - set(LEGACY_NET_KEYS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    class_path, init_args = _unwrap(value if value is not None else {"class_path": DEFAULT_NET})
    init_args = {**init_args, **{k: v for k, v in legacy.items() if v is not None}}
    cls = import_class(class_path)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [k for k in CHANNEL_ARGS if k not in params and not takes_any]
    if missing:
        raise NetSpecError(
            f"model.net.class_path: {class_path} does not take {' and '.join(missing)}; a network's "
            "constructor takes in_channels, out_channels and its own arguments"
        )
    given_channels = [k for k in CHANNEL_ARGS if k in init_args]
    if given_channels:
        raise NetSpecError(
            f"model.net.init_args.{given_channels[0]}: set from the representation; remove it from init_args"
        )
    if not takes_any:
        bad = sorted(set(init_args) - set(params))
        if bad:
            raise NetSpecError(
                f"model.net.init_args.{bad[0]}: not an argument of {cls.__qualname__} "
                f"(it takes {', '.join(k for k in params if k not in ('self', *CHANNEL_ARGS))})"
            )
    for name, p in params.items():
        if name in ("self", *CHANNEL_ARGS) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in init_args:
            continue
        if p.default is p.empty:
            raise NetSpecError(f"model.net.init_args.{name}: required by {cls.__qualname__}; give a value")
        if _is_plain_default(p.default):
            init_args[name] = p.default
    return {"class_path": class_path_of(cls), "init_args": _plain(init_args)}


def build_net(spec: Mapping[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    """The network of a spec (see :func:`net_spec`) for ``in_channels`` -> ``out_channels``."""
    cls = import_class(spec["class_path"])
    try:
        return cls(in_channels=in_channels, out_channels=out_channels, **dict(spec.get("init_args") or {}))
    except (ValueError, TypeError) as exc:  # the network refuses its arguments
        raise NetSpecError(f"model.net.init_args: {exc}") from exc


def upgrade_hparams(hp: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters (or a ``model`` config) with the U-Net's old flat keys folded into
    ``net.init_args``; those keys win over a ``net`` given as well. Without them, a copy."""
    hp = dict(hp)
    flat = {k: hp.pop(k) for k in LEGACY_NET_KEYS if k in hp}
    if not flat:
        return hp
    net = _plain(hp.get("net") or {"class_path": DEFAULT_NET})
    net["init_args"] = {**(net.get("init_args") or {}), **{k: v for k, v in flat.items() if v is not None}}
    hp["net"] = net
    return hp
