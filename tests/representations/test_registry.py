"""The registry: names, unknown names and keywords, bad values, @register."""

from __future__ import annotations

import pytest
import torch

from dereverb import representations as R
from dereverb.representations import base


def test_names_and_unknown_name():
    assert R.names() == ["magnitude", "log_magnitude", "grayscale", "colormap", "image_codec", "pcen", "stacked",
                         "learned_power", "learned_pcen"]
    with pytest.raises(ValueError, match="unknown representation 'rgb'.*magnitude.*colormap.*stacked"):
        R.build("rgb")


def test_unknown_kwarg_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) colour.*valid: cmap, levels"):
        R.build("colormap", colour="turbo")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) eps for representation 'magnitude'; valid: \(none\)"):
        R.build("magnitude", eps=1.0)
    with pytest.raises(ValueError, match="unknown argument.*cmap.*grayscale"):
        R.build("image_codec", base="grayscale", cmap="turbo")
    rep = R.build("image_codec", base="colormap", cmap="viridis", format="JPG", quality=90)
    assert rep.channels == 3 and rep.format == "jpeg" and rep.base_rep.cmap == "viridis"


@pytest.mark.parametrize("name, kwargs, match", [
    ("grayscale", {"levels": 1}, "levels"),
    ("grayscale", {"dynamic_range": 0}, "dynamic_range"),
    ("grayscale", {"reference": "mean"}, "reference"),
    ("colormap", {"cmap": "no_such_map"}, "unknown colormap"),
    ("colormap", {"levels": 1}, "levels"),
    ("image_codec", {"format": "gif"}, "format"),
    ("image_codec", {"quality": 0}, "quality"),
    ("image_codec", {"resize": (224,)}, "resize"),
    ("image_codec", {"base": "pcen"}, "base"),
    ("pcen", {"gain": -1.0}, "gain"),
    ("pcen", {"init": "cold"}, "init"),
    ("stacked", {"frontends": ["db", "mfcc"]}, "frontends"),
])
def test_bad_values_raise(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        R.build(name, **kwargs)


def test_register_adds_a_representation_and_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # leave the real registry as it was

    class Halved(R.Representation):
        name = "halved"

        def _encode(self, mag, ctx):
            return (mag / 2).unsqueeze(1), {}

        def _decode(self, x, ctx):
            return 2 * x[:, 0]

    assert base.register(Halved) is Halved
    assert R.names()[-1] == "halved" and isinstance(R.build("halved"), Halved)
    mag = torch.rand(1, 4, 5)
    torch.testing.assert_close(R.build("halved").decode(*R.build("halved").encode(mag)), mag)

    class Impostor(Halved):
        name = "grayscale"

    with pytest.raises(ValueError, match="'grayscale' is empty or already taken"):
        base.register(Impostor)
    assert type(R.build("grayscale")) is R.Grayscale
