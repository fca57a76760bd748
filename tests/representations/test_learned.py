"""Learned frontends (``learned_power``, ``learned_pcen``): exact inverses, gradients through a
training step, state dicts, float32, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

from dereverb import representations as R
from dereverb.inference.checkpoint import load_model
from dereverb.models.dereverber import Dereverber
from dereverb.representations.pcen import PcenConfig, smoother
from dereverb.training.module import DereverbModule

LEARNED = ("learned_power", "learned_pcen")
PARAMS = {"learned_power": ("a",), "learned_pcen": ("log_alpha", "log_delta", "log_r", "s_logit")}
TINY_NET = {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}}
# Relative round-trip error bounds in float32 over 140 dB of random magnitudes, about 10x the
# measured maxima (3 seeds): power 5.6e-7 at init, 1.2e-6 perturbed (p_f 0.10..0.54; x ** (1/p)
# multiplies x's rounding error by 1/p); PCEN 3.6e-7 at init, 5.0e-7 perturbed. 1e-5 = 8.7e-5 dB.
REL_BOUND = {"learned_power": 1e-5, "learned_pcen": 1e-5}


def tiny(**kw) -> DereverbModule:
    args = dict(net=TINY_NET, griffin_lim_iters=2, val_metric_batches=0)
    args.update(kw)
    return DereverbModule(**args)


def random_mag(b: int = 3, f: int = 64, n: int = 80, seed: int = 0) -> torch.Tensor:
    """(B, F, N) log-uniform over 140 dB (1e-6 .. 10), a few exact zeros."""
    gen = torch.Generator().manual_seed(seed)
    mag = torch.exp(torch.empty(b, f, n).uniform_(math.log(1e-6), math.log(10.0), generator=gen))
    mag[0, :4, :6] = 0.0
    return mag


def perturb(rep: torch.nn.Module, seed: int = 1, scale: float = 0.5) -> None:
    """Move every parameter off its initial value (trained-looking, different per band)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in rep.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def rel_error(mag: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    pos = mag > 0
    return ((decoded.detach() - mag).abs() / mag)[pos]


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roundtrip_is_exact_in_float32(name, trained, seed):
    rep = R.build(name, n_bands=64)
    if trained:
        perturb(rep, seed)
    if name == "learned_power" and trained:
        assert float(rep.exponents().min()) < 0.25 < 0.35 < float(rep.exponents().max())
    mag = random_mag(seed=seed)
    x, ctx = rep.encode(mag)
    decoded = rep.decode(x, ctx)
    assert x.shape == (3, 1, 64, 80) and x.dtype == decoded.dtype == torch.float32
    assert float(rel_error(mag, decoded).max()) < REL_BOUND[name]
    assert torch.equal(decoded[mag == 0], torch.zeros_like(decoded[mag == 0]))  # silence stays silence


@pytest.mark.parametrize("name", LEARNED)
def test_clean_target_with_input_ctx_is_exact(name):
    rep = R.build(name, n_bands=64)
    perturb(rep)
    reverb, clean = random_mag(seed=3), random_mag(seed=4) * 0.3
    _, ctx = rep.encode(reverb)
    y, _ = rep.encode(clean, ctx)
    assert float(rel_error(clean, rep.decode(y, ctx)).max()) < REL_BOUND[name]


def test_learned_pcen_at_init_is_pcen():
    mag = random_mag(f=256)
    fixed, learned = R.build("pcen", time_constant=0.2), R.build("learned_pcen", time_constant=0.2)
    torch.testing.assert_close(learned.encode(mag)[0], fixed.encode(mag)[0], rtol=1e-5, atol=1e-6)


def test_learned_power_at_init_is_the_fixed_power_law():
    mag = random_mag(f=256)
    x, ctx = R.build("learned_power", exponent=0.4).encode(mag)
    x0, ctx0 = R.PowerLaw(0.4).encode(mag)
    torch.testing.assert_close(x, x0, rtol=1e-5, atol=1e-7)
    assert torch.equal(ctx["ref"], ctx0["ref"])
    p = R.build("learned_power").exponents()
    assert p.shape == (256,) and float((p - 0.3).abs().max()) < 1e-6


def test_per_band_smoother_equals_scalar_one_and_has_exact_gradients():
    mag = random_mag(b=2, f=5, n=30).double()
    s = PcenConfig().smoothing
    for init in ("reflect", "loop", "zero"):
        torch.testing.assert_close(smoother(mag, torch.full((5,), s, dtype=torch.float64), init),
                                   smoother(mag, s, init))
    coeff = torch.linspace(0.05, 0.6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: smoother(mag, c, "reflect"), (coeff,))
    with pytest.raises(ValueError, match=r"per-band s must have shape \(5,\)"):
        smoother(mag, torch.full((4,), s), "reflect")


# ------------------------------------------------------------------ training
BATCH = {"reverb": torch.randn(2, 4000, generator=torch.Generator().manual_seed(0)) * 0.1,
         "clean": torch.randn(2, 4000, generator=torch.Generator().manual_seed(1)) * 0.05}


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("target", ["log_magnitude", "same"])
def test_gradients_reach_the_parameters_and_adamw_moves_them(name, target):
    torch.manual_seed(0)
    m = tiny(representation=name, target=target)
    rep = m.model.input_repr
    params = dict(rep.named_parameters())
    assert set(params) == set(PARAMS[name])
    opt_params = {id(p) for p in m.parameters()}  # what configure_optimizers hands to AdamW
    assert all(id(p) in opt_params for p in params.values())
    loss, _ = m._step(BATCH)
    loss.backward()
    for k, p in params.items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), k
        assert float(p.grad.abs().max()) > 0, k
    before = {k: p.detach().clone() for k, p in params.items()}
    torch.optim.AdamW(m.parameters(), lr=1e-2).step()
    for k, p in params.items():
        assert not torch.equal(p.detach(), before[k]), k


@pytest.mark.parametrize("name", LEARNED)
def test_target_same_is_exact_and_its_target_gives_no_gradient(name):
    """``target: same`` works for both (the inverse is exact given ctx); the target branch is
    encoded with the parameters detached, so the loss cannot collapse the domain."""
    torch.manual_seed(0)
    m = tiny(representation=name, target="same").model
    perturb(m.input_repr)
    assert m.target_repr is m.input_repr
    _, reverb = m.analyse(BATCH["reverb"])
    _, clean = m.analyse(BATCH["clean"])
    _, ctx = m(reverb)
    target = m.target_of(clean, ctx)
    assert not target.requires_grad
    assert float(rel_error(clean, m.decode(target, ctx)).max()) < REL_BOUND[name]


@pytest.mark.parametrize("name", LEARNED)
def test_stays_float32_under_autocast_and_after_a_cast(name):
    m = tiny(representation=name).model
    mag = random_mag(f=256).double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, ctx = m(mag)
    assert y.dtype == torch.float32 and all(v.dtype == torch.float32 for v in ctx.values())
    assert all(p.dtype == torch.float32 for p in m.input_repr.parameters())
    m.input_repr.double()  # the parameters move with the module's casts; compute stays float32
    assert all(p.dtype == torch.float64 for p in m.input_repr.parameters())
    x, _ = m.input_repr.encode(mag)
    assert x.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", LEARNED)
def test_parameters_move_with_the_model_to_cuda(name):
    m = tiny(representation=name).model
    perturb(m.input_repr)
    mag = random_mag(f=256)
    with torch.no_grad():
        y_cpu, ctx_cpu = m(mag)
        mag_cpu = m.decode(y_cpu, ctx_cpu)
        m = m.to("cuda")
        assert all(p.device.type == "cuda" for p in m.input_repr.parameters())
        y, ctx = m(mag.cuda())
        torch.testing.assert_close(y.cpu(), y_cpu, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(m.decode(y, ctx).cpu(), mag_cpu, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ state dicts
@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("target", ["log_magnitude", "same"])
def test_state_dict_roundtrip_through_a_checkpoint(name, target, tmp_path):
    torch.manual_seed(0)
    m = tiny(representation=name, target=target).eval()
    perturb(m.model.input_repr)
    state = m.state_dict()
    rep_keys = sorted(k for k in state if "_repr" in k)
    assert rep_keys == sorted(f"model.input_repr.{k}" for k in PARAMS[name])  # once, not under target_repr
    path = tmp_path / "learned.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": dict(m.hparams), "epoch": 0, "global_step": 0}, path)
    lean = load_model(path)
    for k in PARAMS[name]:
        assert torch.equal(getattr(lean.input_repr, k), getattr(m.model.input_repr, k))
    fresh = Dereverber.from_hparams(m.hparams)
    fresh.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
    mag = random_mag(b=2, f=256, n=40)
    with torch.no_grad():
        y0, ctx0 = m.model(mag)
        y, ctx = fresh.eval()(mag)
        assert torch.equal(y, y0)
        assert torch.equal(fresh.decode(y, ctx), m.model.decode(y0, ctx0))
        y, ctx = lean(mag)  # load_model folds the batch norms: equal up to float rounding
        torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lean.decode(y, ctx), m.model.decode(y0, ctx0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in R.names() if n not in LEARNED])
@pytest.mark.parametrize("target", ["log_magnitude", "same"])
def test_fixed_representations_add_no_state_dict_keys(name, target):
    """Checkpoints written before learned frontends hold only ``net.*`` weights; with strict
    loading they still load because a fixed representation is no submodule."""
    model = Dereverber.from_hparams({"representation": name, "target": target, "net": TINY_NET})
    assert not isinstance(model.input_repr, torch.nn.Module)
    assert all(k.startswith("net.") for k in model.state_dict())


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("name, kwargs, match", [
    ("learned_power", {"exponent": 0}, "exponent"),
    ("learned_power", {"exponent": 1.0}, r"exponent must be in \(0, 1\)"),
    ("learned_power", {"exponent": "0.3"}, "exponent"),
    ("learned_power", {"n_bands": 0}, "n_bands"),
    ("learned_power", {"n_bands": True}, "n_bands"),
    ("learned_power", {"power": 0.3}, r"unknown argument\(s\) power.*valid: exponent, n_bands"),
    ("learned_pcen", {"gain": -1.0}, "learned_pcen gain"),
    ("learned_pcen", {"time_constant": 0}, "learned_pcen time_constant"),
    ("learned_pcen", {"init": "cold"}, "learned_pcen init"),
    ("learned_pcen", {"n_bands": 2.5}, "learned_pcen n_bands"),
])
def test_bad_arguments_give_one_line_value_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        R.build(name, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", LEARNED)
def test_band_count_mismatch_is_one_line(name):
    rep = R.build(name, n_bands=128)
    with pytest.raises(ValueError, match="F=256 bins but n_bands=128.*n_fft // 2") as info:
        rep.encode(random_mag(f=256))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"n_bands=128 must be n_fft // 2 = 256") as info:
        Dereverber.from_hparams({"representation": name, "representation_kwargs": {"n_bands": 128}, "net": TINY_NET})
    assert "\n" not in str(info.value)
    model = Dereverber.from_hparams({"representation": name, "n_fft": 256, "net": TINY_NET})
    assert model.input_repr.n_bands == 128  # filled in from the STFT
