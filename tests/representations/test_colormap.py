"""colormap: refused maps, every level decodes to itself, inversion strategies agree."""

from __future__ import annotations

import pytest
import torch

from dereverb import representations as R
from dereverb.representations import colormap as ci
from tests.representations.conftest import ramp


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
            assert ci.duplicate_runs(ci.colormap_lut("jet")) == [[29, 30, 31]]
            expected[29:32] = 30
        else:
            assert ci.duplicate_runs(ci.colormap_lut(cmap)) == []
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
    assert ci.duplicate_runs(rep.lut_cpu.double().numpy()) == []
    g = torch.arange(levels, dtype=torch.float32)[None, None] / (levels - 1)
    torch.testing.assert_close(rep.uncolorize(rep.colorize(g)), g, rtol=0, atol=1e-6)


def test_chunked_cube_and_unchunked_agree():
    gen = torch.Generator().manual_seed(0)
    for cmap in ("turbo", "viridis", "jet", "gray"):
        lut = torch.from_numpy(ci.colormap_lut(cmap)).float()
        on_path = lut[torch.randint(0, 256, (5000,), generator=gen)]
        noisy = (on_path + 0.03 * torch.randn(on_path.shape, generator=gen)).clamp(0, 1)
        uniform = torch.rand(5000, 3, generator=gen)
        cube = ci.CubeIndex(lut, cube_size=32, chunk_size=4096)
        for pts in (on_path, noisy, uniform):
            whole = ci.nearest_chunked(pts, lut, chunk_size=len(pts))
            small = ci.nearest_chunked(pts, lut, chunk_size=999)
            assert torch.equal(whole, small)
            cubed, fallback = cube.nearest(pts)
            d_whole = (pts - lut[whole]).norm(dim=1)
            d_cube = (pts - lut[cubed]).norm(dim=1)
            assert float((d_cube - d_whole).abs().max()) < 1e-6  # equal up to exact ties
            if pts is on_path:  # the cube answers almost all on-path pixels itself
                assert fallback < 0.05 * len(pts)


def test_decode_memory_is_chunked():
    """A batch decoded in chunks of 1000 pixels equals the default; the chunk bounds the (P, K) matrix."""
    mag = ramp().expand(3, 40, 256).contiguous() * torch.rand(3, 40, 256, generator=torch.Generator().manual_seed(1))
    a = R.build("colormap", cmap="viridis", inversion="chunked", chunk_size=1000)
    b = R.build("colormap", cmap="viridis", inversion="cube")
    x, ctx = a.encode(mag)
    torch.testing.assert_close(a.decode(x, ctx), b.decode(x, ctx), rtol=0, atol=0)


def test_return_ratio_separates_cyclic_maps():
    assert ci.return_ratio(ci.colormap_lut("hsv"))[0] < ci.RETURN_RATIO
    assert ci.return_ratio(ci.colormap_lut("turbo"))[0] > 1.5 * ci.RETURN_RATIO
    R.build("colormap", cmap="turbo_r")  # reversed maps are fine
