"""Network architectures (pure ``nn.Module``s; no STFT or losses inside)."""

from dereverb.models.unet import UNet, num_parameters

__all__ = ["UNet", "num_parameters"]
