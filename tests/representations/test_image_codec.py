"""image_codec: 8-bit RGB, lossy JPEG / resize bounds, chroma subsampling."""

from __future__ import annotations

import pytest
import torch

from dereverb import representations as R
from tests.representations.conftest import HALF_STEP_DB, db_err


def test_levels_through_8bit_rgb():
    """RGB rounded to uint8 (the PNG path): which levels no longer decode to themselves.

    turbo, magma, gray: none. viridis: 113->112, 129->130, 143->144, 147->146 (112/113 and
    129/130 become the same uint8 colour). jet: 28..32 all round to (0, 0, 255) -> 30.
    """
    wrong = {"turbo": {}, "magma": {}, "gray": {},
             "viridis": {113: 112, 129: 130, 143: 144, 147: 146},
             "jet": {28: 30, 29: 30, 31: 30, 32: 30}}
    for cmap, moved in wrong.items():
        rep = R.build("image_codec", base="colormap", cmap=cmap)
        g = torch.arange(256.0)[None, None] / 255
        back = (rep.base_rep.uncolorize(rep.image_roundtrip(rep.base_rep.colorize(g)))[0, 0] * 255).round().long()
        changed = {i: int(v) for i, v in enumerate(back.tolist()) if v != i}
        assert changed == moved, cmap


# Bounds measured on this fixture (1 s reverberant harmonic signal), plus a margin of ~30 %.
@pytest.mark.parametrize("kwargs, mean_bound, max_bound", [
    ({"format": "jpeg", "quality": 75}, 1.9, 14.0),                       # measured 1.46 / 10.4
    ({"base": "colormap", "cmap": "turbo", "format": "jpeg", "quality": 75}, 3.5, 43.0),  # 2.70 / 32.9
    ({"base": "colormap", "cmap": "turbo", "format": "jpeg", "quality": 95,
      "subsampling": "4:4:4"}, 0.36, 2.2),                                  # 0.27 / 1.63
    ({"format": "png", "resize": (224, 224)}, 2.5, 33.0),                 # 1.91 / 25.4
])
def test_lossy_image_paths_bounded(kwargs, mean_bound, max_bound, reverb_mag):
    err = db_err(R.build("image_codec", **kwargs), reverb_mag[:1])
    assert float(err.mean()) < mean_bound and float(err.max()) < max_bound
    assert float(err.mean()) > HALF_STEP_DB  # lossier than plain 8-bit


def test_chroma_subsampling_is_what_hurts_jpeg_colour(reverb_mag):
    def mean_err(**kw):
        return float(db_err(R.build("image_codec", base="colormap", cmap="turbo", format="jpeg", quality=95, **kw),
                             reverb_mag[:1]).mean())
    assert mean_err() > 4 * mean_err(subsampling="4:4:4")
