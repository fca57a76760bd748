"""``dereverberate()``: any length, rate and channel count through a :class:`Dereverber`.

Channels are processed independently; the signal is resampled to the model's rate and back and
cut into chunks with context on each side (:mod:`dereverb.signals.chunking`), batched through the model
and crossfaded back together, so memory stays bounded for long recordings. Chunk edges sit on the
model's STFT-hop and pooling grid so chunking changes the output only near segment edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dereverb.models.dereverber import Dereverber, level_sums, speech_level
from dereverb.signals import dsp
from dereverb.signals.audio import resample
from dereverb.signals.chunking import Chunk, OverlapAdd, plan_chunks

# 6-s chunks (+1 s context each side) keep the default 32-channel U-Net's activations near
# 0.2 GB; 10-s chunks cost ~0.15 GB more for ~10 % less context overhead (docs/performance.md).
DEFAULT_CHUNK_SECONDS = 6.0
DEFAULT_CONTEXT_SECONDS = 1.0
# Chunks per model call when not given: batching buys nothing on a CPU but costs memory
# (~0.5 GB per extra 8-s chunk for the default 32-channel U-Net); on a GPU it buys speed.
BATCH_SIZE_CPU, BATCH_SIZE_CUDA = 1, 4


def check_strength(strength: float) -> None:
    """``strength`` must be a number in [0, 1]; raises ``ValueError`` saying so."""
    if not 0.0 <= strength <= 1.0:  # False for NaN too
        raise ValueError(
            f"strength must be between 0 (the input unchanged) and 1 (the full model output), got {strength}"
        )


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def default_batch_size(device: torch.device) -> int:
    """Chunks per model call when none is given: 1 on CPU, 4 on CUDA."""
    return BATCH_SIZE_CUDA if device.type == "cuda" else BATCH_SIZE_CPU


# ---------------------------------------------------------------------------- core processing
def _enhance_rows(
    model: Dereverber, rows: torch.Tensor, phase: str | None, n_iter: int | None, strength: float = 1.0,
    level: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(B, L)`` at the model's rate -> ``(B, L)``, every row at the file's ``level``.
    All-zero rows give exact zeros (no hallucinated output from silence)."""
    lv = None if level is None else level.to(rows.device).expand(rows.shape[0])
    y = model.enhance(rows, phase=phase, n_iter=n_iter, strength=strength, level=lv)
    silent = ~rows.ne(0).any(dim=-1)
    if silent.any():
        y = y.masked_fill(silent[:, None], 0.0)
    return y


def _process_segments(
    model: Dereverber,
    segments: Sequence[np.ndarray],
    sample_rate: int,
    phase: str | None,
    n_iter: int | None,
    strength: float = 1.0,
    level: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """Dereverberate segments ``(C, n_i)`` at ``sample_rate`` -> same shapes, float32.

    Segments of equal length are batched together (all channels at once); each is resampled
    to the model's rate *with* its context and back, then cropped, so resampling adds no seam.
    """
    device = model_device(model)
    model_sr = model.sample_rate
    out: list[np.ndarray | None] = [None] * len(segments)
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(segments):
        by_length.setdefault(s.shape[-1], []).append(i)
    for n, idx in by_length.items():
        channels = [segments[i].shape[0] for i in idx]
        rows = torch.from_numpy(
            np.concatenate([segments[i] for i in idx], axis=0).astype(np.float32)
        ).to(device)
        x = resample(rows, sample_rate, model_sr)
        y = _enhance_rows(model, x, phase, n_iter, strength, level)
        y = resample(y, model_sr, sample_rate)
        if y.shape[-1] < n:  # resampling rounds lengths up; guard against rounding down anyway
            y = torch.nn.functional.pad(y, (0, n - y.shape[-1]))
        y = y[..., :n].float().cpu().numpy()  # silent rows stay exact zeros through resampling
        start = 0
        for i, c in zip(idx, channels, strict=True):
            out[i] = y[start : start + c]
            start += c
    return out  # type: ignore[return-value]


def grid_alignment(sample_rate: int, model_rate: int, hop_length: int, frames: int = 1) -> int:
    """Smallest step (input samples) that is a whole number of ``frames``-frame blocks of STFT
    hops at the model's rate; falls back to fewer frames (down to 1) when the step would exceed
    one second, and to 1 sample when even one hop does not fit.

    Segments that start on multiples of it resample onto the unchunked run's sample grid, STFT
    frame grid and U-Net pooling grid (``frames = 2**depth``: a 2x2 max-pool groups different
    frame pairs after an odd shift), so chunking only changes the output near segment edges.
    """
    while frames >= 1:
        num = hop_length * frames * sample_rate
        step = num // math.gcd(num, model_rate)
        if step <= sample_rate:
            return step
        frames //= 2
    return 1


@dataclass(frozen=True)
class ChunkSettings:
    """Chunk, context and crossfade sizes, and the grid chunk boundaries sit on, in samples at
    the *input* rate."""

    chunk: int | None
    context: int
    fade: int
    align: int = 1

    @classmethod
    def make(
        cls,
        sample_rate: int,
        model: Dereverber,
        chunk_seconds: float | None,
        context_seconds: float,
    ) -> ChunkSettings:
        if chunk_seconds is not None and not chunk_seconds > 0:
            raise ValueError(
                f"chunk_seconds must be > 0 (or None for one piece), got {chunk_seconds}"
            )
        if not context_seconds >= 0:
            raise ValueError(f"context_seconds must be >= 0, got {context_seconds}")
        align = grid_alignment(
            sample_rate,
            model.sample_rate,
            model.stft_cfg.hop_length,
            model.pooling_frames,
        )
        context = math.ceil(round(context_seconds * sample_rate) / align) * align
        if chunk_seconds is None:
            return cls(None, context, 0, align)
        chunk = max(int(round(chunk_seconds * sample_rate / align)), 1) * align
        # Crossfade over the middle half of the context (keeps half the context as margin from
        # the segment edge), and at most a quarter chunk so fades never overlap.
        fade = min(context // 2, chunk // 4)
        return cls(chunk, context, fade, align)


ProgressFactory = Callable[[int], "Callable[[int], None] | None"]


@torch.no_grad()
def file_level(
    model: Dereverber, read: Callable[[int, int], np.ndarray], length: int, sample_rate: int,
    block_seconds: float = 30.0,
) -> torch.Tensor | None:
    """The whole recording's speech level over all channels (``speech_level``, at the model's
    rate), read in blocks; ``None`` when the model does not normalise the level. One level for the
    file keeps every chunk on the same gain: a long file does not pump."""
    if model.input_level is None:
        return None
    sums = torch.zeros(2, dtype=torch.float64)
    step = max(int(block_seconds * sample_rate), 1)
    for a in range(0, length, step):
        x = torch.from_numpy(np.ascontiguousarray(read(a, min(a + step, length)), dtype=np.float32))
        x = resample(x.to(model_device(model)), sample_rate, model.sample_rate)
        if x.shape[-1] >= model.stft_cfg.n_fft:
            sums += level_sums(model.analyse(x)[1]).sum(0).double().cpu()
    return speech_level(sums).float()


def _batched(chunks: Sequence[Chunk], size: int) -> Iterator[list[Chunk]]:
    for i in range(0, len(chunks), size):
        yield list(chunks[i : i + size])


def run_chunks(
    model: Dereverber,
    length: int,
    channels: int,
    sample_rate: int,
    read: Callable[[int, int], np.ndarray],
    emit: Callable[[np.ndarray], None],
    *,
    phase: str | None,
    n_iter: int | None,
    settings: ChunkSettings,
    batch_size: int | None,
    progress: ProgressFactory | None = None,
    strength: float = 1.0,
) -> None:
    """Shared chunk loop: ``read(start, stop) -> (C, stop - start)``; ``emit((C, n))`` in order.

    ``progress(n_chunks)`` is called once and may return a callback that receives the number
    of chunks finished after each batch. ``strength`` 0 emits the input itself, unchanged.
    """
    check_strength(strength)
    if strength == 0:
        step = settings.chunk or length
        for start in range(0, length, step):
            emit(read(start, min(start + step, length)))
        return
    level = file_level(model, read, length, sample_rate)
    if batch_size is None:
        batch_size = default_batch_size(model_device(model))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = plan_chunks(length, settings.chunk, settings.context, settings.fade, settings.align)
    on_chunks = progress(len(chunks)) if progress is not None else None
    ola = OverlapAdd(length, channels, settings.fade, emit)
    for batch in _batched(chunks, batch_size):
        segments = [read(c.seg_start, c.seg_stop) for c in batch]
        for c, y in zip(
            batch, _process_segments(model, segments, sample_rate, phase, n_iter, strength, level), strict=True
        ):
            ola.add(c, y)
        if on_chunks is not None:
            on_chunks(len(batch))
    if not ola.done:
        raise AssertionError("internal error: overlap-add did not cover the whole signal")


def dereverberate(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    model: Dereverber,
    *,
    phase: str | None = None,
    n_iter: int | None = None,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    batch_size: int | None = None,
    strength: float = 1.0,
) -> np.ndarray | torch.Tensor:
    """Dereverberate ``(L,)`` or ``(C, L)`` audio at any ``sample_rate`` -> the same type and shape.

    Channels are processed independently (batched together). The signal is resampled to the
    model's rate and back, and processed in chunks of ``chunk_seconds`` (``None``: one piece)
    with ``context_seconds`` of context on each side, crossfaded together; ``batch_size`` chunks
    go through the model at once (default 1 on CPU, 4 on CUDA). ``strength`` in [0, 1]: how much
    of the estimated reverberation is removed (0: the input, unchanged; 1: the full model output;
    :func:`dereverb.models.dereverber.apply_strength`). ``phase`` /
    ``n_iter`` default to the model's (``hparams.phase`` / ``griffin_lim_iters``). A torch input
    gives a float32 tensor on the input's device; numpy gives float32 numpy.
    """
    if phase is not None and phase not in dsp.PHASE_METHODS:
        raise ValueError(
            f"phase must be one of {', '.join(dsp.PHASE_METHODS)} or None, got {phase!r}"
        )
    is_torch = isinstance(waveform, torch.Tensor)
    x = (
        waveform.detach().float().cpu().numpy()
        if is_torch
        else np.asarray(waveform, dtype=np.float32)
    )
    if x.ndim not in (1, 2):
        raise ValueError(f"waveform must be (L,) or (C, L), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError("waveform has no samples")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf samples")
    x2 = x[None] if x.ndim == 1 else x
    settings = ChunkSettings.make(int(sample_rate), model, chunk_seconds, context_seconds)
    out = np.empty_like(x2, dtype=np.float32)
    pos = [0]

    def emit(block: np.ndarray) -> None:
        out[:, pos[0] : pos[0] + block.shape[1]] = block
        pos[0] += block.shape[1]

    was_training = model.training
    model.eval()
    try:
        run_chunks(
            model,
            x2.shape[1],
            x2.shape[0],
            int(sample_rate),
            lambda a, b: x2[:, a:b],
            emit,
            phase=phase,
            n_iter=n_iter,
            settings=settings,
            batch_size=batch_size,
            strength=strength,
        )
    finally:
        model.train(was_training)
    y = out[0] if x.ndim == 1 else out
    return torch.from_numpy(y).to(waveform.device) if is_torch else y
