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

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from dereverb.evaluation.sources import EvaluationError
from dereverb.inference.checkpoint import DeviceError, load_model, resolve_device
from dereverb.inference.enhance import dereverberate
from dereverb.models.checkpoints import (
    CONFIG_FILE,
    PRETRAINED,
    WEIGHTS_FILE,
    CheckpointError,
    resolve_checkpoint,
)
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

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
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
            raise ValueError(f"wpe: delay and psd_context must be >= 0, got {self.delay}, {self.psd_context}")

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        from nara_wpe.wpe import wpe

        reverb = _check_input(reverb, clean, self.name)
        cfg = dsp.StftConfig(sample_rate=int(sample_rate), n_fft=self.n_fft, hop_length=self.hop_length)
        spec = dsp.stft(reverb.detach().float().cpu(), cfg)  # (B, F+1, N)
        # nara_wpe wants (..., D, T): one channel (D = 1) per item and frequency, batched over
        # (B, F+1). complex128: the per-bin correlation solves are ill-conditioned in complex64.
        y = spec.numpy().astype(np.complex128)[:, :, None, :]
        x = wpe(y, taps=self.taps, delay=self.delay, iterations=self.iterations, psd_context=self.psd_context)
        out_spec = torch.from_numpy(np.ascontiguousarray(x[:, :, 0, :]).astype(np.complex64))
        out = dsp.istft(out_spec, cfg, reverb.shape[-1])
        return out.to(reverb.device)


@dataclass(frozen=True)
class OracleMagnitude(_Settings):
    """The clean magnitude with a phase from ``phase`` (see :func:`dereverb.signals.dsp.reconstruct`).

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
            raise ValueError(f"{self.name}: phase must be one of {dsp.PHASE_METHODS}, got {self.phase!r}")
        if self.n_iter < 0:
            raise ValueError(f"{self.name}: n_iter must be >= 0, got {self.n_iter}")

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        reverb = _check_input(reverb, clean, self.name)
        if clean is None:
            raise ValueError(f"{self.name}: an oracle needs the clean reference; pass clean (B, L)")
        cfg = dsp.StftConfig(sample_rate=int(sample_rate), n_fft=self.n_fft, hop_length=self.hop_length)
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
        return Wpe(taps=wpe_taps, delay=wpe_delay, iterations=wpe_iterations, n_fft=n_fft, hop_length=hop_length)
    phases = {"oracle_reverb_phase": "reverberant", "oracle_gl": "griffinlim", "oracle_gl_warm": "griffinlim-warm"}
    if name in phases:
        return OracleMagnitude(phase=phases[name], n_iter=gl_iters, n_fft=n_fft, hop_length=hop_length, name=name)
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(NAMES)} or the groups {', '.join(GROUPS)}")


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


def build_baselines(spec: str = "reverberant,wpe,oracle", **options: int) -> dict[str, Callable[..., torch.Tensor]]:
    """Baselines by a comma-separated spec; ``oracle`` expands to the three oracles, ``all`` to
    every baseline. ``options`` go to :func:`make_baseline` (``wpe_taps``, ``gl_iters``, ...)."""
    return {n: make_baseline(n, **options) for n in parse_names(spec)}


def needs_clean(system: object) -> bool:
    """Whether a system needs the clean reference (oracles); ``False`` for anything unmarked."""
    return bool(getattr(system, "needs_clean", False))


# ============================================================================ checkpoints
def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    for file in [path / CONFIG_FILE, path / WEIGHTS_FILE] if path.is_dir() else [path]:  # a model folder
        with open(file, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


@dataclass
class CheckpointSystem:
    """A trained checkpoint as an evaluation system (inference via :mod:`dereverb.inference`).

    ``path`` is the file loaded (for ``pretrained``, the model folder shipped with the package); its
    SHA-256 is the fingerprint, so new weights behind the same name recompute their scores.
    ``phase`` / ``n_iter`` override the model's own phase recovery (None: the model's).
    """

    path: Path
    model: torch.nn.Module
    sha256: str
    phase: str | None = None
    n_iter: int | None = None
    needs_clean = False

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str = "cpu", phase: str | None = None, n_iter: int | None = None
    ) -> CheckpointSystem:
        try:
            p = resolve_checkpoint(path)  # "pretrained" -> the shipped model folder
        except CheckpointError as exc:
            raise EvaluationError(str(exc)) from exc
        if not p.exists():
            raise EvaluationError(f"--ckpt {p}: checkpoint not found; pass a .ckpt file written by dereverb.train")
        try:
            model = load_model(p, resolve_device(device))
        except (CheckpointError, DeviceError) as exc:
            raise EvaluationError(str(exc)) from exc
        return cls(p, model, _sha256_file(p), phase, n_iter)

    @property
    def fingerprint(self) -> str:
        return f"checkpoint sha256={self.sha256} phase={self.phase} n_iter={self.n_iter}"

    def __call__(self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None) -> torch.Tensor:
        # (B, L) rows go in as channels: processed independently, resampled if needed.
        x = reverb.detach().float().cpu().numpy()
        y = dereverberate(x, int(sample_rate), self.model, phase=self.phase, n_iter=self.n_iter)
        return torch.from_numpy(np.asarray(y, dtype=np.float32))


def checkpoint_names(paths: Sequence[str | os.PathLike], taken: Iterable[str] = ()) -> list[str]:
    """Readable unique names for checkpoints.

    ``pretrained`` (the shipped model) is named ``pretrained``; a file by its stem, except
    Lightning's generic ``last`` / ``best...`` / ``epoch=...`` files, which take their run's name
    (the first folder above that is not ``checkpoints`` or ``version_N``; ``best`` files get
    ``-best``). Clashes (with each other or ``taken``) add the
    ``version_N`` folder, then a counter.
    """
    taken_set = set(taken)
    base: list[str] = []
    for raw in paths:
        p = Path(raw)
        stem = p.stem
        if str(raw) == PRETRAINED:
            name = PRETRAINED
        elif stem == "last" or stem.startswith(("best", "epoch=", "last-")):
            run = next(
                (
                    a.name
                    for a in p.parents
                    if a.name and a.name != "checkpoints" and not re.fullmatch(r"version_\d+", a.name)
                ),
                stem,
            )
            name = run + ("-best" if stem.startswith("best") else "")
        else:
            name = stem
        base.append(name)
    names: list[str] = []
    for raw, name in zip(paths, base, strict=True):
        if base.count(name) > 1 or name in taken_set:
            version = next((a.name for a in Path(raw).parents if re.fullmatch(r"version_\d+", a.name)), None)
            if version:
                name = f"{name}-{version}"
        candidate, k = name, 2
        while candidate in taken_set or candidate in names:
            candidate, k = f"{name}-{k}", k + 1
        names.append(candidate)
    return names


# ============================================================================ all systems
def build_systems(
    baselines: str = "reverberant,wpe,oracle",
    checkpoints: Sequence[str | os.PathLike] = (),
    *,
    device: str = "cpu",
    phase: str | None = None,
    n_iter: int | None = None,
    with_reference: bool = True,
    **options: int,
) -> tuple[dict[str, System], list[str]]:
    """The systems of one evaluation, in table order: the references (reverberant, WPE), the
    checkpoints (named by :func:`checkpoint_names`), then the oracle bounds.

    Args:
        baselines: comma-separated baseline names / groups (see :func:`parse_names`).
        checkpoints: ``.ckpt`` files, model folders or ``pretrained``, loaded on ``device`` with the phase overrides
            ``phase`` / ``n_iter`` (None: each model's own).
        with_reference: False for items without a clean reference: the oracles are left out.
        options: baseline settings for :func:`make_baseline` (``wpe_taps``, ``gl_iters``, ...).

    Returns ``(systems, notes)``; raises :class:`EvaluationError` for an unknown baseline, a
    missing or unreadable checkpoint, or nothing to evaluate.
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
    ckpt_names = checkpoint_names(checkpoints, taken=built)
    systems: dict[str, System] = {n: f for n, f in built.items() if n not in ORACLES}
    for n, c in zip(ckpt_names, checkpoints, strict=True):
        system = CheckpointSystem.load(c, device, phase, n_iter)
        systems[n] = system
        notes.append(f"{n} = {c}" if Path(c) == system.path else f"{n} = {c} ({system.path})")
    systems.update({n: f for n, f in built.items() if n in ORACLES})
    if not systems:
        raise EvaluationError("nothing to evaluate: give --ckpt and/or --baselines")
    return systems, notes
