"""Spectrogram representations the U-Net sees: encode a magnitude, decode a network output.

``build(name, **kwargs) -> Representation``; ``names()`` lists the names. Every
representation has ``channels`` and ``output_activation`` (``"sigmoid"`` for [0, 1] images,
``"identity"`` for log magnitude, ``"softplus"`` for non-negative unbounded values), and

- ``encode(mag (B, F, N), ctx=None) -> (x (B, C, F, N), ctx)``: ``ctx`` is a small dict of
  tensors (e.g. ``{"ref": (B,)}``). Encoding the clean target with the reverberant input's
  ``ctx`` reuses the input's reference, so a network output decodes with it (the clean
  maximum is unknown at inference).
- ``decode(x (B, C, F, N), ctx) -> mag (B, F, N)``.

Everything runs in float32 with autocast disabled, on whatever device the tensors are on.
Magnitudes are ``|STFT|`` with the Nyquist bin dropped (``dereverb.signal.dsp.magnitude``).

Round trips (see docs/representations.md for measured numbers): ``magnitude``,
``log_magnitude`` and ``pcen`` invert to float precision; ``grayscale``/``colormap`` clip to
``[ref - dynamic_range, ref]`` dB, so magnitudes below the range decode to the floor
``10**((ref - dynamic_range) / 20)``, and ``levels`` quantise inside it. Decoding a colour
image is not differentiable (nearest lookup-table colour); the others are.

``python -m dereverb.representations --plot out.png [--audio file.flac]`` draws one
utterance in every representation with its decode error.
"""

from __future__ import annotations

import abc
import functools
import inspect
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dereverb.representations import colormap_inversion as ci
from dereverb.representations.pcen import INITS, PcenConfig, pcen_forward, pcen_inverse, smoother

Ctx = dict[str, torch.Tensor]
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "identity", "softplus")


def _float32(fn: Callable) -> Callable:
    """Run ``fn(self, tensor, ctx)`` on a float32 tensor with autocast off for its device."""

    @functools.wraps(fn)
    def wrapper(self: Representation, x: torch.Tensor, ctx: Ctx | None = None):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}.{fn.__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise ValueError(f"{self.name}.{fn.__name__} expects a real tensor; take the magnitude first "
                             "(dereverb.signal.dsp.magnitude)")
        if ctx is not None and not isinstance(ctx, dict):
            raise TypeError(f"{self.name}: ctx must be the dict returned by encode, got {type(ctx).__name__}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            if ctx is not None:
                ctx = {k: v.float() for k, v in ctx.items()}
            return fn(self, x.float(), ctx)

    return wrapper


def _need(ctx: Ctx | None, key: str, owner: str, shape: tuple[int, ...]) -> torch.Tensor:
    if ctx is None or key not in ctx:
        raise ValueError(f"{owner}: ctx lacks {key!r}; pass the ctx returned by encode() of the input")
    value = ctx[key]
    if tuple(value.shape) != shape:
        raise ValueError(f"{owner}: ctx[{key!r}] has shape {tuple(value.shape)}, expected {shape} "
                         "(ctx from a different batch?)")
    return value


def _check_number(name: str, value: Any, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_levels(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 65536:
        raise ValueError(f"levels must be None (continuous) or an integer in [2, 65536], got {value!r}")
    return value


class Representation(abc.ABC):
    """Base class: ``encode(mag (B, F, N), ctx=None) -> (x (B, C, F, N), ctx)``, ``decode(x, ctx)``.

    Subclasses implement ``_encode`` / ``_decode``; the public methods check shapes and run
    them in float32."""

    name: str = ""
    channels: int = 1
    output_activation: str = "identity"

    @classmethod
    def valid_kwargs(cls, kwargs: dict[str, Any]) -> list[str]:
        """Keyword arguments ``build`` accepts for this representation (given the others)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]

    @_float32
    def encode(self, mag: torch.Tensor, ctx: Ctx | None = None) -> tuple[torch.Tensor, Ctx]:
        if mag.dim() != 3:
            raise ValueError(f"{self.name}.encode expects a magnitude (B, F, N), got shape {tuple(mag.shape)}")
        return self._encode(mag, ctx)

    @_float32
    def decode(self, x: torch.Tensor, ctx: Ctx | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{self.name}.decode expects (B, {self.channels}, F, N), got shape {tuple(x.shape)}")
        return self._decode(x, ctx)

    @abc.abstractmethod
    def _encode(self, mag: torch.Tensor, ctx: Ctx | None) -> tuple[torch.Tensor, Ctx]:
        """``mag`` (B, F, N) float32 -> (x (B, C, F, N), ctx)."""

    @abc.abstractmethod
    def _decode(self, x: torch.Tensor, ctx: Ctx | None) -> torch.Tensor:
        """``x`` (B, C, F, N) float32 and the encode ctx -> magnitude (B, F, N)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.valid_kwargs({}) if hasattr(self, k))
        return f"{type(self).__name__}({params})"


class Magnitude(Representation):
    """Raw ``S`` (the ``numpy.save`` case): 1 channel, softplus output."""

    name = "magnitude"
    output_activation = "softplus"

    def _encode(self, mag, ctx):
        return mag.unsqueeze(1), {}

    def _decode(self, x, ctx):
        return x[:, 0].clamp_min(0)


class LogMagnitude(Representation):
    """``log(S + eps)``: 1 channel, identity output; ``eps`` 1e-5 (-100 dB re 1)."""

    name = "log_magnitude"

    def __init__(self, eps: float = 1e-5) -> None:
        self.eps = _check_number("log_magnitude eps", eps)

    def _encode(self, mag, ctx):
        return torch.log(mag.clamp_min(0) + self.eps).unsqueeze(1), {}

    def _decode(self, x, ctx):
        return (torch.exp(x[:, 0]) - self.eps).clamp_min(0)


class Grayscale(Representation):
    """dB image in [0, 1]: ``(20 log10(S + eps) - (ref - dynamic_range)) / dynamic_range``, clipped.

    ``reference="max"``: ref = the utterance's own max dB (per item, like an image);
    a float: a fixed global reference in dB. ``levels``: None (continuous) or e.g. 256 (8 bit).
    ctx ``{"ref": (B,)}`` in dB.
    """

    name = "grayscale"
    output_activation = "sigmoid"

    def __init__(self, reference: str | float = "max", dynamic_range: float = 80.0,
                 levels: int | None = None, eps: float = 1e-8) -> None:
        if reference != "max":
            reference = _check_number("grayscale reference (dB) or 'max'", reference, positive=False)
        self.reference = reference
        self.dynamic_range = _check_number("dynamic_range (dB)", dynamic_range)
        self.levels = _check_levels(levels)
        self.eps = _check_number("grayscale eps", eps)

    def to_db(self, mag: torch.Tensor) -> torch.Tensor:
        return 20.0 * torch.log10(mag.clamp_min(0) + self.eps)

    def reference_db(self, mag: torch.Tensor, ctx: Ctx | None) -> torch.Tensor:
        """``(B,)`` reference in dB: from ctx when given, else from ``mag`` / the fixed value."""
        b = mag.shape[0]
        if ctx is not None:
            return _need(ctx, "ref", self.name, (b,))
        if self.reference == "max":
            return self.to_db(mag).amax(dim=(1, 2)).detach()
        return torch.full((b,), self.reference, dtype=mag.dtype, device=mag.device)

    def gray(self, mag: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Continuous grey level in [0, 1], ``(B, F, N)`` (no quantisation)."""
        floor = (ref - self.dynamic_range)[:, None, None]
        return ((self.to_db(mag) - floor) / self.dynamic_range).clamp(0, 1)

    def ungray(self, g: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        db = g.clamp(0, 1) * self.dynamic_range + (ref - self.dynamic_range)[:, None, None]
        return (torch.pow(10.0, db / 20.0) - self.eps).clamp_min(0)

    def _encode(self, mag, ctx):
        ref = self.reference_db(mag, ctx)
        g = self.gray(mag, ref)
        if self.levels is not None:
            g = torch.round(g * (self.levels - 1)) / (self.levels - 1)
        return g.unsqueeze(1), {"ref": ref}

    def _decode(self, x, ctx):
        return self.ungray(x[:, 0], _need(ctx, "ref", self.name, (x.shape[0],)))


class Colormap(Representation):
    """Grayscale through a matplotlib colormap -> RGB, 3 channels in [0, 1].

    ``levels=256``: the 8-bit table (grey level rounded to the nearest of 256 colours; other
    K: K colours sampled from the continuous map); ``levels=None``: continuous, linear
    interpolation between the 256 table colours. Decode: nearest table colour
    (``inversion="auto"``, ``"cube"`` or ``"chunked"``, all exact with bounded memory; see
    dereverb.representations.colormap_inversion), or for ``levels=None`` the nearest point of the polyline
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
        ci.check_invertible(cmap)
        if inversion not in ci.INVERSIONS:
            raise ValueError(f"inversion must be one of {', '.join(ci.INVERSIONS)}, got {inversion!r}")
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
        table = ci.colormap_lut(cmap, self.levels or 256)
        self.lut_cpu = torch.from_numpy(table).float()
        self.canon_cpu = torch.from_numpy(ci.canonical_index(table)).float()
        self._per_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cubes: dict[str, ci.CubeIndex] = {}

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The table and its canonical indices on ``device`` (cached per device)."""
        key = str(device)
        if key not in self._per_device:
            self._per_device[key] = (self.lut_cpu.to(device), self.canon_cpu.to(device))
        return self._per_device[key]

    def _cube(self, device: torch.device) -> ci.CubeIndex:
        key = str(device)
        if key not in self._cubes:
            self._cubes[key] = ci.CubeIndex(self._tables(device)[0], chunk_size=self.chunk_size)
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
        """``rgb (P, 3)`` -> ``(P,)`` int64 nearest table entry (exact; see colormap_inversion)."""
        lut, _ = self._tables(rgb.device)
        use_cube = self.inversion == "cube" or (
            self.inversion == "auto" and (str(rgb.device) in self._cubes or rgb.shape[0] >= ci.CUBE_SIZE**3))
        if use_cube:
            return self._cube(rgb.device).nearest(rgb)[0]
        return ci.nearest_chunked(rgb, lut, self.chunk_size)

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
        chunk = max(self.chunk_size or ci.default_chunk(x.device), ci.QUERY_CHUNK)
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


IMAGE_FORMATS: tuple[str | None, ...] = (None, "png", "jpeg")


class ImageCodec(Representation):
    """The "saved as an image" path on top of ``grayscale`` or ``colormap``.

    encode: base encode -> uint8 (round) -> optional Pillow resize to ``resize=(H, W)``
    (BILINEAR; Pillow widens the filter when shrinking, i.e. antialiased) -> optional
    PNG/JPEG encode + decode (Pillow; JPEG ``quality``, and ``subsampling`` None = Pillow's
    default 4:2:0 chroma subsampling for RGB, or "4:4:4" / "4:2:2") -> float -> back to ``(F, N)`` with
    ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` (float, no second
    rounding). The Pillow part runs on CPU, image by image. decode = the base's decode.
    Other keyword arguments go to the base (``cmap=``, ``reference=``, ...).
    """

    name = "image_codec"
    output_activation = "sigmoid"
    BASES = ("grayscale", "colormap")

    def __init__(self, base: str = "grayscale", format: str | None = None, quality: int = 75,
                 resize: Sequence[int] | None = None, subsampling: str | None = None,
                 **base_kwargs: Any) -> None:
        if base not in self.BASES:
            raise ValueError(f"image_codec base must be one of {', '.join(self.BASES)}, got {base!r}")
        fmt = format.lower() if isinstance(format, str) else format
        fmt = {"jpg": "jpeg", "none": None}.get(fmt, fmt)
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"image_codec format must be None, 'png' or 'jpeg', got {format!r}")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ValueError(f"image_codec quality must be an integer in [1, 100], got {quality!r}")
        if resize is not None:
            if (not isinstance(resize, (list, tuple)) or len(resize) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resize)):
                raise ValueError(f"image_codec resize must be None or (H, W) positive integers, got {resize!r}")
            resize = (int(resize[0]), int(resize[1]))
        if subsampling not in (None, "4:4:4", "4:2:2", "4:2:0"):
            raise ValueError(f"image_codec subsampling must be None (Pillow's default, 4:2:0), '4:4:4', '4:2:2' "
                             f"or '4:2:0', got {subsampling!r}")
        self.subsampling = subsampling
        self.format, self.quality, self.resize = fmt, quality, resize
        self.base = base
        self.base_rep = _REGISTRY[base](**base_kwargs)
        self.channels = self.base_rep.channels

    @classmethod
    def valid_kwargs(cls, kwargs):
        own = ["base", "format", "quality", "resize", "subsampling"]
        base = kwargs.get("base", "grayscale")
        return own + (_REGISTRY[base].valid_kwargs({}) if base in cls.BASES else [])

    def image_roundtrip(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, N)`` in [0, 1] -> the same after uint8 / resize / codec, on x's device."""
        from PIL import Image

        b, c, f, n = x.shape
        pixels = torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for img in pixels:
            im = Image.fromarray(img[..., 0] if c == 1 else img, mode="L" if c == 1 else "RGB")
            if self.resize is not None:
                im = im.resize((self.resize[1], self.resize[0]), Image.Resampling.BILINEAR)
            if self.format is not None:
                buf = io.BytesIO()
                options: dict[str, Any] = {}
                if self.format == "jpeg":
                    options["quality"] = self.quality
                    if self.subsampling is not None:
                        options["subsampling"] = self.subsampling
                im.save(buf, format=self.format.upper(), **options)
                buf.seek(0)
                im = Image.open(buf)
                im.load()
            arr = np.asarray(im, dtype=np.float32) / 255.0
            out.append(arr[None] if c == 1 else arr.transpose(2, 0, 1))
        y = torch.from_numpy(np.stack(out)).to(x.device)
        if self.resize is not None and tuple(self.resize) != (f, n):
            y = torch.nn.functional.interpolate(y, size=(f, n), mode="bilinear", align_corners=False,
                                                antialias=True).clamp(0, 1)
        return y

    def _encode(self, mag, ctx):
        x, ctx = self.base_rep._encode(mag, ctx)
        return self.image_roundtrip(x), ctx

    def _decode(self, x, ctx):
        return self.base_rep._decode(x, ctx)


class Pcen(Representation):
    """Per-channel energy normalisation (librosa defaults; ``init`` of the smoother, see dereverb.representations.pcen).

    ctx ``{"M": (B, F, N)}``: the smoother of the *input*; the clean target is encoded and
    every output decoded with it, which makes the inverse exact for the input.
    """

    name = "pcen"
    output_activation = "softplus"

    def __init__(self, gain: float = 0.98, bias: float = 2.0, power: float = 0.5, time_constant: float = 0.4,
                 eps: float = 1e-6, sample_rate: int = 16000, hop_length: int = 128, init: str = "reflect") -> None:
        self.cfg = PcenConfig(gain, bias, power, time_constant, eps, sample_rate, hop_length)
        if init not in INITS:
            raise ValueError(f"pcen init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        for k in ("gain", "bias", "power", "time_constant", "eps", "sample_rate", "hop_length"):
            setattr(self, k, getattr(self.cfg, k))

    def _encode(self, mag, ctx):
        if ctx is not None:
            m = _need(ctx, "M", self.name, tuple(mag.shape))
        else:
            m = smoother(mag.clamp_min(0), self.cfg.smoothing, self.init).detach()
        return pcen_forward(mag, m, self.cfg).unsqueeze(1), {"M": m}

    def _decode(self, x, ctx):
        b, _, f, n = x.shape
        return pcen_inverse(x[:, 0], _need(ctx, "M", self.name, (b, f, n)), self.cfg)


class PowerLaw(Representation):
    """``(S / max S) ** exponent`` per utterance (the stacked "power" channel); ctx ``{"ref": (B,)}``."""

    name = "power"
    output_activation = "sigmoid"

    def __init__(self, exponent: float = 0.3) -> None:
        self.exponent = _check_number("power exponent", exponent)

    def _encode(self, mag, ctx):
        b = mag.shape[0]
        ref = _need(ctx, "ref", self.name, (b,)) if ctx is not None else mag.amax(dim=(1, 2)).clamp_min(1e-12).detach()
        return (mag.clamp_min(0) / ref[:, None, None]).pow(self.exponent).unsqueeze(1), {"ref": ref}

    def _decode(self, x, ctx):
        ref = _need(ctx, "ref", self.name, (x.shape[0],))
        return x[:, 0].clamp_min(0).pow(1.0 / self.exponent) * ref[:, None, None]


class Stacked(Representation):
    """Several single-channel frontends as channels (Merlin Sound ID style), default dB, PCEN, power.

    ``frontends`` from ``"db"`` (continuous grayscale, ``reference``/``dynamic_range``),
    ``"pcen"`` (defaults), ``"power"`` (``(S/max)**power_exponent``), ``"log"`` (log magnitude).
    ctx keys are prefixed by the frontend (``"db.ref"``, ``"pcen.M"``, ``"power.ref"``).
    decode uses only the FIRST channel (its frontend's inverse); the others are extra input
    views for the network. Channel ranges differ, so ``output_activation`` is identity.
    """

    name = "stacked"
    output_activation = "identity"
    FRONTENDS = ("db", "pcen", "power", "log")

    def __init__(self, frontends: Sequence[str] = ("db", "pcen", "power"), reference: str | float = "max",
                 dynamic_range: float = 80.0, power_exponent: float = 0.3) -> None:
        if isinstance(frontends, str) or not isinstance(frontends, (list, tuple)) or not frontends:
            raise ValueError(f"stacked frontends must be a non-empty list from {', '.join(self.FRONTENDS)}, "
                             f"got {frontends!r}")
        bad = [f for f in frontends if f not in self.FRONTENDS]
        if bad or len(set(frontends)) != len(frontends):
            raise ValueError(f"stacked frontends must be distinct names from {', '.join(self.FRONTENDS)}, "
                             f"got {list(frontends)!r}")
        self.frontends = tuple(frontends)
        self.reference, self.dynamic_range, self.power_exponent = reference, dynamic_range, power_exponent
        make = {"db": lambda: Grayscale(reference=reference, dynamic_range=dynamic_range),
                "pcen": Pcen, "power": lambda: PowerLaw(power_exponent), "log": LogMagnitude}
        self.parts = [make[f]() for f in self.frontends]
        self.channels = len(self.parts)

    def _encode(self, mag, ctx):
        xs, out_ctx = [], {}
        for key, part in zip(self.frontends, self.parts, strict=True):
            sub = None
            if ctx is not None:
                sub = {k.split(".", 1)[1]: v for k, v in ctx.items() if k.startswith(key + ".")}
            x, c = part._encode(mag, sub)
            xs.append(x)
            out_ctx.update({f"{key}.{k}": v for k, v in c.items()})
        return torch.cat(xs, dim=1), out_ctx

    def _decode(self, x, ctx):
        key = self.frontends[0]
        sub = {k.split(".", 1)[1]: v for k, v in (ctx or {}).items() if k.startswith(key + ".")}
        return self.parts[0]._decode(x[:, :1], sub)


_REGISTRY: dict[str, type[Representation]] = {
    "magnitude": Magnitude,
    "log_magnitude": LogMagnitude,
    "grayscale": Grayscale,
    "colormap": Colormap,
    "image_codec": ImageCodec,
    "pcen": Pcen,
    "stacked": Stacked,
}


def names() -> list[str]:
    """The representation names ``build`` accepts."""
    return list(_REGISTRY)


def build(name: str, **kwargs: Any) -> Representation:
    """Representation ``name`` with its keyword arguments; ``ValueError`` lists valid choices."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown representation {name!r}; choose one of: {', '.join(_REGISTRY)}")
    cls = _REGISTRY[name]
    valid = cls.valid_kwargs(kwargs)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        note = f" with base={kwargs.get('base', 'grayscale')!r}" if cls is ImageCodec else ""
        raise ValueError(f"unknown argument(s) {', '.join(unknown)} for representation {name!r}{note}; "
                         f"valid: {', '.join(valid) or '(none)'}")
    return cls(**kwargs)


# ----------------------------------------------------------------------------- demo / CLI

def db_error(mag: torch.Tensor, decoded: torch.Tensor, dynamic_range: float = 80.0,
             eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """|dB error| ``(B, F, N)`` and the mask of bins inside ``[max - dynamic_range, max]`` dB per item."""
    ref_db = 20 * torch.log10(mag + eps)
    err = (20 * torch.log10(decoded.clamp_min(0) + eps) - ref_db).abs()
    inside = ref_db >= ref_db.amax(dim=(1, 2), keepdim=True) - dynamic_range
    return err, inside


DEMO_SET: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("magnitude", "magnitude", {}),
    ("log_magnitude", "log_magnitude", {}),
    ("grayscale", "grayscale", {}),
    ("grayscale 8-bit", "grayscale", {"levels": 256}),
    ("colormap turbo", "colormap", {"cmap": "turbo"}),
    ("colormap viridis", "colormap", {"cmap": "viridis"}),
    ("colormap jet", "colormap", {"cmap": "jet"}),
    ("colormap magma", "colormap", {"cmap": "magma"}),
    ("colormap gray (RGB)", "colormap", {"cmap": "gray"}),
    ("colormap turbo continuous", "colormap", {"cmap": "turbo", "levels": None}),
    ("image gray PNG", "image_codec", {"format": "png"}),
    ("image gray JPEG q75", "image_codec", {"format": "jpeg", "quality": 75}),
    ("image turbo PNG", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "png"}),
    ("image turbo JPEG q75", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg"}),
    ("image turbo JPEG q95", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg", "quality": 95}),
    ("image gray 224x224 PNG", "image_codec", {"format": "png", "resize": (224, 224)}),
    ("image turbo JPEG q95 4:4:4", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg",
                                                   "quality": 95, "subsampling": "4:4:4"}),
    ("image turbo 224x224 PNG", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "png",
                                                "resize": (224, 224)}),
    ("pcen", "pcen", {}),
    ("stacked db/pcen/power", "stacked", {}),
)


def demo_signal(seconds: float = 3.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A harmonic chirp (F0 120 -> 240 Hz, 15 harmonics, syllable gating) in an exponential tail.

    The "room" is white noise decaying 60 dB in 0.6 s convolved with the dry chirp. ``(L,)``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 * 2 ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    dry = sum(np.sin(k * phase) / k for k in range(1, 16)) * (np.sin(2 * np.pi * 2.5 * t) > 0.2)
    n = int(0.6 * sr)
    rir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n) * 0.2
    rir[0] = 1.0
    wet = np.convolve(dry, rir)[: t.size]
    return (0.5 * wet / np.abs(wet).max()).astype(np.float32)


def _spectrogram(wave: np.ndarray) -> torch.Tensor:
    """``(L,)`` -> magnitude ``(1, 256, N)`` via dereverb.signal.dsp (torch.stft fallback: 512/128 hann)."""
    x = torch.from_numpy(wave)[None]
    try:
        from dereverb.signal import dsp

        cfg = dsp.StftConfig()
        return dsp.magnitude(dsp.stft(x, cfg))
    except ImportError:
        spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True)
        return spec.abs()[:, :-1]


def _show(ax, x: torch.Tensor, title: str) -> None:
    """Draw an encoded ``(C, F, N)`` item: 3 channels as RGB (each scaled to [0, 1]), 1 as grey."""
    x = x.float()
    if x.shape[0] == 3:
        lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
        img = ((x - lo) / (hi - lo).clamp_min(1e-12)).permute(1, 2, 0).numpy()
        ax.imshow(img, origin="lower", aspect="auto", interpolation="nearest")
    else:
        ax.imshow(x[0].numpy(), origin="lower", aspect="auto", cmap="gray", interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def render(mag: torch.Tensor, out_path: str, title: str, dpi: int = 90) -> list[tuple[str, float, float, float]]:
    """Plot every DEMO_SET representation of ``mag (1, F, N)`` and its decode error; return the table rows.

    Rows: (label, mean |dB error| inside 80 dB, max inside, encode+decode seconds).
    """
    import time

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    ncols = 5
    nrows = 2 * math.ceil(len(DEMO_SET) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (label, name, kwargs) in enumerate(DEMO_SET):
        rep = build(name, **kwargs)
        t0 = time.perf_counter()
        x, ctx = rep.encode(mag)
        dec = rep.decode(x, ctx)
        seconds = time.perf_counter() - t0
        err, inside = db_error(mag, dec)
        mean, worst = float(err[inside].mean()), float(err[inside].max())
        rows.append((label, mean, worst, seconds))
        r, c = 2 * (i // ncols), i % ncols
        axes[r, c].axis("on")
        _show(axes[r, c], x[0], f"{label} ({rep.channels} ch)")
        ax = axes[r + 1, c]
        ax.axis("on")
        shown = torch.where(inside, err, torch.zeros_like(err))[0].numpy()
        im = ax.imshow(shown, origin="lower", aspect="auto", cmap="magma", vmin=0,
                       vmax=max(1.0, float(np.quantile(shown, 0.999))), interpolation="nearest")
        ax.set_title(f"|dB err| mean {mean:.3g} max {worst:.3g}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys
    import time
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m dereverb.representations",
        description="Render one utterance in every representation with its decode (round-trip) error.")
    parser.add_argument("--plot", required=True, type=Path, help="output PNG path")
    parser.add_argument("--audio", type=Path, help="WAV/FLAC file (default: a synthetic reverberant chirp)")
    parser.add_argument("--rir", type=Path, help="optional 16 kHz impulse response (WAV/FLAC, first channel) to "
                                                 "convolve the audio with")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of audio to use (default 4)")
    parser.add_argument("--dpi", type=int, default=90, help="resolution of the PNG (default 90)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    args = parser.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    if args.plot.suffix.lower() != ".png":
        return fail(f"--plot {args.plot} must end in .png")
    if args.plot.exists() and not args.force:
        return fail(f"--plot {args.plot} exists; pass --force to overwrite it")
    if not args.plot.parent.is_dir():
        return fail(f"--plot folder {args.plot.parent} does not exist; create it first")
    if not 20 <= args.dpi <= 600:
        return fail(f"--dpi must be in [20, 600], got {args.dpi}")
    if not args.seconds > 0:
        return fail(f"--seconds must be > 0, got {args.seconds}")
    t0 = time.perf_counter()
    import soundfile as sf

    def read(path: Path, what: str) -> np.ndarray | str:
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises several types; one clear line either way
            return f"cannot read {what} {path}: {exc}"
        if sr != 16000:
            return f"{what} {path} is {sr} Hz; this demo needs 16 kHz audio (resample it first)"
        if data.size == 0 or not np.isfinite(data).all():
            return f"{what} {path} is empty or has non-finite samples"
        return data

    if args.audio is None:
        wave, label = demo_signal(seconds=min(args.seconds, 3.0)), "synthetic reverberant harmonic chirp"
    else:
        data = read(args.audio, "--audio")
        if isinstance(data, str):
            return fail(data)
        wave = data.mean(axis=1)[: int(args.seconds * 16000)]
        label = f"{args.audio.name} (first {wave.size / 16000:.2f} s)"
    if args.rir is not None:
        rir = read(args.rir, "--rir")
        if isinstance(rir, str):
            return fail(rir)
        from scipy.signal import fftconvolve

        wave = fftconvolve(wave, rir[:, 0])[: wave.size]
        wave = 0.5 * wave / max(float(np.abs(wave).max()), 1e-9)
        label += f" * {args.rir.name}"
    mag = _spectrogram(np.ascontiguousarray(wave, dtype=np.float32))
    rows = render(mag, str(args.plot), f"{label}: encoding (upper) and |dB error| of decode(encode(S)) inside "
                                        "80 dB of the max (lower; colour scale at least 0-1 dB)", dpi=args.dpi)
    print(f"{'representation':<28} {'mean dB err':>12} {'max dB err':>12} {'enc+dec s':>10}")
    for name, mean, worst, seconds in rows:
        print(f"{name:<28} {mean:>12.4g} {worst:>12.4g} {seconds:>10.3f}")
    print(f"wrote {args.plot} ({mag.shape[-1]} frames) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
