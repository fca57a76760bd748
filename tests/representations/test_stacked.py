"""stacked: decode from the first channel only."""

from __future__ import annotations

import torch

from dereverb import representations as R


def test_stacked_decodes_from_first_channel_only(reverb_mag):
    rep = R.build("stacked")
    x, ctx = rep.encode(reverb_mag)
    assert set(ctx) == {"db.ref", "pcen.M", "power.ref"}
    assert float(x[:, 0].min()) >= 0 and float(x[:, 0].max()) == 1.0 and float(x[:, 2].max()) == 1.0
    scrambled = x.clone()
    scrambled[:, 1:] = torch.rand_like(scrambled[:, 1:])
    torch.testing.assert_close(rep.decode(scrambled, ctx), rep.decode(x, ctx), rtol=0, atol=0)
    gray = R.build("grayscale")
    torch.testing.assert_close(rep.decode(x, ctx), gray.decode(x[:, :1], {"ref": ctx["db.ref"]}))
