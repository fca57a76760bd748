"""Inference without Lightning: load a checkpoint, a model folder or ``"pretrained"`` (the model
shipped with the package) into a :class:`Dereverber`, dereverberate arrays and files. Nothing
under this package imports Lightning, TensorBoard or the training code.
"""

from dereverb.inference.checkpoint import load_model
from dereverb.inference.enhance import dereverberate
from dereverb.models.checkpoints import (
    PRETRAINED,
    PRETRAINED_DIR,
    CheckpointError,
    write_model_folder,
)

__all__ = ["PRETRAINED", "PRETRAINED_DIR", "CheckpointError", "dereverberate", "load_model", "write_model_folder"]
