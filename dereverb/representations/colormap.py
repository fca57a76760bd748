"""The ``colormap`` representation: grey dB image -> RGB through a matplotlib colormap, and back.

Encoding is a table lookup; decoding inverts it: every pixel goes to the nearest entry of
the colour table ``lut (K, 3)`` (an exact nearest-neighbour query of ``scipy.spatial.cKDTree``).
Colormaps that come back near an earlier colour (hsv, twilight, prism, flag, the qualitative
tables) cannot be inverted and are refused, see :func:`check_invertible`; the criterion and
its measured margins are in docs/representations.md.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from dereverb.representations.base import Representation, _check_levels, _need, register
from dereverb.representations.scalar import Grayscale

# Refuse a colormap when two table entries at least RETURN_GAP/256 of the range apart are
# closer (straight line) than RETURN_RATIO times the path length between them.
RETURN_GAP = 8
RETURN_RATIO = 0.05


def _matplotlib_colormap(name: str):
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        examples = "turbo, viridis, jet, magma, gray, inferno, plasma, cividis"
        raise ValueError(
            f"unknown colormap cmap={name!r}; use a matplotlib colormap name (e.g. {examples}; "
            "all: sorted(matplotlib.colormaps))"
        ) from None


def colormap_lut(name: str, size: int = 256) -> np.ndarray:
    """The colormap ``name`` sampled at ``size`` entries -> ``(size, 3)`` float64 RGB in [0, 1].

    Entry ``k`` is the colour of grey level ``k / (size - 1)``. ``size == 256`` is exactly the
    8-bit table matplotlib itself uses; other sizes sample the linear interpolation of that
    table (matplotlib's own resampling of a 256-colour ListedColormap such as turbo or
    viridis would repeat colours above 256 entries).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"colormap table size must be an integer >= 2, got {size!r}")
    cmap = _matplotlib_colormap(name)
    table = np.asarray(cmap.resampled(256)(np.arange(256))[:, :3], dtype=np.float64)
    if size == 256:
        return table
    pos = np.linspace(0, 255, size)
    return np.stack([np.interp(pos, np.arange(256), table[:, c]) for c in range(3)], axis=1)


def return_ratio(lut: np.ndarray, gap: int = RETURN_GAP) -> tuple[float, int, int]:
    """How close the path comes back to itself: min over ``|i - j| >= gap`` of chord / arc length.

    ``lut (K, 3)``. Returns ``(ratio, i, j)``; a ratio near 0 means colour ``i`` reappears at ``j``.
    """
    steps = np.linalg.norm(np.diff(lut, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    chord = np.linalg.norm(lut[:, None, :] - lut[None, :, :], axis=-1)
    idx = np.arange(len(lut))
    far = np.abs(idx[:, None] - idx[None, :]) >= gap
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(far, chord / np.maximum(np.abs(arc[:, None] - arc[None, :]), 1e-12), np.inf)
    i, j = np.unravel_index(np.argmin(ratio), ratio.shape)
    return float(ratio[i, j]), int(min(i, j)), int(max(i, j))


def check_invertible(name: str) -> None:
    """Raise ``ValueError`` when colormap ``name`` revisits a colour (cyclic or qualitative).

    Judged on the 256-entry table, so the verdict does not depend on ``levels``.
    """
    lut = colormap_lut(name, 256)
    ratio, i, j = return_ratio(lut)
    if ratio < RETURN_RATIO:
        raise ValueError(
            f"colormap {name!r} cannot be inverted: it returns to an earlier colour (level {i}/255 "
            f"and level {j}/255 are {np.linalg.norm(lut[i] - lut[j]):.3f} apart in RGB); cyclic and "
            "qualitative maps (hsv, twilight, prism, flag, tab10, ...) are refused - use a "
            "sequential map such as turbo, viridis, jet, magma or gray"
        )


def canonical_index(lut: np.ndarray) -> np.ndarray:
    """``(K,)`` float: for each entry, the mean index of all entries with exactly its colour.

    Identical entries cannot be told apart; decoding to the middle of the run halves the
    worst error (jet: levels 29, 30, 31 are all pure blue and decode to 30).
    """
    _, inverse = np.unique(lut, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=np.arange(len(lut), dtype=np.float64))
    return sums[inverse] / np.bincount(inverse)[inverse]


@register
class Colormap(Representation):
    """Grayscale through a matplotlib colormap -> RGB, 3 channels in [0, 1].

    ``levels=256``: the 8-bit table (grey level rounded to the nearest of 256 colours; other
    K: K colours sampled from the continuous map); ``levels=None``: continuous, linear
    interpolation between the 256 table colours. Decode: the nearest table colour (exact,
    ``cKDTree``; on the CPU whatever the input's device), for ``levels=None`` refined to the
    nearest point of the polyline around it; then undo grayscale. Identical table entries
    decode to the middle of their run. Colormaps that revisit a colour are refused (``ValueError``).
    """

    name = "colormap"
    channels = 3
    output_activation = "sigmoid"

    def __init__(self, cmap: str = "turbo", levels: int | None = 256, reference: str | float = "max",
                 dynamic_range: float = 80.0, eps: float = 1e-8) -> None:
        if not isinstance(cmap, str):
            raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
        check_invertible(cmap)
        self.cmap = cmap
        self.levels = _check_levels(levels)
        self.grayscale = Grayscale(reference=reference, dynamic_range=dynamic_range, levels=None, eps=eps)
        self.reference, self.dynamic_range, self.eps = reference, self.grayscale.dynamic_range, eps
        table = colormap_lut(cmap, self.levels or 256)
        self.lut_cpu = torch.from_numpy(table).float()
        self.tree = cKDTree(self.lut_cpu.double().numpy())
        self.canon_cpu = torch.from_numpy(canonical_index(table)).float()

    def colorize(self, g: torch.Tensor) -> torch.Tensor:
        """Grey ``(B, F, N)`` in [0, 1] -> RGB ``(B, 3, F, N)``."""
        lut = self.lut_cpu.to(g.device)
        k = lut.shape[0]
        u = g.clamp(0, 1) * (k - 1)
        if self.levels is not None:
            rgb = lut[torch.round(u).long()]
        else:
            lo = u.floor().clamp(max=k - 2)
            t = (u - lo).unsqueeze(-1)
            lo = lo.long()
            rgb = lut[lo] * (1 - t) + lut[lo + 1] * t
        return rgb.permute(0, 3, 1, 2).contiguous()

    def nearest_index(self, rgb: torch.Tensor) -> torch.Tensor:
        """``rgb (P, 3)`` -> ``(P,)`` int64 index of the nearest table entry (exact)."""
        _, idx = self.tree.query(rgb.detach().cpu().double().numpy(), workers=-1)
        return torch.from_numpy(idx).to(rgb.device)

    def uncolorize(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, 3, F, N)`` -> grey ``(B, F, N)`` in [0, 1]."""
        b, _, f, n = x.shape
        rgb = x.detach().permute(0, 2, 3, 1).reshape(-1, 3).clamp(0, 1)
        lut, canon = self.lut_cpu.to(x.device), self.canon_cpu.to(x.device)
        k = lut.shape[0]
        idx = self.nearest_index(rgb)
        if self.levels is not None:
            return (canon[idx] / (k - 1)).reshape(b, f, n)
        # Continuous: project onto the 4 segments around the nearest vertex, keep the closest.
        seg = (idx[:, None] + torch.arange(-2, 2, device=x.device)).clamp(0, k - 2)  # (P, 4)
        p, a, ab = rgb[:, None], lut[seg], lut[seg + 1] - lut[seg]
        t = (((p - a) * ab).sum(-1) / ab.square().sum(-1).clamp_min(1e-12)).clamp(0, 1)
        best = (p - a - t[..., None] * ab).square().sum(-1).argmin(dim=1, keepdim=True)
        return ((seg.gather(1, best) + t.gather(1, best)).squeeze(1) / (k - 1)).reshape(b, f, n)

    def _encode(self, mag, ctx):
        ref = self.grayscale.reference_db(mag, ctx)
        return self.colorize(self.grayscale.gray(mag, ref)), {"ref": ref}

    def _decode(self, x, ctx):
        return self.grayscale.ungray(self.uncolorize(x), _need(ctx, "ref", self.name, (x.shape[0],)))
