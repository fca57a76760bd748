"""The systems an evaluation scores: trained checkpoints and the references they are compared
with. Every system is a callable ``(reverb (B, L), sample_rate, clean=None) -> (B, L)`` (float32,
the input's length) with ``needs_clean`` and ``fingerprint`` (its settings as text, or a
checkpoint's SHA-256: the score cache keys on it):

- ``reverberant``: the unprocessed input, the line any method must beat;
- ``wpe``: weighted prediction error (Nakatani et al. 2010), ``nara_wpe`` on our STFT;
- oracles: the *clean* magnitude through a magnitude-only model's phase paths (reverberant
  phase, Griffin-Lim cold or warm), bounding what a perfect magnitude estimate could score;
- :class:`CheckpointSystem`: a trained model (``pretrained``: the shipped one).

A new baseline is one class here plus its name in :func:`make_baseline`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from dereverb.evaluation.sources import EvaluationError
from dereverb.inference.checkpoint import load_model, resolve_device
from dereverb.inference.enhance import dereverberate
from dereverb.models.checkpoints import CONFIG_FILE, PRETRAINED, WEIGHTS_FILE, resolve_checkpoint
from dereverb.signals import dsp

#: Bump when a baseline's output changes for the same settings (invalidates cached scores).
BASELINES_VERSION = 1
ORACLES = ("oracle_reverb_phase", "oracle_gl", "oracle_gl_warm")
NAMES = ("reverberant", "wpe", *ORACLES)
GROUPS = {"oracle": ORACLES, "all": NAMES}
System = Callable[..., torch.Tensor]


def _check_input(reverb: torch.Tensor, clean: torch.Tensor | None, name: str) -> torch.Tensor:
    if not isinstance(reverb, torch.Tensor) or reverb.dim() != 2:
        shape = tuple(reverb.shape) if hasattr(reverb, "shape") else type(reverb).__name__
        raise ValueError(f"{name}: reverb must be a (B, L) tensor, got {shape}")
    if clean is not None and tuple(clean.shape) != tuple(reverb.shape):
        raise ValueError(f"{name}: clean {tuple(clean.shape)} must have the shape of reverb {tuple(reverb.shape)}")
    return reverb


class _Settings:
    """Mixin: ``fingerprint`` from the dataclass fields, so the cache sees every setting; the STFT."""

    name: str
    n_fft: int
    hop_length: int

    @property
    def fingerprint(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({args}) v{BASELINES_VERSION}"

    def stft_cfg(self, sample_rate: int) -> dsp.StftConfig:
        return dsp.StftConfig(sample_rate=int(sample_rate), n_fft=self.n_fft, hop_length=self.hop_length)


@dataclass(frozen=True)
class Reverberant(_Settings):
    """The unprocessed input."""

    name: str = "reverberant"
    needs_clean = False

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        return _check_input(reverb, clean, self.name).float().clone()


@dataclass(frozen=True)
class Wpe(_Settings):
    """Single-channel WPE (``nara_wpe.wpe.wpe``) on a Hann STFT of ``n_fft`` / ``hop_length`` (16 kHz:
    the model's own). ``taps``: prediction filter length in frames; ``delay``: frames skipped before
    the filter (keeps the direct sound and early reflections); ``iterations``: alternations between
    the power estimate and the filter; ``psd_context``: frames on each side in the power estimate."""

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
            raise ValueError(f"wpe: delay and psd_context must be >= 0, got {self.delay}, {self.psd_context}")

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        from nara_wpe.wpe import wpe

        cfg = self.stft_cfg(sample_rate)
        spec = dsp.stft(_check_input(reverb, clean, self.name).detach().float().cpu(), cfg)  # (B, F+1, N)
        # nara_wpe wants (..., D, T): one channel (D = 1) per item and frequency, batched over
        # (B, F+1). complex128: the per-bin correlation solves are ill-conditioned in complex64.
        y = spec.numpy().astype(np.complex128)[:, :, None, :]
        x = wpe(y, taps=self.taps, delay=self.delay, iterations=self.iterations, psd_context=self.psd_context)
        out_spec = torch.from_numpy(np.ascontiguousarray(x[:, :, 0, :]).astype(np.complex64))
        return dsp.istft(out_spec, cfg, reverb.shape[-1]).to(reverb.device)


@dataclass(frozen=True)
class OracleMagnitude(_Settings):
    """The clean magnitude with a phase from ``phase`` (:func:`dereverb.signals.dsp.reconstruct`,
    which checks it); the Nyquist row comes from the reverberant spectrum, as in the model."""

    phase: str = "reverberant"
    n_iter: int = 32
    n_fft: int = 512
    hop_length: int = 128
    name: str = "oracle_reverb_phase"
    needs_clean = True

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        reverb = _check_input(reverb, clean, self.name)
        if clean is None:
            raise ValueError(f"{self.name}: an oracle needs the clean reference; pass clean (B, L)")
        cfg = self.stft_cfg(sample_rate)
        clean_mag = dsp.magnitude(dsp.stft(clean.to(reverb.device).float(), cfg))
        return dsp.reconstruct(clean_mag, cfg, reverb.shape[-1], phase=self.phase,  # type: ignore[arg-type]
                               reverb_spec=dsp.stft(reverb.float(), cfg), n_iter=self.n_iter)


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown baseline {name!r}; choose from {', '.join(NAMES)} or the groups {', '.join(GROUPS)}")


def make_baseline(name: str, *, wpe_taps: int = 10, wpe_delay: int = 3, wpe_iterations: int = 5,
                  gl_iters: int = 32, n_fft: int = 512, hop_length: int = 128) -> System:
    """One baseline by name (see :data:`NAMES`)."""
    phases = {"oracle_reverb_phase": "reverberant", "oracle_gl": "griffinlim", "oracle_gl_warm": "griffinlim-warm"}
    if name == "reverberant":
        return Reverberant()
    if name == "wpe":
        return Wpe(taps=wpe_taps, delay=wpe_delay, iterations=wpe_iterations, n_fft=n_fft, hop_length=hop_length)
    if name in phases:
        return OracleMagnitude(phase=phases[name], n_iter=gl_iters, n_fft=n_fft, hop_length=hop_length, name=name)
    raise _unknown(name)


def parse_names(spec: str) -> list[str]:
    """``"reverberant,wpe,oracle"`` -> the baseline names, groups expanded, order kept, no
    repeats; an empty string (or ``"none"``) gives none."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        for n in GROUPS.get(part, (part,)) if part and part != "none" else ():
            if n not in NAMES:
                raise _unknown(n)
            if n not in out:
                out.append(n)
    return out


def build_baselines(spec: str = "reverberant,wpe,oracle", **options: int) -> dict[str, System]:
    """Baselines by a comma-separated spec (:func:`parse_names`); ``options`` go to
    :func:`make_baseline` (``wpe_taps``, ``gl_iters``, ...)."""
    return {n: make_baseline(n, **options) for n in parse_names(spec)}


def needs_clean(system: object) -> bool:
    """Whether a system needs the clean reference (oracles); ``False`` for anything unmarked."""
    return bool(getattr(system, "needs_clean", False))


# ============================================================================ checkpoints
@functools.cache
def _inference_code() -> str:
    """Hash of the code a checkpoint runs through (the model, its representations, the signal
    path, inference): a change there recomputes cached scores as new weights do."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for folder in ("models", "representations", "signals", "inference"):
        for f in sorted((root / folder).glob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class CheckpointSystem:
    """A trained checkpoint as an evaluation system. ``path`` is the file loaded (for
    ``pretrained``, the shipped model folder); its SHA-256 is the fingerprint, so new weights
    behind the same name recompute their scores. ``phase`` / ``n_iter`` override the model's own
    phase recovery (None: the model's)."""

    path: Path
    model: torch.nn.Module
    sha256: str
    phase: str | None = None
    n_iter: int | None = None
    needs_clean = False

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", phase: str | None = None,
             n_iter: int | None = None) -> CheckpointSystem:
        p = resolve_checkpoint(path)  # "pretrained" -> the shipped model folder
        if not p.exists():
            raise EvaluationError(f"--ckpt {p}: checkpoint not found; pass a .ckpt file written by dereverb.train")
        h = hashlib.sha256()
        for file in [p / CONFIG_FILE, p / WEIGHTS_FILE] if p.is_dir() else [p]:  # a model folder: both files
            h.update(file.read_bytes())
        return cls(p, load_model(p, resolve_device(device)), h.hexdigest(), phase, n_iter)

    @property
    def fingerprint(self) -> str:
        return f"checkpoint sha256={self.sha256} code={_inference_code()} phase={self.phase} n_iter={self.n_iter}"

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        # (B, L) rows go in as channels: processed independently, resampled if needed.
        x = reverb.detach().float().cpu().numpy()
        y = dereverberate(x, int(sample_rate), self.model, phase=self.phase, n_iter=self.n_iter)
        return torch.from_numpy(np.asarray(y, dtype=np.float32))


def _version(p: Path) -> str | None:
    return next((a.name for a in p.parents if re.fullmatch(r"version_\d+", a.name)), None)


def checkpoint_names(paths: Sequence[str | os.PathLike], taken: Iterable[str] = ()) -> list[str]:
    """Readable unique names for checkpoints: ``pretrained`` for the shipped model, a file's stem,
    except Lightning's generic ``last`` / ``best...`` / ``epoch=...`` files, which take their run's
    name (the first folder above that is not ``checkpoints`` or ``version_N``; ``best`` files get
    ``-best``). Clashes (with each other or ``taken``) add the ``version_N`` folder, then a counter."""
    taken_set = set(taken)
    base: list[str] = []
    for raw in paths:
        p, stem = Path(raw), Path(raw).stem
        if str(raw) == PRETRAINED:
            base.append(PRETRAINED)
        elif stem == "last" or stem.startswith(("best", "epoch=", "last-")):
            run = next((a.name for a in p.parents if a.name and a.name != "checkpoints"
                        and not re.fullmatch(r"version_\d+", a.name)), stem)
            base.append(run + ("-best" if stem.startswith("best") else ""))
        else:
            base.append(stem)
    names: list[str] = []
    for raw, name in zip(paths, base, strict=True):
        if (base.count(name) > 1 or name in taken_set) and (version := _version(Path(raw))):
            name = f"{name}-{version}"
        candidate, k = name, 2
        while candidate in taken_set or candidate in names:
            candidate, k = f"{name}-{k}", k + 1
        names.append(candidate)
    return names


# ============================================================================ all systems
def build_systems(
    baselines: str = "reverberant,wpe,oracle", checkpoints: Sequence[str | os.PathLike] = (), *,
    device: str = "cpu", phase: str | None = None, n_iter: int | None = None, with_reference: bool = True,
    **options: int,
) -> tuple[dict[str, System], list[str]]:
    """The systems of one evaluation in table order (the references, the checkpoints named by
    :func:`checkpoint_names`, then the oracle bounds) and notes about them.

    ``baselines``: see :func:`parse_names`; ``checkpoints``: ``.ckpt`` files, model folders or
    ``pretrained``, loaded on ``device`` with the overrides ``phase`` / ``n_iter``;
    ``with_reference`` False (no clean reference) leaves the oracles out; ``options`` go to
    :func:`make_baseline`. Raises :class:`EvaluationError` for an unknown baseline or nothing to do.
    """
    notes: list[str] = []
    try:
        names = parse_names(baselines)
    except ValueError as exc:
        raise EvaluationError(f"--baselines: {exc}") from exc
    if not with_reference and any(n in ORACLES for n in names):
        notes.append("oracles need a clean reference: skipped for unpaired recordings")
        names = [n for n in names if n not in ORACLES]
    built = {n: make_baseline(n, **options) for n in names}
    systems: dict[str, System] = {n: f for n, f in built.items() if n not in ORACLES}
    for n, c in zip(checkpoint_names(checkpoints, taken=built), checkpoints, strict=True):
        systems[n] = system = CheckpointSystem.load(c, device, phase, n_iter)
        notes.append(f"{n} = {c}" if Path(c) == system.path else f"{n} = {c} ({system.path})")
    systems.update({n: f for n, f in built.items() if n in ORACLES})
    if not systems:
        raise EvaluationError("nothing to evaluate: give --ckpt and/or --baselines")
    return systems, notes
