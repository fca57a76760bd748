"""DilatedUNet: the U-Net's body with a time-dilated residual bottleneck."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dereverb.models import DilatedUNet, UNet
from dereverb.models.dilated_unet import DilatedTimeStack


def tiny(**kwargs) -> DilatedUNet:
    defaults = dict(in_channels=1, out_channels=1, base_channels=4, depth=2)
    defaults.update(kwargs)
    torch.manual_seed(0)
    return DilatedUNet(**defaults)


@pytest.mark.parametrize("size", [(257, 37), (256, 1), (1, 1), (33, 100)])
def test_output_shape_matches_input(size: tuple[int, int]) -> None:
    model = tiny(in_channels=3, out_channels=2)
    y = model(torch.randn(2, 3, *size))
    assert y.shape == (2, 2, *size) and torch.isfinite(y).all()


def test_is_the_unet_with_only_the_bottleneck_extended() -> None:
    """Same blocks (reused, not copied), same downsampling factor; the bottleneck's first
    module is the U-Net's ConvBlock and the dilated stack follows it."""
    unet, dilated = UNet(1, 1, 4, 3), tiny(depth=3, dilations=[1, 2, 4, 8])
    assert dilated.downsampling_factor == unet.downsampling_factor == 8
    assert isinstance(dilated, UNet)
    stack = dilated.bottleneck[1]
    assert isinstance(stack, DilatedTimeStack)
    assert [layer[0].dilation for layer in stack.layers] == [(1, 1), (1, 2), (1, 4), (1, 8)]
    unet_keys = {k for k in unet.state_dict() if not k.startswith("bottleneck.")}
    assert unet_keys == {k for k in dilated.state_dict() if not k.startswith("bottleneck.")}
    assert {k.replace("bottleneck.0.", "bottleneck.") for k in dilated.state_dict() if k.startswith("bottleneck.0.")} == {
        k for k in unet.state_dict() if k.startswith("bottleneck.")
    }


def test_same_seed_same_unet_part_as_the_unet() -> None:
    """The bottleneck factory runs where the U-Net builds its bottleneck: with the same seed the
    down path is initialised identically."""
    torch.manual_seed(0)
    unet = UNet(1, 1, 4, 2)
    dilated = tiny()
    for k, v in unet.state_dict().items():
        if k.startswith("down."):
            assert torch.equal(v, dilated.state_dict()[k]), k


def _reach(model: nn.Module, frames: int = 256) -> int:
    """Frames either side of a centre impulse whose output changes (eval mode)."""
    model.eval()
    x = torch.zeros(1, 1, 16, frames)
    with torch.no_grad():
        base = model(x)
        x[..., frames // 2] = 1.0
        diff = (model(x) - base).abs().amax(dim=(0, 1, 2))
    changed = torch.nonzero(diff > 0).flatten()
    return int(max(frames // 2 - changed.min(), changed.max() - frames // 2))


def test_dilations_widen_the_time_context() -> None:
    torch.manual_seed(0)
    unet = UNet(1, 1, 4, 2, norm="none", activation="gelu")  # GELU: no dead zones cut the reach
    dilated = tiny(norm="none", activation="gelu")
    # 1 + 2 + 4 + 8 = 15 more bottleneck frames either side, each 4 input frames at depth 2
    # (less a few frames lost to the pooling grid).
    assert _reach(dilated) > _reach(unet) + 50


def test_gradients_reach_every_parameter() -> None:
    model = tiny(norm="group", activation="gelu")
    model(torch.randn(2, 1, 31, 19)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dilations", [[], [0], [1, -2], [1.5]])
def test_bad_dilations_raise(dilations: list) -> None:
    with pytest.raises(ValueError, match="dilations"):
        DilatedUNet(dilations=dilations)


def test_unet_arguments_are_still_checked() -> None:
    with pytest.raises(ValueError, match="depth"):
        DilatedUNet(depth=0)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_grown_from_a_unet_starts_near_its_function_and_the_stack_learns(norm: str) -> None:
    """``grown_state``: the U-Net's weights fill everything but the stack, which starts near the
    identity (output within 2 % of the U-Net's) yet gets gradient in every layer (ReLU's
    gradient at exactly 0 is 0, so a zero-initialised stack would never move)."""
    torch.manual_seed(1)
    unet = UNet(1, 1, 4, 2, norm=norm)
    for p in unet.parameters():  # a "trained" U-Net: not the default initialisation
        p.data.add_(0.05 * torch.randn_like(p))
    unet.eval()
    dilated = tiny(norm=norm)
    dilated.load_state_dict(dilated.grown_state(unet.state_dict()), strict=True)
    dilated.eval()
    x = torch.randn(2, 1, 33, 64)
    with torch.no_grad():
        want, got = unet(x), dilated(x)
    assert 0 < (got - want).abs().max() <= 0.02 * want.abs().max()
    for k, v in unet.state_dict().items():
        assert torch.equal(dilated.state_dict()[k.replace("bottleneck.", "bottleneck.0.", 1)], v), k
    dilated.train()
    dilated(x).square().mean().backward()
    for layer in dilated.bottleneck[1].layers:
        assert layer[0].weight.grad.abs().max() > 0
