"""``dereverberate()``: any length, rate and channel count through a :class:`Dereverber`.

Channels are processed independently; the signal is resampled to the model's rate and back, cut
into chunks with context on each side (:mod:`dereverb.signals.chunking`), batched through the model
and crossfaded back together, so memory stays bounded for long recordings. Chunk edges sit on the
model's STFT-hop and pooling grid, so chunking changes the output only near segment edges. The
defaults' memory and speed: docs/performance.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dereverb.models.dereverber import Dereverber, level_sums, speech_level
from dereverb.signals import dsp
from dereverb.signals.audio import resample
from dereverb.signals.chunking import OverlapAdd, plan_chunks

DEFAULT_CHUNK_SECONDS, DEFAULT_CONTEXT_SECONDS = 6.0, 1.0
#: Chunks per model call when none is given: batching buys speed on a GPU, only memory on a CPU.
BATCH_SIZE_CPU, BATCH_SIZE_CUDA = 1, 4
ProgressFactory = Callable[[int], "Callable[[int], None] | None"]


def check_strength(strength: float) -> None:
    """``strength`` must be a number in [0, 1]; raises ``ValueError`` saying so."""
    if not 0.0 <= strength <= 1.0:  # False for NaN too
        raise ValueError(
            f"strength must be between 0 (the input unchanged) and 1 (the full model output), got {strength}"
        )


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _process_segments(
    model: Dereverber, segments: Sequence[np.ndarray], sample_rate: int, phase: str | None, n_iter: int | None,
    strength: float, level: torch.Tensor | None,
) -> list[np.ndarray]:
    """Dereverberate segments ``(C, n_i)`` at ``sample_rate`` -> the same shapes, float32.

    Segments of equal length go through the model together (all channels at once), resampled to
    the model's rate *with* their context and back, then cropped, so resampling adds no seam.
    All-zero rows give exact zeros (no hallucinated output from silence)."""
    device = model_device(model)
    out: list[np.ndarray] = [np.empty(0)] * len(segments)
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(segments):
        by_length.setdefault(s.shape[-1], []).append(i)
    for n, idx in by_length.items():
        rows = torch.from_numpy(np.concatenate([segments[i] for i in idx]).astype(np.float32)).to(device)
        x = resample(rows, sample_rate, model.sample_rate)
        lv = None if level is None else level.to(device).repeat(len(idx))  # each segment: the file's C channels
        y = model.enhance(x, phase=phase, n_iter=n_iter, strength=strength, level=lv)
        y = y.masked_fill(~x.ne(0).any(dim=-1, keepdim=True), 0.0)
        # Resampling rounds lengths up, so the round trip is at least n long.
        y = resample(y, model.sample_rate, sample_rate)[..., :n].float().cpu().numpy()
        splits = np.split(y, np.cumsum([segments[i].shape[0] for i in idx])[:-1])
        for i, part in zip(idx, splits, strict=True):
            out[i] = part
    return out


def grid_alignment(sample_rate: int, model_rate: int, hop_length: int, frames: int = 1) -> int:
    """Smallest step (input samples) that is a whole number of ``frames``-frame blocks of STFT
    hops at the model's rate (``frames = 2**depth``: the U-Net's pooling grid); fewer frames
    (down to 1) when the step would exceed one second, 1 sample when even one hop does not fit.
    Segments starting on its multiples resample onto the unchunked run's sample, frame and
    pooling grids."""
    while frames >= 1:
        num = hop_length * frames * sample_rate
        step = num // math.gcd(num, model_rate)
        if step <= sample_rate:
            return step
        frames //= 2
    return 1


@dataclass(frozen=True)
class ChunkSettings:
    """Chunk, context and crossfade sizes and the grid chunk boundaries sit on, in samples at
    the *input* rate; ``chunk`` None: one piece."""

    chunk: int | None
    context: int
    fade: int
    align: int = 1

    @classmethod
    def make(cls, sample_rate: int, model: Dereverber, chunk_seconds: float | None,
             context_seconds: float) -> ChunkSettings:
        if chunk_seconds is not None and not chunk_seconds > 0:
            raise ValueError(f"chunk_seconds must be > 0 (or None for one piece), got {chunk_seconds}")
        align = grid_alignment(sample_rate, model.sample_rate, model.stft_cfg.hop_length, model.pooling_frames)
        context = math.ceil(round(context_seconds * sample_rate) / align) * align
        if chunk_seconds is None:
            return cls(None, context, 0, align)
        chunk = max(int(round(chunk_seconds * sample_rate / align)), 1) * align
        # Crossfade over the middle half of the context, at most a quarter chunk: fades never overlap.
        return cls(chunk, context, min(context // 2, chunk // 4), align)


@torch.no_grad()
def file_level(
    model: Dereverber, read: Callable[[int, int], np.ndarray], length: int, sample_rate: int, block: int,
) -> torch.Tensor | None:
    """The whole recording's speech level per channel ``(C,)`` (``speech_level``, at the model's
    rate), read in blocks of ``block`` samples; ``None`` when the model does not normalise the
    level. One level per channel for the whole file keeps every chunk of it on the same gain: a
    long file does not pump, and channels (or evaluation items batched as channels) do not
    change each other's gain."""
    if model.input_level is None:
        return None
    sums = 0.0
    step = max(int(block), 1)
    for a in range(0, length, step):
        x = torch.from_numpy(np.ascontiguousarray(read(a, min(a + step, length)), dtype=np.float32))
        x = resample(x.to(model_device(model)), sample_rate, model.sample_rate)
        x = torch.nn.functional.pad(x, (0, max(model.stft_cfg.n_fft - x.shape[-1], 0)))
        sums = sums + level_sums(model.analyse(x)[1]).double().cpu()
    return speech_level(sums).float()


def run_chunks(
    model: Dereverber, length: int, channels: int, sample_rate: int, read: Callable[[int, int], np.ndarray],
    emit: Callable[[np.ndarray], None], *, phase: str | None, n_iter: int | None, settings: ChunkSettings,
    batch_size: int | None, progress: ProgressFactory | None = None, strength: float = 1.0,
) -> None:
    """The chunk loop of files and arrays alike: ``read(start, stop) -> (C, stop - start)``;
    ``emit((C, n))`` in order. Reads are at most one segment (core + context) long, the level
    pass's chunk-sized blocks included. ``progress(n_chunks)`` may return a callback that gets the number of
    chunks finished after each batch. ``strength`` 0 emits the input itself, unchanged."""
    check_strength(strength)
    if strength == 0:
        step = settings.chunk or length
        for start in range(0, length, step):
            emit(read(start, min(start + step, length)))
        return
    level = file_level(model, read, length, sample_rate, settings.chunk or length)
    if batch_size is None:
        batch_size = BATCH_SIZE_CUDA if model_device(model).type == "cuda" else BATCH_SIZE_CPU
    chunks = plan_chunks(length, settings.chunk, settings.context, settings.fade, settings.align)
    on_chunks = progress(len(chunks)) if progress is not None else None
    ola = OverlapAdd(length, channels, settings.fade, emit)
    for i in range(0, len(chunks), batch_size):
        batch = chunks[i : i + batch_size]
        segments = [read(c.seg_start, c.seg_stop) for c in batch]
        for c, y in zip(batch, _process_segments(model, segments, sample_rate, phase, n_iter, strength, level),
                        strict=True):
            ola.add(c, y)
        if on_chunks is not None:
            on_chunks(len(batch))


def dereverberate(
    waveform: np.ndarray | torch.Tensor, sample_rate: int, model: Dereverber, *, phase: str | None = None,
    n_iter: int | None = None, chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS, batch_size: int | None = None, strength: float = 1.0,
) -> np.ndarray | torch.Tensor:
    """Dereverberate ``(L,)`` or ``(C, L)`` audio at any ``sample_rate`` -> the same type and shape
    (float32; a tensor stays on its device).

    Chunks of ``chunk_seconds`` (``None``: one piece) with ``context_seconds`` on each side,
    ``batch_size`` of them per model call (default 1 on CPU, 4 on CUDA). ``strength`` in [0, 1]:
    how much of the estimated reverberation is removed (0: the input, unchanged; 1: the full model
    output; :func:`dereverb.models.dereverber.apply_strength`). ``phase`` / ``n_iter`` default to
    the model's (``hparams.phase`` / ``griffin_lim_iters``).
    """
    if phase is not None and phase not in dsp.PHASE_METHODS:
        raise ValueError(f"phase must be one of {', '.join(dsp.PHASE_METHODS)} or None, got {phase!r}")
    is_torch = isinstance(waveform, torch.Tensor)
    x = waveform.detach().float().cpu().numpy() if is_torch else np.asarray(waveform, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"waveform must be (L,) or (C, L), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError("waveform has no samples")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf samples")
    x2 = x[None] if x.ndim == 1 else x
    settings = ChunkSettings.make(int(sample_rate), model, chunk_seconds, context_seconds)
    blocks: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        run_chunks(model, x2.shape[1], x2.shape[0], int(sample_rate), lambda a, b: x2[:, a:b], blocks.append,
                   phase=phase, n_iter=n_iter, settings=settings, batch_size=batch_size, strength=strength)
    finally:
        model.train(was_training)
    out = np.concatenate(blocks, axis=1).astype(np.float32, copy=False)
    y = out[0] if x.ndim == 1 else out
    return torch.from_numpy(y).to(waveform.device) if is_torch else y
