"""Spectrogram representations the network sees (the project's subject): one registry,
``build(name, **kwargs)`` and ``names()``; every representation encodes a magnitude
``(B, F, N)`` to ``(B, C, F, N)`` and decodes it back."""

from dereverb.representations.core import (
    ACTIVATIONS,
    DEMO_SET,
    IMAGE_FORMATS,
    Colormap,
    Grayscale,
    ImageCodec,
    LogMagnitude,
    Magnitude,
    Pcen,
    PowerLaw,
    Representation,
    Stacked,
    build,
    db_error,
    main,
    names,
)

__all__ = [
    "ACTIVATIONS", "DEMO_SET", "IMAGE_FORMATS", "Colormap", "Grayscale", "ImageCodec", "LogMagnitude",
    "Magnitude", "Pcen", "PowerLaw", "Representation", "Stacked", "build", "db_error", "main", "names",
]
