"""Training: the LightningModule around the :class:`~dereverb.models.dereverber.Dereverber`
(``module``), its callbacks (``callbacks``), atomic checkpoint writing (``checkpoint_io``),
configuration checks (``checks``), the LightningCLI (``cli``), TensorBoard media (``media``) and
the run behind ``python -m dereverb.train`` (``run``)."""
