"""Chunk plans and crossfaded overlap-add (``dereverb.signals.chunking``)."""

from __future__ import annotations

import numpy as np
import pytest

from dereverb.signals.chunking import OverlapAdd, fade_in, plan_chunks
from tests.conftest import noise as _noise


@pytest.mark.parametrize("length", [1, 7, 99, 100, 149, 150, 151, 1000, 1049, 1051])
def test_overlap_add_of_unmodified_segments_is_identity(length: int) -> None:
    """Crossfade weights sum to 1 everywhere and cores tile the signal exactly."""
    x = _noise((2, length), seed=length)
    blocks: list[np.ndarray] = []
    chunks = plan_chunks(length, chunk=100, context=30, fade=20)
    ola = OverlapAdd(length, 2, 20, blocks.append)
    for c in chunks:
        ola.add(c, x[:, c.seg_start : c.seg_stop])
    y = np.concatenate(blocks, axis=1)
    assert ola.done
    np.testing.assert_allclose(y, x, atol=1e-6)
    cores = [c.stop - c.start for c in chunks]
    assert sum(cores) == length
    if len(chunks) > 1:  # a short remainder is shared with the last chunk: half to one chunk
        assert min(cores) >= 50 and max(cores) <= 100


def test_fade_ramps_are_complementary() -> None:
    r = fade_in(16)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-12)
    assert np.all(np.diff(r) > 0) and 0 < r[0] < 0.01


def test_plan_rejects_fade_longer_than_half_a_chunk() -> None:
    with pytest.raises(ValueError, match="half a chunk"):
        plan_chunks(1000, chunk=100, context=80, fade=60)


@pytest.mark.parametrize("length", [1000, 1030, 1049, 1050, 1099, 10_000 + 7])
def test_no_core_is_longer_than_a_chunk_and_boundaries_stay_on_the_grid(length: int) -> None:
    """Memory is bounded by the chunk length: the last chunk never grows by a remainder (it used
    to reach 1.5 chunks), and every boundary stays on the alignment grid."""
    chunks = plan_chunks(length, chunk=96, context=32, fade=16, align=32)
    cores = [c.stop - c.start for c in chunks]
    assert sum(cores) == length and max(cores) <= 96
    assert min(cores) >= 96 // 2 - 32
    assert all(c.start % 32 == 0 for c in chunks)
