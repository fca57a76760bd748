"""Tests for dereverb.models.unet: shapes, arguments, gradients, determinism, precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dereverb.models import UNet, num_parameters


def tiny(**kwargs) -> UNet:
    defaults = dict(in_channels=1, out_channels=1, base_channels=4, depth=3)
    defaults.update(kwargs)
    torch.manual_seed(0)
    return UNet(**defaults)


@pytest.mark.parametrize("size", [(257, 37), (256, 1), (100, 63), (1, 1), (256, 64)])
def test_output_spatial_shape_matches_input(size: tuple[int, int]) -> None:
    model = tiny(depth=4)
    y = model(torch.randn(2, 1, *size))
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()


def test_different_in_and_out_channels() -> None:
    model = tiny(in_channels=3, out_channels=2)
    y = model(torch.randn(2, 3, 33, 17))
    assert y.shape == (2, 2, 33, 17)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_depths(depth: int) -> None:
    model = tiny(depth=depth, base_channels=2)
    y = model(torch.randn(1, 1, 45, 23))
    assert y.shape == (1, 1, 45, 23)
    # channels double per level: deepest block has base * 2**depth
    assert model.bottleneck[0].out_channels == 2 * 2**depth
    assert len(model.down) == len(model.up) == depth


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu", "silu"])
def test_gradients_reach_every_parameter(norm: str, activation: str) -> None:
    model = tiny(norm=norm, activation=activation, in_channels=3, out_channels=3)
    x = torch.randn(2, 3, 31, 19, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_no_bias_before_norm_but_bias_without_norm() -> None:
    assert tiny(norm="batch").down[0][0].bias is None
    assert tiny(norm="none").down[0][0].bias is not None


def test_deterministic_in_eval_mode_with_fixed_seed() -> None:
    x = torch.randn(2, 1, 50, 21, generator=torch.Generator().manual_seed(1))
    a, b = tiny().eval(), tiny().eval()  # tiny() seeds torch before construction
    with torch.no_grad():
        ya, ya2, yb = a(x), a(x), b(x)
    assert torch.equal(ya, ya2)
    assert torch.equal(ya, yb)
    with torch.no_grad():
        other = UNet(1, 1, 4, 3).eval()(x)  # different (unseeded) init differs
    assert not torch.equal(ya, other)


def test_input_expansion_makes_body_match_rgb_arm() -> None:
    gray = tiny(in_channels=1, out_channels=3, input_expansion=3)
    rgb = tiny(in_channels=3, out_channels=3)
    assert isinstance(gray.expand, nn.Conv2d)
    assert (gray.expand.in_channels, gray.expand.out_channels, gray.expand.kernel_size) == (
        1,
        3,
        (1, 1),
    )
    assert isinstance(rgb.expand, nn.Identity)
    # same body: only the 1x1 expansion (3 weights + 3 biases) is extra
    assert gray.num_parameters() == rgb.num_parameters() + 6
    assert gray.down[0][0].in_channels == rgb.down[0][0].in_channels == 3
    y = gray(torch.randn(2, 1, 40, 11))
    assert y.shape == (2, 3, 40, 11)
    gray(torch.randn(1, 1, 16, 8)).sum().backward()
    assert gray.expand.weight.grad is not None and gray.expand.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(depth=0), "depth"),
        (dict(depth=-2), "depth"),
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=0), "out_channels"),
        (dict(base_channels=0), "base_channels"),
        (dict(input_expansion=0), "input_expansion"),
        (dict(norm="layer"), "norm"),
        (dict(activation="tanh"), "activation"),
        (dict(depth=2.5), "depth"),
    ],
)
def test_bad_arguments_raise_clear_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_wrong_input_shape_raises() -> None:
    model = tiny(in_channels=3)
    with pytest.raises(ValueError, match=r"expected input \(B, 3, F, N\)"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(3, 16, 16))


def test_num_parameters() -> None:
    model = tiny()
    total = sum(p.numel() for p in model.parameters())
    assert num_parameters(model) == model.num_parameters() == total
    model.head.requires_grad_(False)
    head = sum(p.numel() for p in model.head.parameters())
    assert model.num_parameters(trainable_only=True) == total - head
    # default study size stays moderate (a sanity bound, catches accidental width blow-ups)
    assert 5e6 < UNet(3, 3, 32, 4).num_parameters() < 1e7


def test_tiny_unet_overfits_one_target() -> None:
    torch.manual_seed(0)
    model = UNet(1, 1, base_channels=8, depth=2)
    x = torch.randn(1, 1, 64, 32)
    target = torch.randn(1, 1, 64, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _step in range(200):
        loss = nn.functional.mse_loss(model(x), target)
        first = loss.item() if first is None else first
        if loss.item() < first / 10:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10, f"loss only fell from {first:.3g} to {loss.item():.3g}"


def test_bf16_autocast_forward_on_cpu() -> None:
    model = tiny(in_channels=3, out_channels=3).eval()
    x = torch.randn(2, 3, 65, 30)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert y.dtype == torch.bfloat16
    assert y.shape == ref.shape
    assert torch.isfinite(y.float()).all()
    rel = (y.float() - ref).norm() / ref.norm()
    assert rel < 0.05, f"bf16 output deviates by {rel:.3f} relative"


def test_bf16_autocast_backward_in_train_mode() -> None:
    model = tiny(norm="group")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(torch.randn(2, 1, 37, 20))
    y.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_channels_last_matches_contiguous() -> None:
    model = tiny(in_channels=3, out_channels=3).eval()
    x = torch.randn(2, 3, 48, 24)
    with torch.no_grad():
        ref = model(x)
        cl_model = tiny(in_channels=3, out_channels=3).eval().to(memory_format=torch.channels_last)
        y = cl_model(x.to(memory_format=torch.channels_last))
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


def test_pads_bottom_right_with_replicate_and_crops() -> None:
    """A 15x15 input behaves exactly like its replicate-padded 16x16 version, cropped."""
    model = tiny(depth=1, base_channels=2, norm="none").eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        # 15x15 input pads to 16x16 by replicating the last row/column
        x15 = x[..., :15, :15]
        padded = torch.nn.functional.pad(x15, (0, 1, 0, 1), mode="replicate")
        assert torch.equal(model(x15), model(padded)[..., :15, :15])


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_widened_state_keeps_the_function_and_the_copies_learn_apart(norm: str) -> None:
    """Net2Net widening: base 4 -> 6 computes the same output (no noise) in eval and train mode,
    through the skip concatenations and transposed convolutions; with its default noise the
    output stays close and the copied channels are no longer identical."""
    narrow = tiny(norm=norm, input_expansion=3)
    narrow.train()
    for _ in range(3):  # running statistics that are not the initial ones
        narrow(torch.randn(2, 1, 32, 40))
    wide = tiny(norm=norm, input_expansion=3, base_channels=6)
    wide.load_state_dict(wide.widened_state(narrow.state_dict(), noise=0.0), strict=True)
    x = torch.randn(2, 1, 33, 41)
    for mode in ("eval", "train"):
        narrow.train(mode == "train"), wide.train(mode == "train")
        with torch.no_grad():
            torch.testing.assert_close(wide(x), narrow(x), atol=1e-5, rtol=1e-4)
    assert wide.num_parameters() > 2 * narrow.num_parameters()
    wide.load_state_dict(wide.widened_state(narrow.state_dict()), strict=True)
    narrow.eval(), wide.eval()
    with torch.no_grad():
        assert (wide(x) - narrow(x)).abs().mean() < 0.05 * narrow(x).abs().mean()
    w = wide.down[0][0].weight  # a new channel (4 or 5) copies one of 0-3 but not exactly
    assert not any(torch.equal(w[new], w[old]) for new in (4, 5) for old in range(4))


def test_widened_state_refuses_group_norm() -> None:
    wide = tiny(norm="group", base_channels=8)
    with pytest.raises(ValueError, match="group norm"):
        wide.widened_state(tiny(norm="group").state_dict())
