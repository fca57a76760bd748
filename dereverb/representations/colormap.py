"""The ``colormap`` representation: grey dB image -> RGB through a matplotlib colormap, and back.

Encoding is a table lookup; decoding inverts it (RGB pixel -> table index). A colormap
here is a path through the RGB cube sampled at ``K`` entries, ``lut (K, 3)`` in [0, 1].
Inverting a colour image means finding, for every pixel, the nearest entry of that table. Two exact strategies, both with bounded memory whatever the batch size:

- ``"chunked"``: brute force over all K entries, ``chunk_size`` pixels at a time, with
  ``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")`` - direct differences,
  so neither float32 cancellation nor TF32 matmuls can pick a wrong neighbour.
- ``"cube"``: a ``cube_size**3`` grid over the RGB cube stores, per cell, a window of
  ``2w+1`` consecutive table entries around the entry nearest to the cell centre, and a
  *safe radius*: a lower bound on the distance from any point of the cell to every entry
  outside that window. A pixel whose best in-window distance is within the safe radius is
  provably decoded exactly; the rest (colours far from the path) fall back to ``chunked``.

``"auto"`` uses the cube once a decode has at least ``cube_size**3`` pixels (building it
costs about one brute-force pass over that many pixels) and brute force below that.

Colormaps that come back near an earlier colour (hsv, twilight, prism, flag, the
qualitative tables) cannot be inverted and are refused, see :func:`check_invertible`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from dereverb.representations.base import Representation, _check_levels, _need, register
from dereverb.representations.scalar import Grayscale

Inversion = Literal["auto", "chunked", "cube"]
INVERSIONS: tuple[str, ...] = ("auto", "chunked", "cube")
# Pixels per brute-force chunk: the (chunk, K) distance matrix is 8 MiB on CPU (measured
# fastest there: cache-sized; 2**16 was 35 % slower) and 64 MiB on a GPU (fewer launches).
CPU_CHUNK = 1 << 13
GPU_CHUNK = 1 << 16
QUERY_CHUNK = 1 << 15  # pixels per chunk of work that is O(pixels x a few) rather than O(pixels x K)
ARC_WINDOW = 0.06
CUBE_SIZE = 64
# Refuse a colormap when two table entries at least RETURN_GAP/256 of the range apart are
# closer (straight line) than RETURN_RATIO times the path length between them. Measured on
# matplotlib 3.11: cyclic/qualitative maps score <= 0.016 (hsv) and 0 (twilight ~0.001,
# prism, flag, tab10...); every sequential/diverging map scores >= 0.096 (RdGy, turbo 0.10).
RETURN_GAP = 8
RETURN_RATIO = 0.05


def default_chunk(device: torch.device | str) -> int:
    return CPU_CHUNK if torch.device(device).type == "cpu" else GPU_CHUNK


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
    counts = np.bincount(inverse)
    return sums[inverse] / counts[inverse]


def duplicate_runs(lut: np.ndarray) -> list[list[int]]:
    """Groups (of >= 2 indices) of identical table entries, e.g. ``[[29, 30, 31]]`` for jet."""
    _, inverse = np.unique(lut, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = [np.flatnonzero(inverse == g).tolist() for g in np.unique(inverse)]
    return sorted(g for g in groups if len(g) > 1)


def nearest_chunked(rgb: torch.Tensor, lut: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Exact nearest entry by brute force: ``rgb (P, 3)``, ``lut (K, 3)`` -> ``(P,)`` int64.

    Peak extra memory is about ``chunk_size * K`` floats (8 MiB for the CPU default 2**13
    x 256). Ties go to the lowest index.
    """
    chunk_size = chunk_size or default_chunk(rgb.device)
    out = torch.empty(rgb.shape[0], dtype=torch.int64, device=rgb.device)
    for start in range(0, rgb.shape[0], chunk_size):
        d = torch.cdist(rgb[start : start + chunk_size], lut, compute_mode="donot_use_mm_for_euclid_dist")
        out[start : start + chunk_size] = d.argmin(dim=1)
    return out


class CubeIndex:
    """Precomputed RGB-cube lookup for one table on one device (see the module docstring).

    ``lut (K, 3)`` float32; ``cube_size`` R cells per axis; ``arc_window``: the window holds
    the entries within about this RGB path length either side of the cell's nearest entry.
    Build cost: one brute-force pass over the R**3 cell centres (about 0.3 s on CPU for
    R=64, K=256); memory R**3 * 12 bytes.
    """

    def __init__(self, lut: torch.Tensor, cube_size: int = CUBE_SIZE, arc_window: float = ARC_WINDOW,
                 chunk_size: int | None = None) -> None:
        chunk_size = chunk_size or default_chunk(lut.device)
        k = lut.shape[0]
        steps = (lut[1:] - lut[:-1]).norm(dim=1)
        typical = float(steps[steps > 0].median()) if bool((steps > 0).any()) else 1.0
        # Window: the table entries within ~arc_window (RGB path length) of the cell's guess.
        window = max(2, math.ceil(arc_window / typical))
        self.width = min(2 * window + 1, k)
        self.size = cube_size
        self.lut = lut
        self.chunk_size = chunk_size
        # Queries hold (P, W) candidates, not (P, K) distances: a larger chunk means fewer small
        # ops (each a thread-pool round trip) for the same memory, ~20 MiB for W = 23.
        self.query_chunk = max(chunk_size, QUERY_CHUNK)
        r = cube_size
        axis = (torch.arange(r, device=lut.device, dtype=torch.float32) + 0.5) / r
        centres = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        self.start = torch.empty(centres.shape[0], dtype=torch.int64, device=lut.device)
        outside_min = torch.empty(centres.shape[0], device=lut.device)
        cols = torch.arange(k, device=lut.device)
        for s in range(0, centres.shape[0], chunk_size):  # one brute-force pass over the centres
            d = torch.cdist(centres[s : s + chunk_size], lut, compute_mode="donot_use_mm_for_euclid_dist")
            st = (d.argmin(dim=1) - window).clamp(0, k - self.width)
            inside = (cols >= st[:, None]) & (cols < st[:, None] + self.width)
            self.start[s : s + chunk_size] = st
            outside_min[s : s + chunk_size] = d.masked_fill_(inside, math.inf).amin(dim=1)
        # For a pixel p in cell c and any entry j outside the window (triangle inequality):
        # |p - L_j| >= |c - L_j| - |p - c| >= outside_min[c] - |p - c|.
        self.outside_min = outside_min
        self.offsets = torch.arange(self.width, device=lut.device)

    def nearest(self, rgb: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``rgb (P, 3)`` in [0, 1] -> (``(P,)`` int64 nearest index, number of fallback pixels)."""
        r = self.size
        out = torch.empty(rgb.shape[0], dtype=torch.int64, device=rgb.device)
        fallback = 0
        for s in range(0, rgb.shape[0], self.query_chunk):
            p = rgb[s : s + self.query_chunk]
            cell_rgb = (p * r).long().clamp_(0, r - 1)
            cell = (cell_rgb[:, 0] * r + cell_rgb[:, 1]) * r + cell_rgb[:, 2]
            cand = self.start[cell, None] + self.offsets  # (P, W)
            d = (p[:, None, :] - self.lut[cand]).square().sum(dim=-1)
            best_d, best = d.min(dim=1)
            idx = cand.gather(1, best[:, None]).squeeze(1)
            centre = (cell_rgb.float() + 0.5) / r
            unsure = best_d.sqrt() > self.outside_min[cell] - (p - centre).norm(dim=1)
            if bool(unsure.any()):
                where = unsure.nonzero().squeeze(1)
                idx[where] = nearest_chunked(p[where], self.lut, self.chunk_size)
                fallback += int(where.numel())
            out[s : s + self.query_chunk] = idx
        return out, fallback


@register
class Colormap(Representation):
    """Grayscale through a matplotlib colormap -> RGB, 3 channels in [0, 1].

    ``levels=256``: the 8-bit table (grey level rounded to the nearest of 256 colours; other
    K: K colours sampled from the continuous map); ``levels=None``: continuous, linear
    interpolation between the 256 table colours. Decode: nearest table colour
    (``inversion="auto"``, ``"cube"`` or ``"chunked"``, all exact with bounded memory; see
    the module docstring), or for ``levels=None`` the nearest point of the polyline
    around the nearest table colour; then undo grayscale. Identical table entries decode to
    the middle of their run. Colormaps that revisit a colour are refused (``ValueError``).
    """

    name = "colormap"
    channels = 3
    output_activation = "sigmoid"

    def __init__(self, cmap: str = "turbo", levels: int | None = 256, reference: str | float = "max",
                 dynamic_range: float = 80.0, eps: float = 1e-8, inversion: str = "auto",
                 chunk_size: int | None = None) -> None:
        if not isinstance(cmap, str):
            raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
        check_invertible(cmap)
        if inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {', '.join(INVERSIONS)}, got {inversion!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise ValueError(f"chunk_size must be None (2**13 on CPU, 2**16 on GPU) or a positive integer, "
                             f"got {chunk_size!r}")
        self.cmap = cmap
        self.levels = _check_levels(levels)
        self.inversion = inversion
        self.chunk_size = chunk_size
        self.grayscale = Grayscale(reference=reference, dynamic_range=dynamic_range, levels=None, eps=eps)
        self.reference, self.dynamic_range, self.eps = reference, self.grayscale.dynamic_range, eps
        table = colormap_lut(cmap, self.levels or 256)
        self.lut_cpu = torch.from_numpy(table).float()
        self.canon_cpu = torch.from_numpy(canonical_index(table)).float()
        self._per_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cubes: dict[str, CubeIndex] = {}

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The table and its canonical indices on ``device`` (cached per device)."""
        key = str(device)
        if key not in self._per_device:
            self._per_device[key] = (self.lut_cpu.to(device), self.canon_cpu.to(device))
        return self._per_device[key]

    def _cube(self, device: torch.device) -> CubeIndex:
        key = str(device)
        if key not in self._cubes:
            self._cubes[key] = CubeIndex(self._tables(device)[0], chunk_size=self.chunk_size)
        return self._cubes[key]

    def colorize(self, g: torch.Tensor) -> torch.Tensor:
        """Grey ``(B, F, N)`` in [0, 1] -> RGB ``(B, 3, F, N)``."""
        lut, _ = self._tables(g.device)
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
        """``rgb (P, 3)`` -> ``(P,)`` int64 nearest table entry (exact; see the module docstring)."""
        lut, _ = self._tables(rgb.device)
        use_cube = self.inversion == "cube" or (
            self.inversion == "auto" and (str(rgb.device) in self._cubes or rgb.shape[0] >= CUBE_SIZE**3))
        if use_cube:
            return self._cube(rgb.device).nearest(rgb)[0]
        return nearest_chunked(rgb, lut, self.chunk_size)

    def uncolorize(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, 3, F, N)`` -> grey ``(B, F, N)`` in [0, 1]."""
        b, _, f, n = x.shape
        rgb = x.detach().permute(0, 2, 3, 1).reshape(-1, 3).clamp(0, 1).contiguous()
        lut, canon = self._tables(x.device)
        k = lut.shape[0]
        idx = self.nearest_index(rgb)
        if self.levels is not None:
            return (canon[idx] / (k - 1)).reshape(b, f, n)
        # Continuous: project onto the 4 segments around the nearest vertex, keep the closest
        # (chunked like the search, so memory stays bounded).
        u = torch.empty(rgb.shape[0], device=x.device)
        offsets = torch.arange(-2, 2, device=x.device)
        chunk = max(self.chunk_size or default_chunk(x.device), QUERY_CHUNK)
        for s in range(0, rgb.shape[0], chunk):
            p = rgb[s : s + chunk, None]  # (P, 1, 3)
            seg = (idx[s : s + chunk, None] + offsets).clamp(0, k - 2)  # (P, 4)
            a, ab = lut[seg], lut[seg + 1] - lut[seg]
            t = (((p - a) * ab).sum(-1) / ab.square().sum(-1).clamp_min(1e-12)).clamp(0, 1)
            best = (p - a - t[..., None] * ab).square().sum(-1).argmin(dim=1, keepdim=True)
            u[s : s + chunk] = (seg.gather(1, best) + t.gather(1, best)).squeeze(1)
        return (u / (k - 1)).reshape(b, f, n)

    def _encode(self, mag, ctx):
        ref = self.grayscale.reference_db(mag, ctx)
        return self.colorize(self.grayscale.gray(mag, ref)), {"ref": ref}

    def _decode(self, x, ctx):
        return self.grayscale.ungray(self.uncolorize(x), _need(ctx, "ref", self.name, (x.shape[0],)))
