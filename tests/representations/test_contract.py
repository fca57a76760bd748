"""Every registered representation through the interface: shapes, dtypes, batches, devices,
round-trip bounds, ctx reuse."""

from __future__ import annotations

import pytest
import torch

from dereverb import representations as R
from dereverb.models.dereverber import ACTIVATIONS
from tests.representations.conftest import HALF_STEP_DB, db_err

ALL_DEFAULTS = R.names()


@pytest.mark.parametrize("name", ALL_DEFAULTS)
def test_shapes_dtypes_channels(name, reverb_mag):
    rep = R.build(name)
    assert rep.output_activation in ACTIVATIONS  # the activations the Dereverber applies
    with torch.autocast("cpu", dtype=torch.bfloat16):  # must be ignored: DSP stays float32
        x, ctx = rep.encode(reverb_mag.double())
        mag = rep.decode(x, ctx)
    assert x.shape == (2, rep.channels, 256, 126) and x.dtype == torch.float32
    assert mag.shape == reverb_mag.shape and mag.dtype == torch.float32 and bool((mag >= 0).all())
    assert all(isinstance(v, torch.Tensor) for v in ctx.values())
    expected = {"magnitude": (1, "softplus"), "log_magnitude": (1, "identity"), "grayscale": (1, "sigmoid"),
                "colormap": (3, "sigmoid"), "image_codec": (1, "sigmoid"), "pcen": (1, "softplus"),
                "stacked": (3, "identity"), "learned_power": (1, "sigmoid"), "learned_pcen": (1, "softplus")}[name]
    assert (rep.channels, rep.output_activation) == expected


BATCH_CASES = ("grayscale 8-bit", "colormap jet", "colormap turbo continuous", "image gray JPEG q75",
               "image turbo PNG", "pcen", "stacked db/pcen/power")


@pytest.mark.parametrize("label, name, kwargs", [d for d in R.DEMO_SET if d[0] in BATCH_CASES])
def test_batch_equals_items(label, name, kwargs, reverb_mag):
    rep = R.build(name, **kwargs)
    x, ctx = rep.encode(reverb_mag)
    for i in range(2):
        xi, ci_ = rep.encode(reverb_mag[i : i + 1])
        torch.testing.assert_close(x[i : i + 1], xi, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rep.decode(x, ctx)[i : i + 1], rep.decode(xi, ci_), rtol=1e-5, atol=1e-7)


def test_bad_tensors_raise(reverb_mag):
    rep = R.build("grayscale")
    with pytest.raises(ValueError, match=r"expects a magnitude \(B, F, N\)"):
        rep.encode(reverb_mag[0])
    with pytest.raises(ValueError, match="take the magnitude first"):
        rep.encode(torch.zeros(1, 4, 4, dtype=torch.complex64))
    x, ctx = rep.encode(reverb_mag)
    with pytest.raises(ValueError, match=r"expects \(B, 1, F, N\)"):
        rep.decode(x[:, 0], ctx)
    with pytest.raises(ValueError, match="ctx lacks 'ref'"):
        rep.decode(x, {})
    with pytest.raises(ValueError, match="ctx from a different batch"):
        rep.decode(x[:1], ctx)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("label, name, kwargs", R.DEMO_SET)
def test_cuda_matches_cpu(label, name, kwargs, reverb_mag):
    rep = R.build(name, **kwargs)
    x, ctx = rep.encode(reverb_mag)
    xg, ctxg = rep.encode(reverb_mag.cuda())
    assert xg.device.type == "cuda" and all(v.device.type == "cuda" for v in ctxg.values())
    torch.testing.assert_close(xg.cpu(), x, rtol=1e-4, atol=1e-4)
    err, inside = R.db_error(reverb_mag, rep.decode(xg, ctxg).cpu())
    err_cpu, _ = R.db_error(reverb_mag, rep.decode(x, ctx))
    assert float(err[inside].mean()) <= float(err_cpu[inside].mean()) + 1e-3


@pytest.mark.parametrize("name, kwargs, bound_db", [
    ("magnitude", {}, 1e-6),
    ("log_magnitude", {}, 1e-3),
    ("grayscale", {}, 1e-3),
    ("colormap", {"cmap": "turbo", "levels": None}, 2e-3),
    ("colormap", {"cmap": "viridis", "levels": None}, 2e-3),
    ("pcen", {}, 1e-3),
    ("stacked", {}, 1e-3),
    ("stacked", {"frontends": ["pcen", "db"]}, 1e-3),
    ("learned_power", {}, 1e-3),
    ("learned_pcen", {}, 1e-3),
])
def test_continuous_roundtrip_is_exact(name, kwargs, bound_db, reverb_mag):
    assert float(db_err(R.build(name, **kwargs), reverb_mag).max()) < bound_db


@pytest.mark.parametrize("name, kwargs", [
    ("grayscale", {"levels": 256}),
    ("colormap", {"cmap": "turbo"}),
    ("colormap", {"cmap": "viridis"}),
    ("colormap", {"cmap": "magma"}),
    ("colormap", {"cmap": "gray"}),
    ("image_codec", {}),
    ("image_codec", {"format": "png"}),
    ("image_codec", {"base": "colormap", "cmap": "turbo", "format": "png"}),
])
def test_8bit_roundtrip_within_half_a_step(name, kwargs, reverb_mag):
    err = db_err(R.build(name, **kwargs), reverb_mag)
    assert float(err.max()) <= HALF_STEP_DB + 1e-3
    assert float(err.max()) > 0.5 * HALF_STEP_DB  # it does quantise


@pytest.mark.parametrize("name, kwargs", [("grayscale", {}), ("colormap", {"levels": None}), ("pcen", {}),
                                          ("stacked", {}), ("image_codec", {"format": "png"}),
                                          ("learned_power", {}), ("learned_pcen", {})])
def test_clean_encoded_with_input_ctx_decodes_with_input_reference(name, kwargs, reverb_mag):
    rep = R.build(name, **kwargs)
    clean = reverb_mag * torch.linspace(0.05, 1.0, reverb_mag.shape[-1])  # a different signal, quieter start
    clean[:, :, :10] *= 1e-3
    x_in, ctx_in = rep.encode(reverb_mag)
    x_clean, ctx_clean = rep.encode(clean, ctx_in)
    for k in ctx_in:
        assert torch.equal(ctx_clean[k], ctx_in[k])
    err, _ = R.db_error(clean, rep.decode(x_clean, ctx_in))
    ref_db = 20 * torch.log10(reverb_mag + 1e-8).amax(dim=(1, 2))[:, None, None]
    inside = 20 * torch.log10(clean + 1e-8) >= ref_db - 80  # the INPUT's range
    assert float(err[inside].max()) < (HALF_STEP_DB + 1e-3 if name == "image_codec" else 2e-3)
    if name in ("grayscale", "colormap"):  # its own max would give a different image
        x_own, _ = rep.encode(clean)
        assert float((x_own - x_clean).abs().max()) > 0.01
