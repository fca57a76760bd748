"""Inference without Lightning: load a checkpoint into a :class:`Dereverber`, dereverberate
arrays and files. Nothing under this package imports Lightning, TensorBoard or the training code.
"""

from dereverb.inference.checkpoint import CheckpointError, load_model, read_checkpoint
from dereverb.inference.enhance import dereverberate

__all__ = ["CheckpointError", "dereverberate", "load_model", "read_checkpoint"]
