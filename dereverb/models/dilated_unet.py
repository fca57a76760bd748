"""U-Net with a time-dilated residual bottleneck, for long reverberation tails.

A depth-4 U-Net sees about ±90 frames (±0.7 s at a 128-sample hop, 16 kHz); a reverberation
tail can be longer. Here the bottleneck ConvBlock is followed by a residual stack of 3×3
convolutions dilated along time only (default dilations 1, 2, 4, 8), which adds
``±(1 + 2 + 4 + 8) * 2**depth`` frames (±240 frames, ±1.9 s at depth 4) of context at little
cost: the bottleneck runs at ``1 / 2**depth`` of the resolution in each direction.
Everything else is :class:`~dereverb.models.unet.UNet`'s.

Choose it with ``model.net.class_path: dereverb.models.dilated_unet.DilatedUNet``
(``configs/dilated_unet.yaml``). A trained U-Net of the same arguments can be grown into one
(:meth:`DilatedUNet.grown_state`, what ``--init_weights`` does with a U-Net's weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dereverb.models.unet import (
    _ACTIVATIONS,
    Activation,
    ConvBlock,
    Norm,
    UNet,
    _is_positive_int,
    _norm_layer,
)


class DilatedTimeStack(nn.Module):
    """Residual stack: for each dilation ``d``, ``x = x + act(norm(conv3x3_d(x)))`` with the
    convolution dilated by ``d`` along time (the last axis) only.
    Shapes: ``(B, C, F, N) -> (B, C, F, N)``."""

    def __init__(self, channels: int, dilations: Sequence[int], norm: Norm, activation: Activation) -> None:
        super().__init__()
        bias = norm == "none"  # a bias right before a normalisation is redundant
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=(1, d), dilation=(1, d), bias=bias),
                _norm_layer(norm, channels),
                _ACTIVATIONS[activation](),
            )
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


class DilatedUNet(UNet):
    """:class:`~dereverb.models.unet.UNet` whose bottleneck is ``ConvBlock`` followed by a
    :class:`DilatedTimeStack`; the other arguments, the padding and the downsampling factor
    (``2**depth``) are the U-Net's.

    Args:
        dilations: time dilations of the residual 3×3 convolutions in the bottleneck, in order.
        unet_args: :class:`~dereverb.models.unet.UNet`'s arguments (jsonargparse reads them from it).

    Shapes: ``forward(x (B, in_channels, F, N)) -> (B, out_channels, F, N)``.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, dilations: Sequence[int] = (1, 2, 4, 8), **unet_args: Any
    ) -> None:
        dilations = tuple(dilations)
        if not dilations or not all(_is_positive_int(d) for d in dilations):
            raise ValueError(f"DilatedUNet: dilations must be a non-empty list of integers >= 1, got {list(dilations)!r}")
        # Set before UNet.__init__, which calls make_bottleneck (a plain attribute may precede
        # nn.Module.__init__).
        self.dilations = dilations
        super().__init__(in_channels, out_channels, **unet_args)

    def make_bottleneck(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Sequential(
            ConvBlock(in_channels, out_channels, self.norm, self.activation),
            DilatedTimeStack(out_channels, self.dilations, self.norm, self.activation),
        )

    def grown_state(self, unet_state: Mapping[str, torch.Tensor], scale: float = 0.01) -> dict[str, torch.Tensor]:
        """This network's state dict made from a trained :class:`UNet`'s (the same arguments,
        without ``dilations``): the U-Net's bottleneck becomes the ``ConvBlock`` before the stack,
        and every residual layer starts near the identity, its norm's scale at ``scale`` and shift
        at 0 (the convolution's weights and bias with ``norm="none"``), so training adds context
        to the U-Net's function instead of starting over. Not exactly 0: the activation's gradient
        at 0 is 0 for ReLU, which would leave the stack without gradient for good."""
        state = {k.replace("bottleneck.", "bottleneck.0.", 1) if k.startswith("bottleneck.") else k: v
                 for k, v in unet_state.items()}
        for i, layer in enumerate(self.bottleneck[1].layers):  # (conv, norm, activation)
            own = {k: v.clone() for k, v in layer.state_dict().items()}
            if "1.weight" in own:  # the norm's scale and shift
                own["1.weight"].fill_(scale)
                own["1.bias"].zero_()
            else:  # norm="none": the convolution's weights and bias
                own["0.weight"].mul_(scale)
                own["0.bias"].zero_()
            state |= {f"bottleneck.1.layers.{i}.{k}": v for k, v in own.items()}
        return state
