"""Spectrogram representations the network sees (the project's subject): one registry,
``build(name, **kwargs)`` and ``names()``; every representation encodes a magnitude
``(B, F, N)`` to ``(B, C, F, N)`` and decodes it back. ``learned_power`` and ``learned_pcen``
(:mod:`~dereverb.representations.learned`) are ``nn.Module`` s whose parameters train with the
network.

One module per family; importing it registers its representations (``@register`` in
:mod:`~dereverb.representations.base`), so every family module is imported here.
"""

# isort: off
# Import order is registration order, which is the order ``names()`` lists.
from dereverb.representations.base import Representation, build, lookup, names
from dereverb.representations.scalar import Grayscale, LogMagnitude, Magnitude, PowerLaw
from dereverb.representations.colormap import Colormap
from dereverb.representations.image_codec import IMAGE_FORMATS, ImageCodec
from dereverb.representations.pcen import Pcen
from dereverb.representations.stacked import Stacked
from dereverb.representations.learned import LearnedPcen, LearnedPower, LearnedRepresentation, frozen
from dereverb.representations.plot import DEMO_SET, db_error, main
# isort: on

__all__ = [
    "DEMO_SET", "IMAGE_FORMATS", "Colormap", "Grayscale", "ImageCodec", "LearnedPcen",
    "LearnedPower", "LearnedRepresentation", "LogMagnitude", "Magnitude", "Pcen", "PowerLaw", "Representation",
    "Stacked", "build", "db_error", "frozen", "lookup", "main", "names",
]
