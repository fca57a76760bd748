"""Training: the LightningModule around the :class:`~dereverb.models.dereverber.Dereverber`,
its callbacks and TensorBoard media, and the run loop behind ``python -m dereverb.train``."""
