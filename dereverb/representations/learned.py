"""Learned frontends: representations whose per-band parameters train with the network.

After the Merlin Sound ID study (learned compression) and the trainable PCEN of Wang et al.
2017. Both are ``nn.Module`` s (:class:`LearnedRepresentation`), submodules of the
:class:`~dereverb.models.dereverber.Dereverber`, so their parameters are in its ``state_dict``
and train with the network.

- ``learned_power``: ``x = (S / ref) ** p_f``, ``p_f = 1 / (1 + exp(a_f))`` per band,
  ``ref`` the item's maximum (as ``power`` in ``stacked``); inverse ``ref * x ** (1 / p_f)``.
- ``learned_pcen``: PCEN (:mod:`~dereverb.representations.pcen`'s smoother and map) with
  per-band ``alpha = exp(log_alpha)``, ``delta = exp(log_delta)``, ``r = exp(log_r)`` (log
  space, as Wang et al.) and smoother coefficient ``s = sigmoid(s_logit)`` (stays in (0, 1),
  a stable average); inverse given the smoother ``M`` in ctx, as ``pcen``.

The parameters are per frequency band: ``n_bands`` must equal the magnitude's ``F``
(``n_fft // 2``; ``Dereverber.from_hparams`` fills it in).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dereverb.representations.base import Ctx, Representation, _check_number, _need, register
from dereverb.representations.pcen import INITS, PcenConfig, pcen_map, pcen_unmap, smoother


def _check_bands(owner: str, n_bands: Any) -> int:
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
        raise ValueError(f"{owner} n_bands must be a positive integer (n_fft // 2), got {n_bands!r}")
    return n_bands


class LearnedRepresentation(Representation, nn.Module):
    """A :class:`Representation` with trainable per-band parameters (an ``nn.Module``).

    Subclasses read their parameters through :meth:`_param` (float32; detached inside
    :meth:`frozen`) and check the band count with :meth:`_check_f`."""

    def __init__(self, n_bands: int) -> None:
        nn.Module.__init__(self)
        self.n_bands = _check_bands(self.name, n_bands)
        self._frozen = False

    @contextlib.contextmanager
    def frozen(self) -> Iterator[LearnedRepresentation]:
        """Encode / decode with the parameters and ctx detached (no gradient reaches them).

        ``Dereverber`` encodes the clean target of ``target: same`` like this: with a live
        target the loss could shrink by collapsing the domain itself (``p_f -> 0`` or
        PCEN's ``r -> 0`` map every bin to about the same value), so the parameters learn
        only through the network's input."""
        old, self._frozen = self._frozen, True
        try:
            yield self
        finally:
            self._frozen = old

    def _param(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()  # float32 even if the module was cast (e.g. a "16-true" trainer)
        return t.detach() if self._frozen else t

    def _ctx(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach() if self._frozen else t

    def _check_f(self, f: int) -> None:
        if f != self.n_bands:
            raise ValueError(f"{self.name}: the magnitude has F={f} bins but n_bands={self.n_bands}; "
                             "set representation_kwargs.n_bands to n_fft // 2")

    def forward(self, mag: torch.Tensor, ctx: Ctx | None = None) -> tuple[torch.Tensor, Ctx]:
        """``encode`` (so the module is callable like any other)."""
        return self.encode(mag, ctx)


def frozen(rep: Representation) -> contextlib.AbstractContextManager:
    """:meth:`LearnedRepresentation.frozen` for a learned representation, a no-op for a fixed one."""
    return rep.frozen() if isinstance(rep, LearnedRepresentation) else contextlib.nullcontext(rep)


@register
class LearnedPower(LearnedRepresentation):
    """Per-band learned power law ``x = (S / ref) ** p_f``, ``p_f = 1 / (1 + exp(a_f))`` in (0, 1).

    ``ref``: the item's maximum magnitude (``(B,)``, detached; floor 1e-12), so ``x`` is in
    [0, 1] whatever the level, like the fixed ``power`` channel of ``stacked``. ``exponent``:
    the initial ``p_f`` for every band (0.3, a common fixed compression). ctx ``{"ref": (B,)}``.
    Decode ``ref * x ** (1 / p_f)`` (exact up to float32 rounding). Parameter: ``a`` ``(F,)``.
    """

    name = "learned_power"
    output_activation = "sigmoid"

    def __init__(self, exponent: float = 0.3, n_bands: int = 256) -> None:
        super().__init__(n_bands)
        exponent = _check_number("learned_power exponent", exponent)
        if not exponent < 1:
            raise ValueError(f"learned_power exponent must be in (0, 1) (p = 1 / (1 + exp(a))), got {exponent!r}")
        self.exponent = exponent
        self.a = nn.Parameter(torch.full((n_bands,), math.log((1 - exponent) / exponent)))

    def exponents(self) -> torch.Tensor:
        """``p_f`` ``(F,)`` float32 (``1 / (1 + exp(a_f)) = sigmoid(-a_f)``)."""
        return torch.sigmoid(-self._param(self.a))

    def _encode(self, mag, ctx):
        b, f, _ = mag.shape
        self._check_f(f)
        if ctx is not None:
            ref = self._ctx(_need(ctx, "ref", self.name, (b,)))
        else:
            ref = mag.amax(dim=(1, 2)).clamp_min(1e-12).detach()
        x = (mag.clamp_min(0) / ref[:, None, None]).pow(self.exponents()[:, None])
        return x.unsqueeze(1), {"ref": ref}

    def _decode(self, x, ctx):
        b, _, f, _ = x.shape
        self._check_f(f)
        ref = self._ctx(_need(ctx, "ref", self.name, (b,)))
        return x[:, 0].clamp_min(0).pow(1.0 / self.exponents()[:, None]) * ref[:, None, None]


@register
class LearnedPcen(LearnedRepresentation):
    """PCEN with per-band trainable ``alpha`` (gain), ``delta`` (bias), ``r`` (power) and smoother ``s``.

    Initialised from ``pcen``'s arguments (librosa defaults: at init it equals ``pcen``).
    Parameters ``(F,)``: ``log_alpha``, ``log_delta``, ``log_r`` (positive through ``exp``,
    Wang et al.'s log-space parametrisation) and ``s_logit`` (``s = sigmoid(s_logit)`` in
    (0, 1); the smoother is differentiable in ``s``). ctx ``{"M": (B, F, N)}``: the smoother
    of the input (not detached: gradients reach ``s`` through it); the clean target is
    encoded and every output decoded with it, so the inverse is exact, as for ``pcen``.
    """

    name = "learned_pcen"
    output_activation = "softplus"

    def __init__(self, gain: float = 0.98, bias: float = 2.0, power: float = 0.5, time_constant: float = 0.4,
                 eps: float = 1e-6, sample_rate: int = 16000, hop_length: int = 128, init: str = "reflect",
                 n_bands: int = 256) -> None:
        super().__init__(n_bands)
        try:
            cfg = PcenConfig(gain, bias, power, time_constant, eps, sample_rate, hop_length)
        except ValueError as exc:
            raise ValueError(f"learned_{exc}") from None  # "learned_pcen gain must be ..."
        if init not in INITS:
            raise ValueError(f"learned_pcen init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        for k in ("gain", "bias", "power", "time_constant", "eps", "sample_rate", "hop_length"):
            setattr(self, k, getattr(cfg, k))
        s = cfg.smoothing
        if not 0 < s < 1:
            raise ValueError(f"learned_pcen time_constant gives smoother coefficient s={s!r}, need 0 < s < 1; "
                             "use a time constant of at least one frame")

        def full(v: float) -> nn.Parameter:
            return nn.Parameter(torch.full((n_bands,), v))

        self.log_alpha = full(math.log(cfg.gain))
        self.log_delta = full(math.log(cfg.bias))
        self.log_r = full(math.log(cfg.power))
        self.s_logit = full(math.log(s / (1 - s)))

    def parameters_per_band(self) -> dict[str, torch.Tensor]:
        """``alpha``, ``delta``, ``r``, ``s``: ``(F,)`` float32 each."""
        return {"alpha": torch.exp(self._param(self.log_alpha)), "delta": torch.exp(self._param(self.log_delta)),
                "r": torch.exp(self._param(self.log_r)), "s": torch.sigmoid(self._param(self.s_logit))}

    def _map_args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.parameters_per_band()
        return p["alpha"][:, None], p["delta"][:, None], p["r"][:, None]  # (F, 1) each

    def _encode(self, mag, ctx):
        self._check_f(mag.shape[1])
        if ctx is not None:
            m = self._ctx(_need(ctx, "M", self.name, tuple(mag.shape)))
        else:
            m = smoother(mag.clamp_min(0), self.parameters_per_band()["s"], self.init)
        return pcen_map(mag, m, *self._map_args(), self.eps).unsqueeze(1), {"M": m}

    def _decode(self, x, ctx):
        b, _, f, n = x.shape
        self._check_f(f)
        m = self._ctx(_need(ctx, "M", self.name, (b, f, n)))
        return pcen_unmap(x[:, 0], m, *self._map_args(), self.eps)
