"""Reference systems a trained model is compared with: the input itself, WPE, and oracles.

Every baseline is a callable ``baseline(reverb (B, L), sample_rate, clean=None) -> (B, L)``
(float32 tensors on the input's device; the output has the input's length):

- ``reverberant``: the unprocessed input (identity) - the line any method must beat.
- ``wpe``: weighted prediction error (Nakatani et al. 2010; Yoshioka & Nakatani 2012), the
  classical blind dereverberation method, via ``nara_wpe``'s numpy implementation on our STFT.
  Single channel: taps 10, delay 3, 5 iterations at a 512/128 STFT by default.
- oracles (need the clean reference): the *clean* magnitude put through the same phase paths
  a magnitude-only model uses, so they bound what a perfect magnitude estimate could score:
  ``oracle_reverb_phase`` (clean magnitude + reverberant phase), ``oracle_gl`` (+ Griffin-Lim
  from a random phase), ``oracle_gl_warm`` (+ Griffin-Lim started from the reverberant phase).

Each baseline carries ``name``, ``needs_clean`` and ``fingerprint`` (its settings as text; the
evaluation cache keys on it, so changing a setting recomputes its scores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from dereverb.signal import dsp

#: Bump when a baseline's output changes for the same settings (invalidates cached scores).
BASELINES_VERSION = 1
ORACLES = ("oracle_reverb_phase", "oracle_gl", "oracle_gl_warm")
NAMES = ("reverberant", "wpe", *ORACLES)
GROUPS = {"oracle": ORACLES, "all": NAMES}


@runtime_checkable
class System(Protocol):
    """What the evaluation calls: ``(reverb (B, L), sample_rate, clean (B, L) | None) -> (B, L)``."""

    def __call__(
        self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None
    ) -> torch.Tensor: ...


def _check_input(reverb: torch.Tensor, clean: torch.Tensor | None, name: str) -> torch.Tensor:
    if not isinstance(reverb, torch.Tensor) or reverb.dim() != 2:
        shape = tuple(reverb.shape) if hasattr(reverb, "shape") else type(reverb).__name__
        raise ValueError(f"{name}: reverb must be a (B, L) tensor, got {shape}")
    if clean is not None and tuple(clean.shape) != tuple(reverb.shape):
        raise ValueError(
            f"{name}: clean {tuple(clean.shape)} must have the shape of reverb {tuple(reverb.shape)}"
        )
    return reverb


class _Settings:
    """Mixin: ``fingerprint`` from the dataclass fields, so the cache sees every setting."""

    name: str

    @property
    def fingerprint(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({args}) v{BASELINES_VERSION}"


@dataclass(frozen=True)
class Reverberant(_Settings):
    """The unprocessed input."""

    name: str = "reverberant"
    needs_clean = False

    def __call__(
        self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None
    ) -> torch.Tensor:
        return _check_input(reverb, clean, self.name).float().clone()


@dataclass(frozen=True)
class Wpe(_Settings):
    """Single-channel WPE (``nara_wpe.wpe.wpe``) on a Hann STFT of ``n_fft`` / ``hop_length``.

    Args:
        taps: prediction filter length in frames.
        delay: frames skipped before the filter (keeps the direct sound and early reflections).
        iterations: alternations between the power estimate and the filter.
        psd_context: frames on each side averaged into the power estimate.
        n_fft / hop_length: the STFT (16 kHz: 32 ms / 8 ms, the model's own STFT).
    """

    taps: int = 10
    delay: int = 3
    iterations: int = 5
    psd_context: int = 0
    n_fft: int = 512
    hop_length: int = 128
    name: str = "wpe"
    needs_clean = False

    def __post_init__(self) -> None:
        for key in ("taps", "iterations", "n_fft", "hop_length"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"wpe: {key} must be >= 1, got {getattr(self, key)}")
        if self.delay < 0 or self.psd_context < 0:
            raise ValueError(
                f"wpe: delay and psd_context must be >= 0, got {self.delay}, {self.psd_context}"
            )

    def __call__(
        self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None
    ) -> torch.Tensor:
        from nara_wpe.wpe import wpe

        reverb = _check_input(reverb, clean, self.name)
        cfg = dsp.StftConfig(
            sample_rate=int(sample_rate), n_fft=self.n_fft, hop_length=self.hop_length
        )
        spec = dsp.stft(reverb.detach().float().cpu(), cfg)  # (B, F+1, N)
        # nara_wpe wants (..., D, T): one channel (D = 1) per item and frequency, batched over
        # (B, F+1). complex128: the per-bin correlation solves are ill-conditioned in complex64.
        y = spec.numpy().astype(np.complex128)[:, :, None, :]
        x = wpe(
            y,
            taps=self.taps,
            delay=self.delay,
            iterations=self.iterations,
            psd_context=self.psd_context,
        )
        out_spec = torch.from_numpy(np.ascontiguousarray(x[:, :, 0, :]).astype(np.complex64))
        out = dsp.istft(out_spec, cfg, reverb.shape[-1])
        return out.to(reverb.device)


@dataclass(frozen=True)
class OracleMagnitude(_Settings):
    """The clean magnitude with a phase from ``phase`` (see :func:`dereverb.signal.dsp.reconstruct`).

    The Nyquist row comes from the reverberant spectrum, as in the model's own inverse path.
    """

    phase: str = "reverberant"
    n_iter: int = 32
    n_fft: int = 512
    hop_length: int = 128
    name: str = "oracle_reverb_phase"
    needs_clean = True

    def __post_init__(self) -> None:
        if self.phase not in dsp.PHASE_METHODS:
            raise ValueError(
                f"{self.name}: phase must be one of {dsp.PHASE_METHODS}, got {self.phase!r}"
            )
        if self.n_iter < 0:
            raise ValueError(f"{self.name}: n_iter must be >= 0, got {self.n_iter}")

    def __call__(
        self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None
    ) -> torch.Tensor:
        reverb = _check_input(reverb, clean, self.name)
        if clean is None:
            raise ValueError(f"{self.name}: an oracle needs the clean reference; pass clean (B, L)")
        cfg = dsp.StftConfig(
            sample_rate=int(sample_rate), n_fft=self.n_fft, hop_length=self.hop_length
        )
        reverb_spec = dsp.stft(reverb.float(), cfg)
        clean_mag = dsp.magnitude(dsp.stft(clean.to(reverb.device).float(), cfg))
        return dsp.reconstruct(
            clean_mag,
            cfg,
            reverb.shape[-1],
            phase=self.phase,
            reverb_spec=reverb_spec,
            n_iter=self.n_iter,  # type: ignore[arg-type]
        )


def make_baseline(
    name: str,
    *,
    wpe_taps: int = 10,
    wpe_delay: int = 3,
    wpe_iterations: int = 5,
    gl_iters: int = 32,
    n_fft: int = 512,
    hop_length: int = 128,
) -> Callable[..., torch.Tensor]:
    """One baseline by name (see :data:`NAMES`)."""
    if name == "reverberant":
        return Reverberant()
    if name == "wpe":
        return Wpe(
            taps=wpe_taps,
            delay=wpe_delay,
            iterations=wpe_iterations,
            n_fft=n_fft,
            hop_length=hop_length,
        )
    phases = {
        "oracle_reverb_phase": "reverberant",
        "oracle_gl": "griffinlim",
        "oracle_gl_warm": "griffinlim-warm",
    }
    if name in phases:
        return OracleMagnitude(
            phase=phases[name], n_iter=gl_iters, n_fft=n_fft, hop_length=hop_length, name=name
        )
    raise ValueError(
        f"unknown baseline {name!r}; choose from {', '.join(NAMES)} or the groups {', '.join(GROUPS)}"
    )


def parse_names(spec: str) -> list[str]:
    """``"reverberant,wpe,oracle"`` -> the baseline names, groups expanded, order kept, no repeats.

    An empty string (or ``"none"``) gives no baselines.
    """
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part or part == "none":
            continue
        expanded = GROUPS.get(part, (part,))
        for n in expanded:
            if n not in NAMES:
                raise ValueError(
                    f"unknown baseline {n!r}; choose from {', '.join(NAMES)} or the groups {', '.join(GROUPS)}"
                )
            if n not in out:
                out.append(n)
    return out


def build_baselines(
    spec: str = "reverberant,wpe,oracle", **options: int
) -> dict[str, Callable[..., torch.Tensor]]:
    """Baselines by a comma-separated spec; ``oracle`` expands to the three oracles, ``all`` to
    every baseline. ``options`` go to :func:`make_baseline` (``wpe_taps``, ``gl_iters``, ...)."""
    return {n: make_baseline(n, **options) for n in parse_names(spec)}


def needs_clean(system: object) -> bool:
    """Whether a system needs the clean reference (oracles); ``False`` for anything unmarked."""
    return bool(getattr(system, "needs_clean", False))
