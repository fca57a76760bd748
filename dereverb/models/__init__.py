"""Network architectures: pure ``nn.Module``s (no STFT or losses inside), chosen by class path.

A network takes ``in_channels``, ``out_channels`` and its own arguments, maps
``(B, in_channels, F, N) -> (B, out_channels, F, N)`` and, if it pools, states its
``downsampling_factor``. :mod:`dereverb.models.net_spec` builds one from
``{class_path, init_args}``; :class:`~dereverb.models.dereverber.Dereverber` wraps it in the
spectral path.
"""

from dereverb.models.dilated_unet import DilatedUNet
from dereverb.models.net_spec import DEFAULT_NET, NetSpecError, build_net, net_spec
from dereverb.models.unet import UNet, num_parameters

__all__ = ["DEFAULT_NET", "DilatedUNet", "NetSpecError", "UNet", "build_net", "net_spec", "num_parameters"]
