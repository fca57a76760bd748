"""colormap: refused maps, every level decodes to itself, the nearest-colour lookup is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dereverb import representations as R
from dereverb.representations import colormap as ci
from tests.representations.conftest import ramp


def duplicate_runs(lut: np.ndarray) -> list[list[int]]:
    """Groups (of >= 2 indices) of identical table entries, e.g. ``[[29, 30, 31]]`` for jet."""
    _, inverse = np.unique(lut, axis=0, return_inverse=True)
    groups = [np.flatnonzero(inverse.reshape(-1) == g).tolist() for g in np.unique(inverse)]
    return sorted(g for g in groups if len(g) > 1)


@pytest.mark.parametrize("cmap", ["hsv", "twilight", "twilight_shifted", "prism", "flag", "tab10", "Set1"])
def test_cyclic_and_qualitative_colormaps_refused(cmap):
    with pytest.raises(ValueError, match=f"colormap '{cmap}' cannot be inverted: it returns to an earlier colour"):
        R.build("colormap", cmap=cmap)


def test_every_level_decodes_to_itself():
    """All 256 levels of turbo, viridis, magma and gray come back exactly; jet's duplicates are documented."""
    for cmap in ("turbo", "viridis", "magma", "gray", "jet"):
        rep = R.build("colormap", cmap=cmap)
        g = torch.arange(256.0)[None, None] / 255
        back = rep.uncolorize(rep.colorize(g))[0, 0] * 255
        expected = torch.arange(256.0)
        if cmap == "jet":  # levels 29, 30, 31 are all pure blue (0, 0, 1): decode to the middle
            assert duplicate_runs(ci.colormap_lut("jet")) == [[29, 30, 31]]
            expected[29:32] = 30
        else:
            assert duplicate_runs(ci.colormap_lut(cmap)) == []
        torch.testing.assert_close(back, expected, rtol=0, atol=1e-4)
        # and through encode/decode in magnitude: within float error of the ramp
        mag = ramp()
        x, ctx = rep.encode(mag)
        err = R.db_error(mag, rep.decode(x, ctx))[0]
        assert float(err.max()) < (80 / 255 + 1e-3 if cmap == "jet" else 1e-3)


@pytest.mark.parametrize("levels", [16, 1024])
def test_other_level_counts_decode_exactly(levels):
    """levels != 256 samples the interpolated map: no repeated colours (viridis), exact round trip."""
    rep = R.build("colormap", cmap="viridis", levels=levels)
    assert duplicate_runs(rep.lut_cpu.double().numpy()) == []
    g = torch.arange(levels, dtype=torch.float32)[None, None] / (levels - 1)
    torch.testing.assert_close(rep.uncolorize(rep.colorize(g)), g, rtol=0, atol=1e-6)


def test_nearest_index_equals_brute_force():
    """The tree's answer is the brute-force nearest entry (up to exact distance ties), on, near
    and far from the colour path, and back on the input's device."""
    gen = torch.Generator().manual_seed(0)
    for cmap in ("turbo", "viridis", "jet", "gray"):
        rep = R.build("colormap", cmap=cmap)
        lut = rep.lut_cpu
        on_path = lut[torch.randint(0, 256, (5000,), generator=gen)]
        noisy = (on_path + 0.03 * torch.randn(on_path.shape, generator=gen)).clamp(0, 1)
        uniform = torch.rand(5000, 3, generator=gen)
        for pts in (on_path, noisy, uniform):
            brute = torch.cdist(pts, lut, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)
            idx = rep.nearest_index(pts)
            assert idx.dtype == torch.int64 and idx.device == pts.device
            d_brute, d_tree = (pts - lut[brute]).norm(dim=1), (pts - lut[idx]).norm(dim=1)
            assert float((d_tree - d_brute).abs().max()) < 1e-6


def test_return_ratio_separates_cyclic_maps():
    assert ci.return_ratio(ci.colormap_lut("hsv"))[0] < ci.RETURN_RATIO
    assert ci.return_ratio(ci.colormap_lut("turbo"))[0] > 1.5 * ci.RETURN_RATIO
    R.build("colormap", cmap="turbo_r")  # reversed maps are fine
