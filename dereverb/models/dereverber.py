"""``Dereverber``: the whole spectral path as one plain ``nn.Module`` — STFT, input
representation, network, output activation, decoding and phase recovery.

Training (:mod:`dereverb.training.module`) and inference (:mod:`dereverb.inference`) share it, so a
checkpoint gives the same numbers in both; inference needs no Lightning. Only the network runs
under autocast; STFT, representation encode/decode and phase recovery run in float32.
A learned input representation (``learned_power``, ``learned_pcen``) is a submodule: its
parameters are in ``state_dict()`` as ``input_repr.*`` and train with the network.

Level: with ``input_level`` set, the magnitude is scaled to that speech level before the
representation and the estimate scaled back after decoding, so the model answers ``k * x`` with
``k * y`` (a recording 40 dB quieter is treated like a loud one). The level is measured per item,
or given per file by :func:`dereverb.inference.enhance.dereverberate` so long files do not pump.

Multi-frame filter (``filter_taps`` K > 0, an option beside the default magnitude path): the
network also sees the compressed complex spectrum (``|X|**0.3`` with its phase) and outputs K
complex taps per bin; the estimate is :func:`dsp.multiframe_filter` of the reverberant spectrum,
so it has a phase of its own, which phase recovery then starts from instead of the reverberant one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dereverb import representations as reps
from dereverb.models.net_spec import build_net, net_spec
from dereverb.signals import dsp

Target = Literal["same", "log_magnitude"]
TARGETS: tuple[str, ...] = ("same", "log_magnitude")
ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "identity": lambda t: t,
}
# Inverses of the output activations, to put the residual skip in pre-activation space.
INVERSE_ACTIVATIONS = {
    "sigmoid": lambda t: torch.logit(t.clamp(1e-4, 1 - 1e-4)),
    "softplus": lambda t: t.clamp_min(1e-6) + torch.log(-torch.expm1(-t.clamp_min(1e-6))),
    "identity": lambda t: t,
}


def level_sums(mag: torch.Tensor) -> torch.Tensor:
    """Sufficient statistics of :func:`speech_level`: ``(B, F, N)`` -> ``(B, 2)`` holding
    ``sum_n e_n**2`` and ``sum_n e_n`` with frame energies ``e_n = mean_f mag**2``. Sums over blocks
    of a long file add up to the whole file's."""
    e = mag.float().pow(2).mean(dim=-2)
    return torch.stack([e.pow(2).sum(-1), e.sum(-1)], dim=-1)


def speech_level(sums: torch.Tensor) -> torch.Tensor:
    """Level (RMS magnitude per bin) of the loud frames from :func:`level_sums` ``(B, 2)`` -> ``(B,)``.

    ``sqrt(sum e**2 / sum e)`` weights each frame by its own energy, so pauses, silence and a
    quiet noise floor hardly lower it, and it scales exactly with the signal: level(k x) = |k| level(x).
    """
    return (sums[..., 0] / sums[..., 1].clamp_min(1e-30)).sqrt()


def apply_strength(estimate: torch.Tensor, reverberant: torch.Tensor, strength: float) -> torch.Tensor:
    """How much of the estimated reverberation to remove: magnitudes ``(B, F, N)`` -> ``(B, F, N)``,
    ``|X|**(1 - s) * |Y|**s`` (0: the reverberant ``X``, 1: the estimate ``Y`` itself).

    Mixed in the log domain, the model's suppression in dB is scaled by ``s``: a reverberant tail
    then decays at a rate between the room's and the model's, like a drier room. Chosen over a
    floor on the suppression and over mixing waveforms by measurement (docs/predict.md)."""
    if strength == 1.0:
        return estimate
    tiny = torch.finfo(estimate.dtype).tiny
    return reverberant.clamp_min(tiny) ** (1.0 - strength) * estimate.clamp_min(tiny) ** strength


def check_filter_taps(filter_taps: Any, target: str) -> None:
    """``filter_taps``: an integer >= 0, and > 0 only with the ``log_magnitude`` target."""
    if not (isinstance(filter_taps, int) and filter_taps >= 0):
        raise ValueError(f"model.filter_taps must be an integer >= 0, got {filter_taps!r}")
    if filter_taps and target != "log_magnitude":
        raise ValueError("model.filter_taps > 0 needs model.target: log_magnitude (the filter's output domain)")


@dataclasses.dataclass(frozen=True)
class SpectralConfig:
    """The spectral path's hyperparameters and their defaults, in one place: ``DereverbModule``'s
    and :class:`Dereverber`'s arguments of the same names default to these, and
    :meth:`Dereverber.from_hparams` fills missing keys from them."""

    representation: str = "log_magnitude"
    representation_kwargs: dict[str, Any] | None = None
    target: Target = "log_magnitude"
    net: Any = None
    residual: bool = True
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    phase: dsp.PhaseMethod = "griffinlim-warm"
    griffin_lim_iters: int = 32
    input_level: float | None = 1.0
    filter_taps: int = 0


class Dereverber(nn.Module):
    """Reverberant waveform -> dereverberated waveform through a network on a spectrogram image.

    Args:
        net: the network ``(B, C_in, F, N) -> (B, C_out, F, N)``, ``C_in`` / ``C_out`` the
            input / target representation's channels.
        input_repr: the input representation (a learned one, an ``nn.Module``, becomes a submodule).
        target: ``same`` (the network outputs the clean image in the input's representation)
            or ``log_magnitude`` (a fixed output domain).
        residual: the network predicts a correction to the input expressed in the output domain.
        stft_cfg: the STFT.
        phase / griffin_lim_iters: default phase recovery of :meth:`enhance`.
        input_level: the speech level (:func:`speech_level`) every input is scaled to before the
            network, and the output scaled back from; ``None``: the raw level (level-dependent).
        filter_taps: 0 (the magnitude path) or the frames K of a complex multi-frame filter the
            network predicts instead (``net`` then maps ``C_in + 2`` channels to ``2 K``; needs
            ``target: log_magnitude``; ``residual``: the filter starts at the identity).
    """

    def __init__(
        self,
        net: nn.Module,
        input_repr: reps.Representation,
        target: Target = SpectralConfig.target,
        residual: bool = SpectralConfig.residual,
        stft_cfg: dsp.StftConfig | None = None,
        phase: dsp.PhaseMethod = SpectralConfig.phase,
        griffin_lim_iters: int = SpectralConfig.griffin_lim_iters,
        input_level: float | None = SpectralConfig.input_level,
        filter_taps: int = SpectralConfig.filter_taps,
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"model.target must be 'same' or 'log_magnitude', got {target!r}")
        check_filter_taps(filter_taps, target)
        if phase not in dsp.PHASE_METHODS:
            raise ValueError(f"model.phase must be one of {', '.join(dsp.PHASE_METHODS)}, got {phase!r}")
        self.net = net
        # A learned representation is an nn.Module: assigning it registers it as a submodule,
        # so its parameters train, save and move with the network. A fixed one is a plain
        # attribute and adds no state-dict keys (older checkpoints load with strict=True).
        self.input_repr = input_repr
        self.target = target
        self.residual = residual
        self.stft_cfg = stft_cfg or dsp.StftConfig()
        self.phase = phase
        self.griffin_lim_iters = griffin_lim_iters
        self.input_level = input_level
        self.filter_taps = filter_taps
        # ``target_repr`` is a property: with ``target: same`` it *is* ``input_repr``, which must
        # not be registered a second time (``target_repr.*`` duplicate state-dict keys).
        self._fixed_target_repr = None if target == "same" else reps.build("log_magnitude")
        self.output_activation = ACTIVATIONS[self.target_repr.output_activation]
        self.inverse_activation = INVERSE_ACTIVATIONS[self.target_repr.output_activation]

    @property
    def target_repr(self) -> reps.Representation:
        """The output domain's representation: ``input_repr`` (``target: same``) or ``log_magnitude``."""
        return self.input_repr if self.target == "same" else self._fixed_target_repr

    @classmethod
    def from_hparams(cls, hp: Mapping[str, Any]) -> Dereverber:
        """Build from a checkpoint's or model folder's hyperparameters (``DereverbModule``'s
        arguments); keys it does not use are ignored, missing ones take :class:`SpectralConfig`'s
        defaults. The network comes from ``net`` (``{class_path, init_args}``, see
        :mod:`dereverb.models.net_spec`; default the U-Net) with the representation's channels."""
        c = SpectralConfig(**{f.name: hp[f.name] for f in dataclasses.fields(SpectralConfig) if f.name in hp})
        check_filter_taps(c.filter_taps, c.target)
        kwargs = dict(c.representation_kwargs or {})
        if "n_bands" in reps.lookup(c.representation).valid_kwargs(kwargs):  # per-band learned parameters
            kwargs.setdefault("n_bands", c.n_fft // 2)
            if kwargs["n_bands"] != c.n_fft // 2:
                raise ValueError(f"model.representation_kwargs.n_bands={kwargs['n_bands']!r} must be n_fft // 2 = "
                                 f"{c.n_fft // 2} (the STFT's bins); leave it out to get that")
        representation = reps.build(c.representation, **kwargs)
        target_channels = representation.channels if c.target == "same" else 1
        in_channels = representation.channels + (2 if c.filter_taps else 0)
        out_channels = 2 * c.filter_taps if c.filter_taps else target_channels
        net = build_net(net_spec(c.net), in_channels, out_channels)
        stft_cfg = dsp.StftConfig(sample_rate=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length)
        return cls(net, representation, target=c.target, residual=c.residual, stft_cfg=stft_cfg, phase=c.phase,
                   griffin_lim_iters=c.griffin_lim_iters, input_level=c.input_level, filter_taps=c.filter_taps)

    @property
    def sample_rate(self) -> int:
        return self.stft_cfg.sample_rate

    @property
    def pooling_frames(self) -> int:
        """Frames per pooling block: the network's ``downsampling_factor`` (``2**depth`` for the
        U-Nets), 1 if it states none."""
        factor = getattr(self.net, "downsampling_factor", None)
        return int(factor) if isinstance(factor, int) and factor >= 1 else 1

    # ------------------------------------------------------------------ the path
    def analyse(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` -> complex spectrum ``(B, F+1, N)`` and magnitude ``(B, F, N)``."""
        spec = dsp.stft(wave, self.stft_cfg)
        return spec, dsp.magnitude(spec)

    def forward(
        self, mag: torch.Tensor, level: torch.Tensor | None = None, spec: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reverberant magnitude ``(B, F, N)`` -> network output in the target domain
        ``(B, C_out, F, N)`` (float32, activation applied) and the input's ctx.

        ``level (B,)``: the input's speech level (default: measured on ``mag``); the gain to
        ``input_level`` is kept in ``ctx["level_gain"] (B, 1, 1)`` for the target and decoding.
        ``spec (B, F+1, N)``: the complex spectrum, needed by a multi-frame filter model, whose
        filtered spectrum ``(B, F, N)`` (level-normalised) goes to ``ctx["filtered"]``."""
        if self.filter_taps and spec is None:
            raise ValueError("a multi-frame filter model (filter_taps > 0) needs the complex spectrum: model(mag, spec=spec)")
        with torch.autocast(device_type=mag.device.type, enabled=False):
            mag = mag.float()
            gain = None
            if self.input_level is not None:
                if level is None:
                    level = speech_level(level_sums(mag))
                gain = (self.input_level / level.float().clamp_min(1e-10)).view(-1, 1, 1)
                mag = mag * gain
            x, ctx = self.input_repr.encode(mag)
            if gain is not None:
                ctx = {**ctx, "level_gain": gain}
            if self.filter_taps:
                spec = spec[..., :-1, :].to(torch.complex64) * (1.0 if gain is None else gain)
                compressed = spec * dsp.safe_abs(spec).pow(-0.7)  # |X|**0.3 with X's phase
                net_in = torch.cat([x, compressed.real.unsqueeze(1), compressed.imag.unsqueeze(1)], dim=1)
                skip = None
            else:
                net_in = x
                skip = self._skip(x, ctx) if self.residual else None
        y = self.net(net_in).float()
        if self.filter_taps:
            return self._filter(y, spec, ctx)
        if skip is not None:
            y = y + skip
        return self.output_activation(y), ctx

    def _filter(self, y: torch.Tensor, spec: torch.Tensor, ctx: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Network output ``(B, 2K, F, N)`` as K complex taps over ``spec (B, F, N)`` -> the log
        magnitude of the filtered spectrum ``(B, 1, F, N)`` and ctx with it (``"filtered"``)."""
        k = self.filter_taps
        with torch.autocast(device_type=y.device.type, enabled=False):
            taps = torch.complex(y[:, :k], y[:, k:])
            if self.residual:  # start at the identity filter: "do nothing"
                taps = taps + F.one_hot(torch.tensor(0), k).to(taps.device).view(1, k, 1, 1)
            filtered = dsp.multiframe_filter(spec, taps)
            return self.target_repr.encode(dsp.safe_abs(filtered))[0], {**ctx, "filtered": filtered}

    def _skip(self, x: torch.Tensor, ctx: dict[str, Any]) -> torch.Tensor:
        """The input in the output domain, before the output activation ``(B, C_out, F, N)``."""
        if self.target == "same":
            return self.inverse_activation(x)
        decoded = self.input_repr.decode(x, ctx)
        return self.target_repr.encode(decoded)[0]

    def target_of(self, clean_mag: torch.Tensor, ctx: dict[str, Any]) -> torch.Tensor:
        """The clean target in the output domain ``(B, C_out, F, N)``, encoded with the input's ctx.

        A learned representation encodes it with its parameters detached (``reps.frozen``): a
        target that moved with them would let the loss collapse the domain instead of learning."""
        with torch.autocast(device_type=clean_mag.device.type, enabled=False):
            clean_mag = clean_mag.float() * ctx.get("level_gain", 1.0)
            if self.target == "same":
                with reps.frozen(self.target_repr):
                    return self.target_repr.encode(clean_mag, ctx)[0]
            return self.target_repr.encode(clean_mag)[0]

    def decode(self, y: torch.Tensor, ctx: dict[str, Any]) -> torch.Tensor:
        """Network output ``(B, C_out, F, N)`` -> magnitude ``(B, F, N)``.

        ``target: same`` decodes with the input's ctx; the fixed ``log_magnitude`` output domain
        needs none (a representation that did would raise for the missing key). The level
        gain of :meth:`forward` is undone here."""
        with torch.autocast(device_type=y.device.type, enabled=False):
            mag = self.target_repr.decode(y.float(), ctx if self.target == "same" else None)
            return mag / ctx["level_gain"] if "level_gain" in ctx else mag

    def waveform(
        self,
        y: torch.Tensor,
        ctx: dict[str, Any],
        reverb_spec: torch.Tensor,
        length: int,
        phase: dsp.PhaseMethod | None = None,
        n_iter: int | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """Network output ``(B, C_out, F, N)`` -> waveform ``(B, L)`` with phase recovery;
        ``strength`` < 1 keeps part of the reverberation (:func:`apply_strength`). A filter
        model's phase comes from its filtered spectrum where the others use the reverberant one."""
        mag = self.decode(y, ctx)
        if strength < 1.0:
            mag = apply_strength(mag, dsp.magnitude(reverb_spec), strength)
        phase_spec = reverb_spec
        if "filtered" in ctx:  # the filtered bins, the reverberant Nyquist row
            phase_spec = torch.cat([ctx["filtered"], reverb_spec[..., -1:, :]], dim=-2)
        return dsp.reconstruct(
            mag,
            self.stft_cfg,
            length,
            phase=phase or self.phase,
            reverb_spec=phase_spec,
            n_iter=self.griffin_lim_iters if n_iter is None else n_iter,
        )

    @torch.no_grad()
    def enhance(
        self,
        reverb: torch.Tensor,
        phase: dsp.PhaseMethod | None = None,
        n_iter: int | None = None,
        level: torch.Tensor | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """Dereverberate waveforms ``(B, L)`` at the model's sample rate -> ``(B, L)``.

        ``level (B,)``: the recording's speech level (default: each row's own); ``strength``:
        see :meth:`waveform`. Inputs shorter than one STFT frame are zero-padded and cropped back."""
        length = reverb.shape[-1]
        x = F.pad(reverb, (0, self.stft_cfg.n_fft - length)) if length < self.stft_cfg.n_fft else reverb
        spec, mag = self.analyse(x)
        y, ctx = self(mag, level, spec)
        out = self.waveform(y, ctx, spec, x.shape[-1], phase=phase, n_iter=n_iter, strength=strength)
        return out[..., :length]

