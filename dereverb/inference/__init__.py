"""Inference without Lightning: load a checkpoint (or ``"pretrained"``, the model shipped with
the package) into a :class:`Dereverber`, dereverberate arrays and files. Nothing under this
package imports Lightning, TensorBoard or the training code.
"""

from dereverb.inference.checkpoint import CheckpointError, load_model, read_checkpoint
from dereverb.inference.enhance import dereverberate
from dereverb.inference.pretrained import PRETRAINED, PRETRAINED_FILE, write_pretrained

__all__ = [
    "PRETRAINED",
    "PRETRAINED_FILE",
    "CheckpointError",
    "dereverberate",
    "load_model",
    "read_checkpoint",
    "write_pretrained",
]
