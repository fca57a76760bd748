"""The ``stacked`` representation: several single-channel frontends as the channels of one input."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dereverb.representations.base import Representation, register
from dereverb.representations.pcen import Pcen
from dereverb.representations.scalar import Grayscale, LogMagnitude, PowerLaw


@register
class Stacked(Representation):
    """Several single-channel frontends as channels (Merlin Sound ID style), default dB, PCEN, power.

    ``frontends`` from ``"db"`` (continuous grayscale, ``reference``/``dynamic_range``),
    ``"pcen"`` (defaults), ``"power"`` (``(S/max)**power_exponent``), ``"log"`` (log magnitude).
    ctx keys are prefixed by the frontend (``"db.ref"``, ``"pcen.M"``, ``"power.ref"``).
    decode uses only the FIRST channel (its frontend's inverse); the others are extra input
    views for the network. Channel ranges differ, so ``output_activation`` is identity.
    """

    name = "stacked"
    output_activation = "identity"
    FRONTENDS = ("db", "pcen", "power", "log")

    def __init__(self, frontends: Sequence[str] = ("db", "pcen", "power"), reference: str | float = "max",
                 dynamic_range: float = 80.0, power_exponent: float = 0.3) -> None:
        if isinstance(frontends, str) or not isinstance(frontends, (list, tuple)) or not frontends:
            raise ValueError(f"stacked frontends must be a non-empty list from {', '.join(self.FRONTENDS)}, "
                             f"got {frontends!r}")
        bad = [f for f in frontends if f not in self.FRONTENDS]
        if bad or len(set(frontends)) != len(frontends):
            raise ValueError(f"stacked frontends must be distinct names from {', '.join(self.FRONTENDS)}, "
                             f"got {list(frontends)!r}")
        self.frontends = tuple(frontends)
        self.reference, self.dynamic_range, self.power_exponent = reference, dynamic_range, power_exponent
        make = {"db": lambda: Grayscale(reference=reference, dynamic_range=dynamic_range),
                "pcen": Pcen, "power": lambda: PowerLaw(power_exponent), "log": LogMagnitude}
        self.parts = [make[f]() for f in self.frontends]
        self.channels = len(self.parts)

    def _encode(self, mag, ctx):
        xs, out_ctx = [], {}
        for key, part in zip(self.frontends, self.parts, strict=True):
            sub = None
            if ctx is not None:
                sub = {k.split(".", 1)[1]: v for k, v in ctx.items() if k.startswith(key + ".")}
            x, c = part._encode(mag, sub)
            xs.append(x)
            out_ctx.update({f"{key}.{k}": v for k, v in c.items()})
        return torch.cat(xs, dim=1), out_ctx

    def _decode(self, x, ctx):
        key = self.frontends[0]
        sub = {k.split(".", 1)[1]: v for k, v in (ctx or {}).items() if k.startswith(key + ".")}
        return self.parts[0]._decode(x[:, :1], sub)
