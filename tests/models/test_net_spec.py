"""net_spec: a network as plain {class_path, init_args}, checked and completed by jsonargparse; building it."""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from torch import nn

from dereverb.models import DEFAULT_NET, DilatedUNet, NetSpecError, UNet, build_net, net_spec

UNET_DEFAULTS = {"base_channels": 32, "depth": 4, "norm": "batch", "activation": "relu", "input_expansion": None}


def test_default_is_the_unet_with_every_argument_written_out() -> None:
    assert net_spec() == {"class_path": DEFAULT_NET, "init_args": UNET_DEFAULTS}
    assert DEFAULT_NET == "dereverb.models.unet.UNet"


@pytest.mark.parametrize(
    "value",
    [
        {"class_path": "dereverb.models.UNet", "init_args": {"depth": 2}},  # a shorter import path
        {"init_args": {"depth": 2}},  # class_path defaults to the U-Net
        functools.partial(UNet, depth=2),
        {"class_path": "dereverb.models.unet.UNet", "init_args": {"depth": 4}},
    ],
)
def test_forms_normalise_to_one_plain_spec(value) -> None:
    spec = net_spec(value)
    assert spec["class_path"] == "dereverb.models.unet.UNet"
    assert set(spec["init_args"]) == set(UNET_DEFAULTS)


def test_jsonargparse_partial_is_unwrapped() -> None:
    """What LightningCLI hands the module for ``Callable[[int, int], nn.Module]``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--net", type=__import__("typing").Callable[[int, int], nn.Module])
    cfg = parser.parse_args(["--net", "dereverb.models.dilated_unet.DilatedUNet", "--net.init_args.depth", "2"])
    made = parser.instantiate(cfg).net
    spec = net_spec(made)
    assert spec["class_path"] == "dereverb.models.dilated_unet.DilatedUNet"
    assert spec["init_args"]["depth"] == 2 and spec["init_args"]["dilations"] == [1, 2, 4, 8]


def test_spec_is_plain_for_weights_only_checkpoints(tmp_path) -> None:
    spec = net_spec({"class_path": "dereverb.models.dilated_unet.DilatedUNet", "init_args": {"dilations": (1, 3)}})
    assert spec["init_args"]["dilations"] == [1, 3]  # tuples become lists
    torch.save({"net": spec}, tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["net"] == spec


def test_build_fills_in_the_channels() -> None:
    net = build_net(net_spec({"init_args": {"base_channels": 2, "depth": 1}}), 3, 2)
    assert isinstance(net, UNet) and (net.in_channels, net.out_channels) == (3, 2)
    dil = build_net(net_spec(DilatedUNet), 1, 1)
    assert isinstance(dil, DilatedUNet) and dil.downsampling_factor == 16


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"class_path": "torch.nn.NotThere"}, r"model.net.class_path: cannot import torch.nn.NotThere"),
        ({"class_path": "collections.OrderedDict"}, r"model.net: .*collections.OrderedDict' to be a subclass"),
        ({"class_path": "UNet"}, r"model.net.class_path: expected 'package.module.Class'"),
        ({"class_path": "torch.nn.Conv2d"}, r"model.net: .*required: kernel_size"),
        ({"init_args": {"depth": 2, "foo": 1}}, r"model.net: .*Option 'foo' is not accepted"),
        ({"init_args": {"in_channels": 3}}, r"model.net: .*Option 'in_channels' is not accepted"),
        (UNet(), r"model.net: expected \{class_path, init_args\}"),
        (lambda i, o: UNet(i, o), r"model.net: expected \{class_path, init_args\}"),
    ],
)
def test_bad_specs_name_the_key(value, match: str) -> None:
    with pytest.raises(NetSpecError, match=match):
        net_spec(value)


def test_a_network_refusing_its_arguments_names_init_args() -> None:
    with pytest.raises(NetSpecError, match=r"model.net.init_args: UNet: depth must be"):
        build_net({"class_path": DEFAULT_NET, "init_args": {"depth": 0}}, 1, 1)
    with pytest.raises(NetSpecError, match=r"model.net.init_args: .*unexpected keyword argument 'in_channels'"):
        build_net(net_spec({"class_path": "torch.nn.LayerNorm"}), 1, 1)


def test_modules_outside_the_package_are_not_imported_by_a_spec() -> None:
    """A checkpoint cannot make loading it import (and run) an arbitrary module."""
    name = "dereverb_test_not_imported_module"
    assert name not in sys.modules
    with pytest.raises(NetSpecError, match=f"module not imported; import {name} first"):
        net_spec({"class_path": f"{name}.Net"})
    assert name not in sys.modules
