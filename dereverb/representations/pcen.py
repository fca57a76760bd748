"""Per-channel energy normalisation (PCEN) in torch, with an exact inverse.

Follows ``librosa.pcen`` (Wang et al. 2017; Lostanlen et al. 2019, "Per-channel energy
normalization: why and how"): with a first-order IIR smoother ``M`` of the magnitude ``S``
along time,

    PCEN = (S / (eps + M)**gain + bias)**power - bias**power

computed in librosa's stable form ``bias**power * expm1(power * log1p(S (eps+M)**-gain / bias))``.
Given ``M`` the map is strictly increasing in ``S``, so it inverts analytically.

A smoother started from zero makes the first ~T seconds of PCEN wrong, so it starts from
the state of a first pass over the spectrogram (:func:`smoother`). :class:`Pcen` is the
``pcen`` representation; ``learned_pcen`` reuses these functions with trainable parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from dereverb.representations.base import Representation, _need, register


@dataclass(frozen=True)
class PcenConfig:
    """librosa.pcen defaults; frame rate from a 16 kHz / hop-128 STFT (125 frames/s)."""

    gain: float = 0.98
    bias: float = 2.0
    power: float = 0.5
    time_constant: float = 0.4
    eps: float = 1e-6
    sample_rate: int = 16000
    hop_length: int = 128

    def __post_init__(self) -> None:
        for field in ("gain", "bias", "power", "time_constant", "eps"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"pcen {field} must be a positive number, got {value!r}")
        for field in ("sample_rate", "hop_length"):
            value = getattr(self, field)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"pcen {field} must be a positive integer, got {value!r}")

    @property
    def smoothing(self) -> float:
        """The smoother's coefficient s (librosa's formula from the time constant in frames)."""
        t_frames = self.time_constant * self.sample_rate / self.hop_length
        return (math.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)


INITS: tuple[str, ...] = ("reflect", "loop", "zero")
Param = float | torch.Tensor  # a PCEN parameter: one value, or one per band (F, 1)


def smoother(mag: torch.Tensor, s: float | torch.Tensor, init: str = "reflect") -> torch.Tensor:
    """IIR smoother ``M[n] = (1 - s) M[n-1] + s S[n]`` along the last axis: ``(B, F, N) -> (B, F, N)``.

    ``s``: one coefficient (a float), or one per band, a tensor ``(F,)`` (``learned_pcen``;
    differentiable in ``s``: torchaudio's ``lfilter`` has a backward for its coefficients).

    The initial state ``M[-1]`` (why: a cold start makes the first ~T seconds of PCEN wrong):

    - ``"reflect"`` (default): the smoother first runs over the spectrogram time-reversed,
      started from the per-bin mean, i.e. the spectrogram looped back on itself mirror-wise;
      the state it ends in weights the first frames most (``s (1-s)**n`` on frame n).
    - ``"loop"``: the state after one pass over the spectrogram (periodic continuation);
      fine for stationary input, but a loud ending then leaks into the first frames.
    - ``"zero"``: ``M[-1] = 0`` (torchaudio's zero state) - the start-up artefact, kept to
      show in the tests what the others remove.
    """
    if init not in INITS:
        raise ValueError(f"pcen init must be one of {', '.join(INITS)}, got {init!r}")
    n = mag.shape[-1]
    # Zero-state response by torchaudio's IIR kernel, plus the decaying initial-state term.
    if isinstance(s, torch.Tensor):
        if s.dim() != 1 or s.shape[0] != mag.shape[-2]:
            raise ValueError(f"pcen smoother: per-band s must have shape ({mag.shape[-2]},), got {tuple(s.shape)}")
        s = s.to(mag.dtype)[:, None]  # (F, 1): one filter per band
        a = 1.0 - s
        zero_state = AF.lfilter(mag, torch.cat([torch.ones_like(s), -a], 1), torch.cat([s, torch.zeros_like(s)], 1),
                                clamp=False, batching=True)
    else:
        a = 1.0 - s
        zero_state = AF.lfilter(
            mag,
            torch.tensor([1.0, -a], dtype=mag.dtype, device=mag.device),
            torch.tensor([s, 0.0], dtype=mag.dtype, device=mag.device),
            clamp=False,
        )
    if init == "zero":
        return zero_state
    decay = a ** torch.arange(1, n + 1, dtype=mag.dtype, device=mag.device)  # a^(n+1), n = 0..N-1; (N,) or (F, N)
    if init == "loop":
        tail = zero_state[..., -1]
    else:  # the zero-state response of the reversed spectrogram at its end: sum_n s a^n S[n]
        tail = (mag * (s * decay / a)).sum(dim=-1)
    initial = decay[..., -1] * mag.mean(dim=-1) + tail  # (B, F)
    return zero_state + decay * initial[..., None]


def pcen_map(mag: torch.Tensor, m: torch.Tensor, gain: Param, bias: Param, power: Param, eps: float) -> torch.Tensor:
    """PCEN of ``mag (B, F, N)`` given the smoother ``m (B, F, N)`` -> ``(B, F, N)`` >= 0.

    ``gain`` / ``bias`` / ``power``: floats, or tensors broadcasting to ``(B, F, N)`` (per band:
    ``(F, 1)``), so the fixed and the learned PCEN share this code."""
    gained = mag.clamp_min(0) * torch.exp(-gain * torch.log(eps + m.clamp_min(0)))
    return bias**power * torch.expm1(power * torch.log1p(gained / bias))


def pcen_unmap(p: torch.Tensor, m: torch.Tensor, gain: Param, bias: Param, power: Param, eps: float) -> torch.Tensor:
    """Inverse of :func:`pcen_map` given the same ``m`` and parameters -> magnitude ``(B, F, N)``.

    Negative inputs (a network output below 0) clamp to 0, i.e. to silence.
    """
    gained = bias * torch.expm1(torch.log1p(p.clamp_min(0) / bias**power) / power)
    return gained * torch.exp(gain * torch.log(eps + m.clamp_min(0)))


@register
class Pcen(Representation):
    """Per-channel energy normalisation (librosa defaults; ``init`` of the smoother, see :func:`smoother`).

    ctx ``{"M": (B, F, N)}``: the smoother of the *input*; the clean target is encoded and
    every output decoded with it, which makes the inverse exact for the input.
    """

    name = "pcen"
    output_activation = "softplus"

    def __init__(self, gain: float = 0.98, bias: float = 2.0, power: float = 0.5, time_constant: float = 0.4,
                 eps: float = 1e-6, sample_rate: int = 16000, hop_length: int = 128, init: str = "reflect") -> None:
        self.cfg = PcenConfig(gain, bias, power, time_constant, eps, sample_rate, hop_length)
        if init not in INITS:
            raise ValueError(f"pcen init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        for k in ("gain", "bias", "power", "time_constant", "eps", "sample_rate", "hop_length"):
            setattr(self, k, getattr(self.cfg, k))

    def _encode(self, mag, ctx):
        if ctx is not None:
            m = _need(ctx, "M", self.name, tuple(mag.shape))
        else:
            m = smoother(mag.clamp_min(0), self.cfg.smoothing, self.init).detach()
        return pcen_map(mag, m, self.gain, self.bias, self.power, self.eps).unsqueeze(1), {"M": m}

    def _decode(self, x, ctx):
        b, _, f, n = x.shape
        return pcen_unmap(x[:, 0], _need(ctx, "M", self.name, (b, f, n)), self.gain, self.bias, self.power, self.eps)
