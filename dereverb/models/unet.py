"""Fully convolutional 2-D U-Net for spectrogram-to-spectrogram mapping.

Pure ``nn.Module``: no STFT, no output activation (the LightningModule applies the target
representation's activation). Input ``(B, C_in, F, N)`` of any F, N >= 1 is padded on the
bottom/right edges with **replicate** padding to a multiple of ``2**depth`` and the output is
cropped back, so ``(B, C_out, F, N)`` always matches the input. Replicate (not reflect) because
reflect padding fails when the pad is not smaller than the dimension (e.g. N = 1 frame).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["batch", "instance", "group", "none"]
Activation = Literal["relu", "leaky_relu", "gelu", "silu"]

_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
                "gelu": nn.GELU, "silu": lambda: nn.SiLU(inplace=True)}


def num_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _norm_layer(norm: Norm, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        # affine + no running stats: behaves the same in train and eval, like LayerNorm per map.
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        # Largest group count <= 8 that divides the channels (8 channels per group would starve
        # narrow layers; 1 group would be LayerNorm).
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two (3×3 conv -> norm -> activation) layers: ``(B, C_in, H, W) -> (B, C_out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm, activation: Activation):
        bias = norm == "none"  # a bias right before a normalisation is redundant
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm_layer(norm, out_channels),
            _ACTIVATIONS[activation](),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm_layer(norm, out_channels),
            _ACTIVATIONS[activation](),
        )


class UNet(nn.Module):
    """U-Net: ``depth`` times (ConvBlock, 2×2 max-pool), a bottleneck ConvBlock, then
    ``depth`` times (2×2 stride-2 transposed conv, skip concatenation, ConvBlock), and a final
    1×1 conv. Level ``i`` has ``base_channels * 2**i`` channels (bottleneck: ``* 2**depth``).

    Args:
        in_channels: channels of the input representation (1 grayscale, 3 RGB, ...).
        out_channels: channels of the predicted representation.
        base_channels: channels of the first level.
        depth: number of down-sampling steps (>= 1); inputs are padded to a multiple of
            ``2**depth``.
        norm: normalisation after each 3×3 conv.
        activation: non-linearity after each normalisation.
        input_expansion: if set, a learned 1×1 conv maps ``in_channels`` to this many
            channels before the first block, so e.g. a 1-channel grayscale input can feed a
            body identical to the 3-channel RGB arms (``grayscale_learned_expansion``).

    Shapes: ``forward(x (B, in_channels, F, N)) -> (B, out_channels, F, N)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        norm: Norm = "batch",
        activation: Activation = "relu",
        input_expansion: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("base_channels", base_channels),
            ("depth", depth),
        ):
            if not _is_positive_int(value):
                raise ValueError(f"UNet: {name} must be an integer >= 1, got {value!r}")
        if input_expansion is not None and not _is_positive_int(input_expansion):
            raise ValueError(
                f"UNet: input_expansion must be None or an integer >= 1, got {input_expansion!r}"
            )
        for name, value, allowed in (("norm", norm, get_args(Norm)), ("activation", activation, get_args(Activation))):
            if value not in allowed:
                raise ValueError(f"UNet: {name} must be one of {allowed}, got {value!r}")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.base_channels = base_channels
        self.depth = depth
        self.norm = norm
        self.activation = activation
        self.input_expansion = input_expansion

        self.expand: nn.Module = (
            nn.Conv2d(in_channels, input_expansion, kernel_size=1)
            if input_expansion
            else nn.Identity()
        )
        body_in = input_expansion or in_channels
        widths = [base_channels * 2**i for i in range(depth + 1)]

        self.down = nn.ModuleList()
        prev = body_in
        for w in widths[:-1]:
            self.down.append(ConvBlock(prev, w, norm, activation))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = self.make_bottleneck(widths[-2], widths[-1])

        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            self.upsample.append(
                nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2)
            )
            self.up.append(ConvBlock(2 * widths[i], widths[i], norm, activation))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def make_bottleneck(self, in_channels: int, out_channels: int) -> nn.Module:
        """The block at the lowest resolution, ``(B, in_channels, F', N') -> (B, out_channels, F', N')``
        (``F' = F / 2**depth``). A subclass overrides this to change only the bottleneck
        (:class:`~dereverb.models.dilated_unet.DilatedUNet`); it is called from ``__init__``
        after the down path, so the parameters are created in the same order either way."""
        return ConvBlock(in_channels, out_channels, self.norm, self.activation)

    @property
    def downsampling_factor(self) -> int:
        """Frames (and bins) per pooling block: chunked inference aligns chunks to it."""
        return 2**self.depth

    def widened_state(self, narrow: dict[str, torch.Tensor], noise: float = 0.01, seed: int = 0) -> dict[str, torch.Tensor]:
        """This network's state dict made from a trained narrower :class:`UNet`'s (the same
        arguments but a smaller ``base_channels``), function-preserving as in Net2Net (Chen et al.
        2016): each new channel copies a random old one of its level, and the layers that read a
        copied channel share its weights among the copies. ``noise`` (relative to each
        weight's std) breaks the copies' symmetry so they can learn apart; 0 gives the same function."""
        if self.norm == "group" or type(self) is not UNet:
            raise ValueError("UNet.widened_state: only a plain UNet with batch, instance or no norm can be widened "
                             "(group norm mixes the copied channels)")
        gen = torch.Generator().manual_seed(seed)
        old_base = narrow["down.0.0.weight"].shape[0]
        maps = []  # per level: new channel -> old channel, and how many new channels share each old one
        for i in range(self.depth + 1):
            w_old, w_new = old_base * 2**i, self.base_channels * 2**i
            g = torch.cat([torch.arange(w_old), torch.randint(w_old, (w_new - w_old,), generator=gen)])
            maps.append((g, torch.bincount(g, minlength=w_old).float()))
        body_in = narrow["down.0.0.weight"].shape[1]  # kept as it is: a misfit is reported by the caller's shape check
        ident = (torch.arange(body_in), torch.ones(body_in))
        out: dict[str, torch.Tensor] = {k: v for k, v in narrow.items() if k.startswith("expand.")}

        def conv(name: str, m_in: tuple, m_out: tuple | None, transposed: bool = False) -> None:
            w = narrow[f"{name}.weight"]
            w = w.transpose(0, 1) if transposed else w  # ConvTranspose2d stores (in, out, kH, kW)
            w = w[m_out[0]] if m_out is not None else w
            w = w[:, m_in[0]] / m_in[1][m_in[0]].view(1, -1, 1, 1)
            w = w + noise * w.std() * torch.randn(w.shape, generator=gen) if m_out is not None else w
            out[f"{name}.weight"] = w.transpose(0, 1) if transposed else w
            if f"{name}.bias" in narrow:
                out[f"{name}.bias"] = narrow[f"{name}.bias"][m_out[0]] if m_out is not None else narrow[f"{name}.bias"]

        def block(name: str, m_in: tuple, m_out: tuple) -> None:  # ConvBlock: conv, norm, act, conv, norm, act
            conv(f"{name}.0", m_in, m_out)
            conv(f"{name}.3", m_out, m_out)
            for k, v in narrow.items():  # the norms' per-channel parameters and statistics
                if k.startswith((f"{name}.1.", f"{name}.4.")):
                    out[k] = v if v.dim() == 0 else v[m_out[0]]

        for i in range(self.depth):
            block(f"down.{i}", maps[i - 1] if i else ident, maps[i])
        block("bottleneck", maps[self.depth - 1], maps[self.depth])
        for j, i in enumerate(reversed(range(self.depth))):
            conv(f"upsample.{j}", maps[i + 1], maps[i], transposed=True)
            w_old = old_base * 2**i  # the block reads (upsampled, skip) concatenated
            both = (torch.cat([maps[i][0], maps[i][0] + w_old]), torch.cat([maps[i][1], maps[i][1]]))
            block(f"up.{j}", both, maps[i])
        conv("head", maps[0], None)
        return out

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalar parameters (see :func:`num_parameters`)."""
        return num_parameters(self, trainable_only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, F, N) -> (B, out_channels, F, N)``; no output activation."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet.forward: expected input (B, {self.in_channels}, F, N), got shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        multiple = self.downsampling_factor
        pad_h = -height % multiple
        pad_w = -width % multiple
        # F.pad order: (left, right, top, bottom); pad at the end so cropping is a slice. Always
        # pad (a zero pad is a no-op): a shape-dependent branch would be frozen into an ONNX
        # export at the example's shape.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

        x = self.expand(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips), strict=True):
            x = upsample(x)
            # Under autocast the transposed conv may emit a different dtype than the skip.
            x = block(torch.cat([x, skip.to(x.dtype)], dim=1))
        return self.head(x)[..., :height, :width]
