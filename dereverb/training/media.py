"""Pictures of spectrogram tensors for TensorBoard and reports (matplotlib-free, numpy only)."""

from __future__ import annotations

import numpy as np
import torch


def spectrogram_image(x: torch.Tensor, db: bool = False, dynamic_range: float = 80.0) -> np.ndarray:
    """A ``(C, F, N)`` or ``(F, N)`` tensor -> ``(F, N, 3)`` uint8 image, low frequencies at the bottom.

    3-channel tensors (RGB representations) are shown as the colours they are (clipped to [0, 1]);
    single channels are min-max scaled to gray. ``db=True`` treats the input as a magnitude and
    shows ``20 log10`` over ``dynamic_range`` dB below its maximum.
    """
    x = x.detach().float().cpu()
    if x.dim() == 2:
        x = x[None]
    if db:
        x = 20 * torch.log10(x.abs() + 1e-8)
        x = (x - (x.max() - dynamic_range)).clamp(min=0) / dynamic_range
    if x.shape[0] == 3:
        img = x.clamp(0, 1)
    else:
        ch = x[0]
        lo, hi = float(ch.min()), float(ch.max())
        img = ((ch - lo) / max(hi - lo, 1e-12)).expand(3, *ch.shape)
    img = img.flip(-2).permute(1, 2, 0).numpy()
    return (img * 255 + 0.5).astype(np.uint8)
