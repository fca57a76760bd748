"""The representation interface and its registry: encode a magnitude, decode a network output.

``build(name, **kwargs) -> Representation``; ``names()`` lists the names. Every
representation has ``channels`` and ``output_activation`` (``"sigmoid"`` for [0, 1] images,
``"identity"`` for log magnitude, ``"softplus"`` for non-negative unbounded values), and

- ``encode(mag (B, F, N), ctx=None) -> (x (B, C, F, N), ctx)``: ``ctx`` is a small dict of
  tensors (e.g. ``{"ref": (B,)}``). Encoding the clean target with the reverberant input's
  ``ctx`` reuses the input's reference, so a network output decodes with it (the clean
  maximum is unknown at inference).
- ``decode(x (B, C, F, N), ctx) -> mag (B, F, N)``.

Everything runs in float32 with autocast disabled, on whatever device the tensors are on.
Magnitudes are ``|STFT|`` with the Nyquist bin dropped (``dereverb.signals.dsp.magnitude``).
Round-trip errors of every representation are measured in docs/representations.md.

A new representation: subclass :class:`Representation` (trainable ones:
:class:`~dereverb.representations.learned.LearnedRepresentation`), decorate it with ``@register``
and import its module in ``__init__``.
"""

from __future__ import annotations

import abc
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch

Ctx = dict[str, torch.Tensor]


def _float32(fn: Callable) -> Callable:
    """Run ``fn(self, tensor, ctx)`` on a float32 tensor with autocast off for its device."""

    @functools.wraps(fn)
    def wrapper(self: Representation, x: torch.Tensor, ctx: Ctx | None = None):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}.{fn.__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise ValueError(f"{self.name}.{fn.__name__} expects a real tensor; take the magnitude first "
                             "(dereverb.signals.dsp.magnitude)")
        if ctx is not None and not isinstance(ctx, dict):
            raise TypeError(f"{self.name}: ctx must be the dict returned by encode, got {type(ctx).__name__}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            if ctx is not None:
                ctx = {k: v.float() for k, v in ctx.items()}
            return fn(self, x.float(), ctx)

    return wrapper


def _need(ctx: Ctx | None, key: str, owner: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``ctx[key]``, checked to have ``shape``; a clear error when decode gets the wrong ctx."""
    if ctx is None or key not in ctx:
        raise ValueError(f"{owner}: ctx lacks {key!r}; pass the ctx returned by encode() of the input")
    value = ctx[key]
    if tuple(value.shape) != shape:
        raise ValueError(f"{owner}: ctx[{key!r}] has shape {tuple(value.shape)}, expected {shape} "
                         "(ctx from a different batch?)")
    return value


def _check_number(name: str, value: Any, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_levels(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 65536:
        raise ValueError(f"levels must be None (continuous) or an integer in [2, 65536], got {value!r}")
    return value


class Representation(abc.ABC):
    """Base class: ``encode(mag (B, F, N), ctx=None) -> (x (B, C, F, N), ctx)``, ``decode(x, ctx)``.

    Subclasses implement ``_encode`` / ``_decode``; the public methods check shapes and run
    them in float32."""

    name: str = ""
    channels: int = 1
    output_activation: str = "identity"

    @classmethod
    def valid_kwargs(cls, kwargs: dict[str, Any]) -> list[str]:
        """Keyword arguments ``build`` accepts for this representation (given the others)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]

    @classmethod
    def kwargs_note(cls, kwargs: dict[str, Any]) -> str:
        """Extra words for ``build``'s unknown-argument error (e.g. which base was assumed)."""
        return ""

    @_float32
    def encode(self, mag: torch.Tensor, ctx: Ctx | None = None) -> tuple[torch.Tensor, Ctx]:
        if mag.dim() != 3:
            raise ValueError(f"{self.name}.encode expects a magnitude (B, F, N), got shape {tuple(mag.shape)}")
        return self._encode(mag, ctx)

    @_float32
    def decode(self, x: torch.Tensor, ctx: Ctx | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{self.name}.decode expects (B, {self.channels}, F, N), got shape {tuple(x.shape)}")
        return self._decode(x, ctx)

    @abc.abstractmethod
    def _encode(self, mag: torch.Tensor, ctx: Ctx | None) -> tuple[torch.Tensor, Ctx]:
        """``mag`` (B, F, N) float32 -> (x (B, C, F, N), ctx)."""

    @abc.abstractmethod
    def _decode(self, x: torch.Tensor, ctx: Ctx | None) -> torch.Tensor:
        """``x`` (B, C, F, N) float32 and the encode ctx -> magnitude (B, F, N)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.valid_kwargs({}) if hasattr(self, k))
        return f"{type(self).__name__}({params})"


# Filled by @register as the family modules are imported; ``names()`` keeps registration
# order, i.e. the import order in ``__init__``.
_REGISTRY: dict[str, type[Representation]] = {}

RepT = TypeVar("RepT", bound=type[Representation])


def register(cls: RepT) -> RepT:
    """Class decorator: make ``cls`` buildable as ``build(cls.name, ...)``.

    A name taken by another class is an error; the same class again (a module reload) replaces it.
    """
    old = _REGISTRY.get(cls.name)
    if not cls.name or (old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__)):
        raise ValueError(f"representation name {cls.name!r} is empty or already taken by {old!r}")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """The representation names ``build`` accepts."""
    return list(_REGISTRY)


def lookup(name: str) -> type[Representation]:
    """The class registered as ``name``; ``ValueError`` lists valid choices."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown representation {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build(name: str, **kwargs: Any) -> Representation:
    """Representation ``name`` with its keyword arguments; ``ValueError`` lists valid choices."""
    cls = lookup(name)
    valid = cls.valid_kwargs(kwargs)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(unknown)} for representation {name!r}"
                         f"{cls.kwargs_note(kwargs)}; valid: {', '.join(valid) or '(none)'}")
    return cls(**kwargs)
