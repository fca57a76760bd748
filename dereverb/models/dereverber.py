"""``Dereverber``: the whole spectral path as one plain ``nn.Module`` — STFT, input
representation, network, output activation, decoding and phase recovery.

Training (:mod:`dereverb.training.module`) and inference (:mod:`dereverb.inference`) share it, so a
checkpoint gives the same numbers in both; inference needs no Lightning. Only the network runs
under autocast; STFT, representation encode/decode and phase recovery run in float32.
A learned input representation (``learned_power``, ``learned_pcen``) is a submodule: its
parameters are in ``state_dict()`` as ``input_repr.*`` and train with the network.
"""

from __future__ import annotations

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
    """

    def __init__(
        self,
        net: nn.Module,
        input_repr: reps.Representation,
        target: Target = "log_magnitude",
        residual: bool = True,
        stft_cfg: dsp.StftConfig | None = None,
        phase: dsp.PhaseMethod = "griffinlim-warm",
        griffin_lim_iters: int = 32,
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"model.target must be 'same' or 'log_magnitude', got {target!r}")
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
        """Build from a training checkpoint's hyperparameters (``DereverbModule``'s arguments);
        keys it does not use are ignored, missing ones take ``DereverbModule``'s defaults.

        The network comes from ``net`` (``{class_path, init_args}``, see
        :mod:`dereverb.models.net_spec`; default the U-Net) with the representation's channels."""
        name = hp.get("representation", "log_magnitude")
        kwargs = dict(hp.get("representation_kwargs") or {})
        n_fft = hp.get("n_fft", 512)
        if "n_bands" in reps.lookup(name).valid_kwargs(kwargs):  # per-band learned parameters
            kwargs.setdefault("n_bands", n_fft // 2)
            if kwargs["n_bands"] != n_fft // 2:
                raise ValueError(f"model.representation_kwargs.n_bands={kwargs['n_bands']!r} must be n_fft // 2 = "
                                 f"{n_fft // 2} (the STFT's bins); leave it out to get that")
        representation = reps.build(name, **kwargs)
        target = hp.get("target", "log_magnitude")
        target_channels = representation.channels if target == "same" else 1
        net = build_net(net_spec(hp.get("net")), representation.channels, target_channels)
        stft_cfg = dsp.StftConfig(
            sample_rate=hp.get("sample_rate", 16000), n_fft=n_fft, hop_length=hp.get("hop_length", 128)
        )
        return cls(
            net,
            representation,
            target=target,
            residual=hp.get("residual", True),
            stft_cfg=stft_cfg,
            phase=hp.get("phase", "griffinlim-warm"),
            griffin_lim_iters=hp.get("griffin_lim_iters", 32),
        )

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

    def forward(self, mag: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reverberant magnitude ``(B, F, N)`` -> network output in the target domain
        ``(B, C_out, F, N)`` (float32, activation applied) and the input's ctx."""
        with torch.autocast(device_type=mag.device.type, enabled=False):
            x, ctx = self.input_repr.encode(mag.float())
            skip = self._skip(x, ctx) if self.residual else None
        y = self.net(x).float()
        if skip is not None:
            y = y + skip
        return self.output_activation(y), ctx

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
            if self.target == "same":
                with reps.frozen(self.target_repr):
                    return self.target_repr.encode(clean_mag.float(), ctx)[0]
            return self.target_repr.encode(clean_mag.float())[0]

    def decode(self, y: torch.Tensor, ctx: dict[str, Any]) -> torch.Tensor:
        """Network output ``(B, C_out, F, N)`` -> magnitude ``(B, F, N)``.

        ``target: same`` decodes with the input's ctx; the fixed ``log_magnitude`` output domain
        needs none (a representation that did would raise for the missing key)."""
        with torch.autocast(device_type=y.device.type, enabled=False):
            return self.target_repr.decode(y.float(), ctx if self.target == "same" else None)

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
        ``strength`` < 1 keeps part of the reverberation (:func:`apply_strength`)."""
        mag = self.decode(y, ctx)
        if strength < 1.0:
            mag = apply_strength(mag, dsp.magnitude(reverb_spec), strength)
        return dsp.reconstruct(
            mag,
            self.stft_cfg,
            length,
            phase=phase or self.phase,
            reverb_spec=reverb_spec,
            n_iter=self.griffin_lim_iters if n_iter is None else n_iter,
        )

    @torch.no_grad()
    def enhance(
        self,
        reverb: torch.Tensor,
        phase: dsp.PhaseMethod | None = None,
        n_iter: int | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """Dereverberate waveforms ``(B, L)`` at the model's sample rate -> ``(B, L)``; ``strength``:
        see :meth:`waveform`. Inputs shorter than one STFT frame are zero-padded to ``n_fft`` and cropped back."""
        length = reverb.shape[-1]
        if length < self.stft_cfg.n_fft:
            padded = F.pad(reverb, (0, self.stft_cfg.n_fft - length))
            return self.enhance(padded, phase=phase, n_iter=n_iter, strength=strength)[..., :length]
        spec, mag = self.analyse(reverb)
        y, ctx = self(mag)
        return self.waveform(y, ctx, spec, length, phase=phase, n_iter=n_iter, strength=strength)


def upgrade_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """A ``DereverbModule`` state dict in today's layout (``model.net.*``): checkpoints of the
    first layout, written before the spectral path became :class:`Dereverber`, name the network
    ``net.*``."""
    if any(k.startswith("model.") for k in state):
        return dict(state)
    return {("model." + k if k.startswith("net.") else k): v for k, v in state.items()}
