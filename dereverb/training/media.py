"""Spectrogram figures: the validation picture for TensorBoard (one per logged example) and the
demo page's before/after row, on one shared dB scale."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure


def to_db(mag: np.ndarray) -> np.ndarray:
    """Magnitude ``(F, N)`` -> ``20 log10(mag + 1e-8)`` dB."""
    return 20.0 * np.log10(np.abs(mag) + 1e-8)


def spectrogram_row(panels: dict[str, np.ndarray], *, sample_rate: int, hop_length: int,
                    dynamic_range: float = 80.0, extra: int = 0) -> tuple[Figure, np.ndarray]:
    """Magnitudes ``{title: (F, N)}`` as dB images side by side on one colour scale (the loudest
    bin of any, down ``dynamic_range`` dB) with one colour bar and time (s) / frequency (kHz)
    axes, plus ``extra`` empty axes on the right for the caller. Returns the figure (not
    registered with pyplot: nothing global to close) and its axes."""
    dbs = {title: to_db(mag) for title, mag in panels.items()}
    vmax = max(float(db.max()) for db in dbs.values())
    n_frames = next(iter(dbs.values())).shape[-1]
    extent = (0.0, n_frames * hop_length / sample_rate, 0.0, sample_rate / 2000)
    ncols = len(dbs) + extra
    fig = Figure(figsize=(3.6 * ncols + 0.8, 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, ncols, sharex=True, sharey=True))
    for ax, (title, db) in zip(axes, dbs.items(), strict=False):
        image = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                          vmin=vmax - dynamic_range, vmax=vmax, interpolation="nearest")
        ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    fig.colorbar(image, ax=axes[:len(dbs)], label="level (dB)", fraction=0.05, pad=0.01)
    return fig, axes


def validation_figure(reverb: np.ndarray, output: np.ndarray, clean: np.ndarray, *, sample_rate: int,
                      hop_length: int, t60: float = math.nan, pesq_gain: float = math.nan,
                      stoi_gain: float = math.nan, net_input: np.ndarray | None = None,
                      input_label: str = "network input", dynamic_range: float = 80.0) -> Figure:
    """Reverberant, output and clean log spectrograms side by side on one dB scale.

    ``reverb``, ``output``, ``clean``: magnitudes ``(F, N)`` (Nyquist bin dropped, so the top
    row is just below ``sample_rate / 2``). The colour scale runs from the loudest bin of the
    three down ``dynamic_range`` dB, with one colour bar. ``net_input``: the network's input
    image ``(3, F, N)`` in [0, 1] (an RGB representation), drawn as a fourth panel as the
    network sees it. The title holds the example's T60 and its PESQ-WB / STOI gain (output
    minus input). Returns a figure not registered with pyplot (nothing global to close).
    """
    fig, axes = spectrogram_row({"reverberant": reverb, "output": output, "clean": clean}, sample_rate=sample_rate,
                                hop_length=hop_length, dynamic_range=dynamic_range, extra=int(net_input is not None))
    if net_input is not None:
        rgb = np.clip(np.moveaxis(np.asarray(net_input), 0, -1), 0.0, 1.0)
        axes[-1].imshow(rgb, origin="lower", aspect="auto", interpolation="nearest",
                        extent=axes[0].get_images()[0].get_extent())  # the spectrograms' time / kHz axes
        axes[-1].set_title(input_label)
    fig.suptitle(f"T60 {t60:.2f} s   PESQ-WB {pesq_gain:+.2f}   STOI {stoi_gain:+.3f}   (gain: output - input)")
    return fig
