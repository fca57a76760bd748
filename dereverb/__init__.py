"""dereverb: U-Net speech dereverberation and the spectrogram-representation study."""

__version__ = "0.1.0"
