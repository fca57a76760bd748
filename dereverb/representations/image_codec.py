"""The ``image_codec`` representation: a ``grayscale`` or ``colormap`` image saved as a picture.

What a spectrogram goes through when a pipeline stores it as an image file: uint8
rounding, an optional resize, an optional PNG/JPEG encode + decode (Pillow). Decoding is the
base's decode, so the codec's loss shows up as decode error.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dereverb.representations.base import Representation, register
from dereverb.representations.colormap import Colormap
from dereverb.representations.scalar import Grayscale

IMAGE_FORMATS: tuple[str | None, ...] = (None, "png", "jpeg")
_BASES: dict[str, type[Representation]] = {"grayscale": Grayscale, "colormap": Colormap}


@register
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
    BASES = tuple(_BASES)

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
        self.base_rep = _BASES[base](**base_kwargs)
        self.channels = self.base_rep.channels

    @classmethod
    def valid_kwargs(cls, kwargs):
        own = ["base", "format", "quality", "resize", "subsampling"]
        base = kwargs.get("base", "grayscale")
        return own + (_BASES[base].valid_kwargs({}) if base in cls.BASES else [])

    @classmethod
    def kwargs_note(cls, kwargs):
        return f" with base={kwargs.get('base', 'grayscale')!r}"

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
