"""The model folder as a ``huggingface_hub`` model (``pip install huggingface_hub``, optional):
``DereverberHub.from_pretrained(folder)`` builds the :class:`Dereverber` that ``load_model(folder)``
builds, ``save_pretrained(folder)`` writes a folder ``load_model`` reads. ``config.json``'s keys
are this class's arguments, as ``PyTorchModelHubMixin`` expects.
"""

from __future__ import annotations

import inspect

from huggingface_hub import PyTorchModelHubMixin

from dereverb.models.checkpoints import CONFIG_FILE, read_config
from dereverb.models.dereverber import Dereverber


class DereverberHub(Dereverber, PyTorchModelHubMixin, library_name="dereverb", tags=["audio", "dereverberation"]):
    """A :class:`Dereverber` built from a model folder's ``config.json`` fields."""

    def __init__(self, hparams: dict, format_version: int | None = None, meta: dict | None = None) -> None:
        config = {"format_version": format_version, "hparams": hparams}
        built = Dereverber.from_hparams(read_config(config, CONFIG_FILE))
        args = list(inspect.signature(Dereverber.__init__).parameters)[1:]
        super().__init__(**{name: getattr(built, name) for name in args})
        self.meta = meta or {}
