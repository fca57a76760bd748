"""The signal path: STFT/iSTFT, magnitudes without the Nyquist bin, and phase recovery.

Shapes: waveforms ``(B, L)``, complex spectra ``(B, F+1, N)``, magnitudes ``(B, F, N)`` with
``F = n_fft // 2`` (the Nyquist bin is dropped so F = 256 is a power of two for the U-Net).
Everything here runs in float32 with autocast disabled, whatever the caller's precision.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
import torchaudio.functional as AF

PhaseMethod = Literal["reverberant", "griffinlim", "griffinlim-warm"]
PHASE_METHODS: tuple[str, ...] = ("reverberant", "griffinlim", "griffinlim-warm")


@dataclass(frozen=True)
class StftConfig:
    """STFT settings shared by data, model and inversion (16 kHz, 32 ms Hann, 8 ms hop)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    window: Literal["hann"] = "hann"

    def __post_init__(self) -> None:
        if self.n_fft <= 0 or self.n_fft % 2:
            raise ValueError(f"n_fft must be a positive even number, got {self.n_fft}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"hop_length must be in (0, n_fft], got {self.hop_length}")
        if self.window != "hann":
            raise ValueError(f"only the 'hann' window is supported, got {self.window!r}")

    def window_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.hann_window(self.n_fft, device=device, dtype=torch.float32)


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, enabled=False)


def stft(wave: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """Complex STFT of ``(B, L)`` (or ``(L,)``) -> ``(B, F+1, N)`` complex64, centred frames."""
    with _no_autocast(wave.device):
        return torch.stft(
            wave.float(),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            window=cfg.window_tensor(wave.device),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )


def istft(spec: torch.Tensor, cfg: StftConfig, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: ``(B, F+1, N)`` complex -> ``(B, length)`` float32."""
    with _no_autocast(spec.device):
        return torch.istft(
            spec.to(torch.complex64),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            window=cfg.window_tensor(spec.device),
            center=True,
            length=length,
        )


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``(B, F+1, N)`` complex -> ``(B, F, N)`` float32 magnitude with the Nyquist bin dropped."""
    return spec[..., :-1, :].abs().float()


def multiframe_filter(spec: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Deep filtering over past frames: ``spec (B, F, N)`` complex and ``taps (B, K, F, N)`` complex
    -> ``(B, F, N)``, ``out[f, n] = sum_k taps[k, f, n] * spec[f, n - k]`` (frames before the
    first are zeros). A per-bin filter of K frames can cancel the part of a bin predicted by
    the frames before it, which a real-valued mask cannot (Mack & Habets 2019; DeepFilterNet)."""
    k = taps.shape[1]
    padded = torch.nn.functional.pad(spec, (k - 1, 0))
    n = spec.shape[-1]
    return sum(taps[:, i] * padded[..., k - 1 - i : k - 1 - i + n] for i in range(k))


def safe_abs(spec: torch.Tensor, tiny: float = 1e-12) -> torch.Tensor:
    """``|spec|`` of a complex tensor with a finite gradient at zero (``sqrt(re**2 + im**2 + tiny)``)."""
    return (spec.real.square() + spec.imag.square() + tiny).sqrt()


def restore_nyquist(mag: torch.Tensor, nyquist: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, F, N)`` -> ``(B, F+1, N)``: append the Nyquist row (given ``(B, 1, N)``, else zeros)."""
    if nyquist is None:
        nyquist = torch.zeros_like(mag[..., :1, :])
    return torch.cat([mag.float(), nyquist.to(mag.device).float()], dim=-2)


def griffin_lim(
    mag_full: torch.Tensor,
    cfg: StftConfig,
    length: int,
    n_iter: int = 32,
    momentum: float = 0.99,
    init_phase: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) from a ``(B, F+1, N)`` magnitude -> ``(B, length)``.

    Without ``init_phase`` this is torchaudio's ``griffinlim`` from a random phase drawn with
    ``seed`` (so results are reproducible without touching the global RNG). With ``init_phase``
    (complex or angle tensor ``(B, F+1, N)``, e.g. the reverberant phase) the same momentum
    iteration starts from it: torchaudio has no way to pass a start phase.
    """
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    device = mag_full.device
    with _no_autocast(device):
        mag_full = mag_full.float()
        if init_phase is None:
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                return AF.griffinlim(
                    mag_full,
                    window=cfg.window_tensor(device),
                    n_fft=cfg.n_fft,
                    hop_length=cfg.hop_length,
                    win_length=cfg.n_fft,
                    power=1.0,
                    n_iter=max(n_iter, 1),
                    momentum=momentum,
                    length=length,
                    rand_init=True,
                )
        if init_phase.is_complex():
            angles = init_phase / init_phase.abs().clamp_min(1e-16)
        else:
            angles = torch.polar(torch.ones_like(init_phase), init_phase.float())
        angles = angles.to(torch.complex64)
        tprev = torch.zeros_like(angles)
        for _ in range(n_iter):
            rebuilt = stft(istft(mag_full * angles, cfg, length), cfg)
            angles = rebuilt - tprev * (momentum / (1 + momentum))
            angles = angles / angles.abs().clamp_min(1e-16)
            tprev = rebuilt
        return istft(mag_full * angles, cfg, length)


def reconstruct(
    mag: torch.Tensor,
    cfg: StftConfig,
    length: int,
    phase: PhaseMethod = "griffinlim-warm",
    reverb_spec: torch.Tensor | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Waveform ``(B, length)`` from an estimated magnitude ``(B, F, N)``.

    ``phase``: ``"reverberant"`` (use the input's phase, no iterations), ``"griffinlim"``
    (random start) or ``"griffinlim-warm"`` (Griffin-Lim started from the reverberant phase).
    ``reverb_spec`` ``(B, F+1, N)`` complex is required by the reverberant and warm methods; the
    Nyquist row is restored from it (else zeros).
    """
    if phase not in PHASE_METHODS:
        raise ValueError(f"phase must be one of {', '.join(PHASE_METHODS)}; got {phase!r}")
    if phase != "griffinlim" and reverb_spec is None:
        raise ValueError(f"phase={phase!r} needs the reverberant spectrum (reverb_spec)")
    nyq = reverb_spec[..., -1:, :].abs() if reverb_spec is not None else None
    mag_full = restore_nyquist(mag, nyq)
    with _no_autocast(mag.device):
        if phase == "reverberant":
            unit = reverb_spec / reverb_spec.abs().clamp_min(1e-16)
            return istft(mag_full * unit, cfg, length)
        init = reverb_spec if phase == "griffinlim-warm" else None
        return griffin_lim(mag_full, cfg, length, n_iter=n_iter, momentum=momentum, init_phase=init, seed=seed)

