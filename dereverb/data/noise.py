"""Background noise for training pairs: stationary coloured noise mixed at a chosen SNR.

Real recordings are rarely silent between words (ventilation, computers, traffic); a model trained
only on noise-free pairs meets that noise for the first time in users' files. The target stays the
clean dry speech, so the model learns to remove the noise with the reverberation.
"""

from __future__ import annotations

import numpy as np


def coloured_noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    """Stationary Gaussian noise with power spectral density ``~ 1 / f**exponent`` (0 white,
    1 pink, 2 brown), scaled to unit RMS. (length,) float32"""
    spec = np.fft.rfft(rng.standard_normal(length))
    f = np.arange(spec.shape[-1], dtype=np.float64)
    f[0] = f[1] if len(f) > 1 else 1.0  # no infinite DC
    noise = np.fft.irfft(spec * f ** (-exponent / 2.0), n=length)
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def noise_scale(signal_power: np.ndarray | float, snr_db: np.ndarray | float) -> np.ndarray | float:
    """Amplitude of unit-RMS noise that sits ``snr_db`` below ``signal_power`` (0 for ``inf``)."""
    return np.sqrt(signal_power) * 10.0 ** (-np.asarray(snr_db, dtype=np.float64) / 20.0)
