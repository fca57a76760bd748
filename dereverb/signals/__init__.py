"""Pure functions on waveforms, spectra and files: audio I/O, STFT, phase recovery, chunking.
No ``torch.nn``, no Lightning."""
