"""Pointwise single-channel maps of the magnitude: raw, log, dB grey image, power law.

Each maps every bin on its own (no state along time), ``(B, F, N) -> (B, 1, F, N)``; those
with a per-utterance reference carry it in ctx ``{"ref": (B,)}``.
"""

from __future__ import annotations

import torch

from dereverb.representations.base import (
    Ctx,
    Representation,
    _check_levels,
    _check_number,
    _need,
    register,
)


@register
class Magnitude(Representation):
    """Raw ``S`` (the ``numpy.save`` case): 1 channel, softplus output."""

    name = "magnitude"
    output_activation = "softplus"

    def _encode(self, mag, ctx):
        return mag.unsqueeze(1), {}

    def _decode(self, x, ctx):
        return x[:, 0].clamp_min(0)


@register
class LogMagnitude(Representation):
    """``log(S + eps)``: 1 channel, identity output; ``eps`` 1e-5 (-100 dB re 1)."""

    name = "log_magnitude"

    def __init__(self, eps: float = 1e-5) -> None:
        self.eps = _check_number("log_magnitude eps", eps)

    def _encode(self, mag, ctx):
        return torch.log(mag.clamp_min(0) + self.eps).unsqueeze(1), {}

    def _decode(self, x, ctx):
        return (torch.exp(x[:, 0]) - self.eps).clamp_min(0)


@register
class Grayscale(Representation):
    """dB image in [0, 1]: ``(20 log10(S + eps) - (ref - dynamic_range)) / dynamic_range``, clipped.

    ``reference="max"``: ref = the utterance's own max dB (per item, like an image);
    a float: a fixed global reference in dB. ``levels``: None (continuous) or e.g. 256 (8 bit).
    ctx ``{"ref": (B,)}`` in dB.
    """

    name = "grayscale"
    output_activation = "sigmoid"

    def __init__(self, reference: str | float = "max", dynamic_range: float = 80.0,
                 levels: int | None = None, eps: float = 1e-8) -> None:
        if reference != "max":
            reference = _check_number("grayscale reference (dB) or 'max'", reference, positive=False)
        self.reference = reference
        self.dynamic_range = _check_number("dynamic_range (dB)", dynamic_range)
        self.levels = _check_levels(levels)
        self.eps = _check_number("grayscale eps", eps)

    def to_db(self, mag: torch.Tensor) -> torch.Tensor:
        return 20.0 * torch.log10(mag.clamp_min(0) + self.eps)

    def reference_db(self, mag: torch.Tensor, ctx: Ctx | None) -> torch.Tensor:
        """``(B,)`` reference in dB: from ctx when given, else from ``mag`` / the fixed value."""
        b = mag.shape[0]
        if ctx is not None:
            return _need(ctx, "ref", self.name, (b,))
        if self.reference == "max":
            return self.to_db(mag).amax(dim=(1, 2)).detach()
        return torch.full((b,), self.reference, dtype=mag.dtype, device=mag.device)

    def gray(self, mag: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Continuous grey level in [0, 1], ``(B, F, N)`` (no quantisation)."""
        floor = (ref - self.dynamic_range)[:, None, None]
        return ((self.to_db(mag) - floor) / self.dynamic_range).clamp(0, 1)

    def ungray(self, g: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        db = g.clamp(0, 1) * self.dynamic_range + (ref - self.dynamic_range)[:, None, None]
        return (torch.pow(10.0, db / 20.0) - self.eps).clamp_min(0)

    def _encode(self, mag, ctx):
        ref = self.reference_db(mag, ctx)
        g = self.gray(mag, ref)
        if self.levels is not None:
            g = torch.round(g * (self.levels - 1)) / (self.levels - 1)
        return g.unsqueeze(1), {"ref": ref}

    def _decode(self, x, ctx):
        return self.ungray(x[:, 0], _need(ctx, "ref", self.name, (x.shape[0],)))


# Not registered: only a channel of ``stacked`` today (register it to train on it alone).
class PowerLaw(Representation):
    """``(S / max S) ** exponent`` per utterance (the stacked "power" channel); ctx ``{"ref": (B,)}``."""

    name = "power"
    output_activation = "sigmoid"

    def __init__(self, exponent: float = 0.3) -> None:
        self.exponent = _check_number("power exponent", exponent)

    def _encode(self, mag, ctx):
        b = mag.shape[0]
        ref = _need(ctx, "ref", self.name, (b,)) if ctx is not None else mag.amax(dim=(1, 2)).clamp_min(1e-12).detach()
        return (mag.clamp_min(0) / ref[:, None, None]).pow(self.exponent).unsqueeze(1), {"ref": ref}

    def _decode(self, x, ctx):
        ref = _need(ctx, "ref", self.name, (x.shape[0],))
        return x[:, 0].clamp_min(0).pow(1.0 / self.exponent) * ref[:, None, None]
