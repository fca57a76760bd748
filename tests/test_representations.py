"""Representations: round-trip bounds, ctx reuse, colormap inversion, PCEN start-up, errors, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dereverb.representations import colormap_inversion as ci
from dereverb import representations as R
from dereverb.representations.pcen import PcenConfig, pcen_forward, smoother
from tests.conftest import harmonic_speechlike, toy_rir

HALF_STEP_DB = 80 / 255 / 2  # half an 8-bit quantisation step of an 80 dB range
ALL_DEFAULTS = R.names()


def _mag(x: np.ndarray) -> torch.Tensor:
    spec = torch.stft(torch.from_numpy(x), 512, 128, window=torch.hann_window(512), return_complex=True)
    return spec.abs()[..., :-1, :]


@pytest.fixture(scope="module")
def reverb_mag() -> torch.Tensor:
    """(2, 256, 126): two different reverberant speech-like items, 1 s each."""
    items = [np.convolve(harmonic_speechlike(1.0, seed=s), toy_rir(0.5, seed=s))[:16000] for s in (0, 1)]
    mag = _mag(np.stack(items).astype(np.float32))
    mag[1] *= 0.05  # a quieter second item: per-item references must differ
    return mag


def _db_err(rep, mag):
    x, ctx = rep.encode(mag)
    err, inside = R.db_error(mag, rep.decode(x, ctx))
    return err[inside]


def _ramp(levels: int = 256, dynamic_range: float = 80.0, ref_db: float = 20.0) -> torch.Tensor:
    """(1, 1, levels) magnitudes whose dB values sit exactly on the grey levels k/(levels-1)."""
    db = ref_db - dynamic_range + dynamic_range * torch.arange(levels, dtype=torch.float64) / (levels - 1)
    return (10 ** (db / 20)).float()[None, None]


# ------------------------------------------------------------------ registry and arguments

def test_names_and_unknown_name():
    assert R.names() == ["magnitude", "log_magnitude", "grayscale", "colormap", "image_codec", "pcen", "stacked"]
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
    ("colormap", {"inversion": "kdtree"}, "inversion"),
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


@pytest.mark.parametrize("cmap", ["hsv", "twilight", "twilight_shifted", "prism", "flag", "tab10", "Set1"])
def test_cyclic_and_qualitative_colormaps_refused(cmap):
    with pytest.raises(ValueError, match=f"colormap '{cmap}' cannot be inverted: it returns to an earlier colour"):
        R.build("colormap", cmap=cmap)


# ------------------------------------------------------------------ shapes, dtypes, devices

@pytest.mark.parametrize("name", ALL_DEFAULTS)
def test_shapes_dtypes_channels(name, reverb_mag):
    rep = R.build(name)
    assert rep.output_activation in R.ACTIVATIONS
    with torch.autocast("cpu", dtype=torch.bfloat16):  # must be ignored: DSP stays float32
        x, ctx = rep.encode(reverb_mag.double())
        mag = rep.decode(x, ctx)
    assert x.shape == (2, rep.channels, 256, 126) and x.dtype == torch.float32
    assert mag.shape == reverb_mag.shape and mag.dtype == torch.float32 and bool((mag >= 0).all())
    assert all(isinstance(v, torch.Tensor) for v in ctx.values())
    expected = {"magnitude": (1, "softplus"), "log_magnitude": (1, "identity"), "grayscale": (1, "sigmoid"),
                "colormap": (3, "sigmoid"), "image_codec": (1, "sigmoid"), "pcen": (1, "softplus"),
                "stacked": (3, "identity")}[name]
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


# ------------------------------------------------------------------ round-trip bounds

@pytest.mark.parametrize("name, kwargs, bound_db", [
    ("magnitude", {}, 1e-6),
    ("log_magnitude", {}, 1e-3),
    ("grayscale", {}, 1e-3),
    ("colormap", {"cmap": "turbo", "levels": None}, 2e-3),
    ("colormap", {"cmap": "viridis", "levels": None}, 2e-3),
    ("pcen", {}, 1e-3),
    ("stacked", {}, 1e-3),
    ("stacked", {"frontends": ["pcen", "db"]}, 1e-3),
])
def test_continuous_roundtrip_is_exact(name, kwargs, bound_db, reverb_mag):
    assert float(_db_err(R.build(name, **kwargs), reverb_mag).max()) < bound_db


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
    err = _db_err(R.build(name, **kwargs), reverb_mag)
    assert float(err.max()) <= HALF_STEP_DB + 1e-3
    assert float(err.max()) > 0.5 * HALF_STEP_DB  # it does quantise


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
        mag = _ramp()
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
    err = _db_err(R.build("image_codec", **kwargs), reverb_mag[:1])
    assert float(err.mean()) < mean_bound and float(err.max()) < max_bound
    assert float(err.mean()) > HALF_STEP_DB  # lossier than plain 8-bit


def test_chroma_subsampling_is_what_hurts_jpeg_colour(reverb_mag):
    def mean_err(**kw):
        return float(_db_err(R.build("image_codec", base="colormap", cmap="turbo", format="jpeg", quality=95, **kw),
                             reverb_mag[:1]).mean())
    assert mean_err() > 4 * mean_err(subsampling="4:4:4")


# ------------------------------------------------------------------ ctx reuse

@pytest.mark.parametrize("name, kwargs", [("grayscale", {}), ("colormap", {"levels": None}), ("pcen", {}),
                                          ("stacked", {}), ("image_codec", {"format": "png"})])
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


# ------------------------------------------------------------------ colormap inversion

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
    mag = _ramp().expand(3, 40, 256).contiguous() * torch.rand(3, 40, 256, generator=torch.Generator().manual_seed(1))
    a = R.build("colormap", cmap="viridis", inversion="chunked", chunk_size=1000)
    b = R.build("colormap", cmap="viridis", inversion="cube")
    x, ctx = a.encode(mag)
    torch.testing.assert_close(a.decode(x, ctx), b.decode(x, ctx), rtol=0, atol=0)


def test_return_ratio_separates_cyclic_maps():
    assert ci.return_ratio(ci.colormap_lut("hsv"))[0] < ci.RETURN_RATIO
    assert ci.return_ratio(ci.colormap_lut("turbo"))[0] > 1.5 * ci.RETURN_RATIO
    R.build("colormap", cmap="turbo_r")  # reversed maps are fine


# ------------------------------------------------------------------ PCEN

def test_pcen_has_no_startup_artefact():
    gen = torch.Generator().manual_seed(0)
    noise = torch.complex(torch.randn(2, 64, 400, generator=gen), torch.randn(2, 64, 400, generator=gen)).abs()
    cfg = PcenConfig()
    for init in ("reflect", "loop"):
        p = pcen_forward(noise, smoother(noise, cfg.smoothing, init), cfg)
        first, later = p[..., :10].mean(), p[..., 200:].mean()
        assert abs(float(first / later) - 1) < 0.03, init
    cold = pcen_forward(noise, smoother(noise, cfg.smoothing, "zero"), cfg)
    assert float(cold[..., :10].mean() / cold[..., 200:].mean()) > 2  # what the warm start removes


def test_pcen_matches_librosa_after_startup():
    librosa = pytest.importorskip("librosa")
    gen = np.random.default_rng(0)
    s = np.abs(gen.standard_normal((1, 32, 500)) + 1j * gen.standard_normal((1, 32, 500))).astype(np.float32)
    s[..., 250:] *= 10
    ours = R.build("pcen").encode(torch.from_numpy(s))[0][:, 0].numpy()
    ref = librosa.pcen(s, sr=16000, hop_length=128, gain=0.98, bias=2, power=0.5, time_constant=0.4, eps=1e-6)
    np.testing.assert_allclose(ours[..., 400:], ref[..., 400:], rtol=1e-3)


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


# ------------------------------------------------------------------ CLI

def test_cli_help_and_bad_input(tmp_path, capsys):
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "dereverb.representations", "--help"], capture_output=True,
                         text=True, cwd=root, timeout=120)
    assert res.returncode == 0 and "--plot" in res.stdout
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert R.main(["--plot", str(tmp_path / "o.png"), "--audio", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read --audio") and len(err.splitlines()) == 1
    assert R.main(["--plot", str(tmp_path / "o.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err
    assert R.main(["--plot", str(tmp_path / "missing" / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_plot(tmp_path, capsys):
    out = tmp_path / "r.png"
    assert R.main(["--plot", str(out), "--seconds", "0.5"]) == 0
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    stdout = capsys.readouterr().out
    assert "grayscale 8-bit" in stdout and "wrote" in stdout
    assert R.main(["--plot", str(out)]) == 2  # no overwrite without --force
    assert "--force" in capsys.readouterr().err
