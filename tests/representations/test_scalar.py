"""grayscale: fixed reference and the floor below the dynamic range (shared by the image paths)."""

from __future__ import annotations

import torch

from dereverb import representations as R


def test_fixed_reference(reverb_mag):
    """reference=<dB>: one global range [ref - 80, ref] for every item, exact inside it."""
    rep = R.build("grayscale", reference=10.0)
    x, ctx = rep.encode(reverb_mag)
    assert torch.equal(ctx["ref"], torch.tensor([10.0, 10.0]))
    db = 20 * torch.log10(reverb_mag + 1e-8)
    inside = (db >= -70) & (db <= 10)
    assert float(db.max()) > 10 and int((~inside).sum()) > 100  # the fixture reaches both clips
    out_db = 20 * torch.log10(rep.decode(x, ctx) + 1e-8)
    assert float((out_db - db)[inside].abs().max()) < 1e-3
    torch.testing.assert_close(out_db[db > 10], torch.full_like(out_db[db > 10], 10.0), rtol=0, atol=1e-3)
    torch.testing.assert_close(out_db[db < -70], torch.full_like(out_db[db < -70], -70.0), rtol=0, atol=1e-3)


def test_below_range_decodes_to_floor(reverb_mag):
    """Magnitudes quieter than ref - 80 dB come back as the floor 10**((ref - 80) / 20)."""
    for rep in (R.build("grayscale"), R.build("colormap", cmap="magma"), R.build("image_codec")):
        x, ctx = rep.encode(reverb_mag)
        out = rep.decode(x, ctx)
        floor = 10 ** ((ctx["ref"] - 80) / 20)[:, None, None]
        below = 20 * torch.log10(reverb_mag + 1e-8) < (ctx["ref"] - 80)[:, None, None]
        assert int(below.sum()) > 100
        torch.testing.assert_close(out[below], floor.expand_as(out)[below], rtol=1e-3, atol=0)
