"""Split a long signal into chunks with context and put the processed chunks back together.

Pure NumPy: :func:`plan_chunks` partitions ``[0, length)`` into *cores*, each processed with
``context`` samples on each side (its *segment*, ``(C, seg_stop - seg_start)``); :class:`OverlapAdd`
joins the processed segments with complementary raised-cosine crossfades on the core boundaries
(``sin^2`` / ``cos^2``, summing to 1), emitting ``(C, n)`` blocks in order as soon as they are
final, so a streaming writer only ever holds one crossfade region in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """One piece of the signal: its core ``[start, stop)`` and its segment with context
    ``[seg_start, seg_stop)`` (clipped to the signal)."""

    index: int
    start: int
    stop: int
    seg_start: int
    seg_stop: int
    last: bool


def plan_chunks(length: int, chunk: int | None, context: int, fade: int = 0, align: int = 1) -> list[Chunk]:
    """Partition ``[0, length)`` into cores of ``chunk`` samples with ``context`` on each side.

    ``chunk=None`` (or ``chunk >= length``) gives one chunk covering everything. A remainder
    shorter than half a chunk is not left as a tiny last core: the last full chunk and the
    remainder are split into two cores of about equal length, the boundary a multiple of ``align``
    samples. So every core is in ``[chunk/2 - align, chunk]`` — long enough for a crossfade of
    ``fade <= chunk // 2`` samples, and never longer than ``chunk`` (which bounds memory); only
    where ``align`` is too coarse for that split is the remainder merged into the last core.
    """
    if length <= 0 or context < 0:
        raise ValueError(f"length must be > 0 and context >= 0 samples, got {length} and {context}")
    if chunk is None or chunk >= length:
        return [Chunk(0, 0, length, 0, length, True)]
    if fade > chunk // 2:
        raise ValueError(f"fade ({fade}) must be at most half a chunk ({chunk // 2})")
    n = math.ceil(length / chunk)
    bounds = [i * chunk for i in range(n)] + [length]
    if n > 1 and length - bounds[-2] < chunk / 2:
        # Split the last chunk + remainder in two (boundary on the alignment grid).
        start = bounds[-3]
        split = start + math.ceil((length - start) / 2 / align) * align
        if length - split >= chunk / 2 - align and split - start <= chunk:
            bounds[-2] = split
        else:  # the grid is too coarse to split: merge the remainder as before
            del bounds[-2]
            n -= 1
    return [Chunk(i, bounds[i], bounds[i + 1], max(0, bounds[i] - context), min(length, bounds[i + 1] + context),
                  i == n - 1) for i in range(n)]


def fade_in(fade: int) -> np.ndarray:
    """Rising raised-cosine ramp of ``2 * fade`` samples, ``(2 * fade,)`` float64;
    ``fade_in(f) + fade_in(f)[::-1] == 1`` (the falling ramp is its complement)."""
    k = np.arange(2 * fade, dtype=np.float64)
    return np.sin(0.5 * np.pi * (k + 0.5) / (2 * fade)) ** 2


class OverlapAdd:
    """Combine processed segments in chunk order and emit final samples through ``emit``.

    ``fade`` is the half-width of the crossfade: around each interior core boundary ``b`` the
    outgoing chunk fades out and the incoming one fades in over ``[b - fade, b + fade)``, which
    must lie inside both segments (``fade <= context``). Call :meth:`add` once per chunk, in
    order; ``emit`` receives consecutive ``(C, n)`` float32 blocks that together are exactly
    ``length`` samples long.
    """

    def __init__(self, length: int, channels: int, fade: int, emit: Callable[[np.ndarray], None]) -> None:
        self.length, self.channels, self.fade, self.emit = length, channels, fade, emit
        self._ramp = fade_in(fade) if fade else np.zeros(0)
        self._written = 0
        self._pending: np.ndarray | None = None  # (C, 2*fade) faded-out tail of the previous chunk

    def add(self, chunk: Chunk, segment: np.ndarray) -> None:
        """Add the processed ``segment`` ``(C, chunk.seg_length)`` of ``chunk``."""
        if segment.shape != (self.channels, chunk.seg_stop - chunk.seg_start):
            raise ValueError(f"segment of chunk {chunk.index} must be {(self.channels, chunk.seg_stop - chunk.seg_start)}, "
                             f"got {segment.shape}")
        f = self.fade
        first = chunk.index == 0
        lo = chunk.start if first else chunk.start - f
        hi = chunk.stop if chunk.last else chunk.stop + f
        if lo != self._written:
            raise ValueError(f"chunks must be added in order: chunk {chunk.index} starts at {lo}, {self._written} written")
        if lo < chunk.seg_start or hi > chunk.seg_stop:
            raise ValueError("the crossfade reaches outside the segment: fade must be <= context")
        y = segment[:, lo - chunk.seg_start : hi - chunk.seg_start].astype(np.float64)
        if not first and f:
            y[:, : 2 * f] *= self._ramp
            y[:, : 2 * f] += self._pending
        if not chunk.last and f:
            y[:, -2 * f :] *= self._ramp[::-1]
            self._pending, y = y[:, -2 * f :].copy(), y[:, : -2 * f]
        self.emit(y.astype(np.float32))
        self._written = hi - (0 if chunk.last else 2 * f)

    @property
    def done(self) -> bool:
        return self._written == self.length
