"""``python -m dereverb.representations --plot out.png [--audio file.flac]``: draw one
utterance in every representation (``DEMO_SET``) with its decode (round-trip) error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dereverb.representations.base import build
from dereverb.signals import dsp


def db_error(mag: torch.Tensor, decoded: torch.Tensor, dynamic_range: float = 80.0,
             eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """|dB error| ``(B, F, N)`` and the mask of bins inside ``[max - dynamic_range, max]`` dB per item."""
    ref_db = 20 * torch.log10(mag + eps)
    err = (20 * torch.log10(decoded.clamp_min(0) + eps) - ref_db).abs()
    inside = ref_db >= ref_db.amax(dim=(1, 2), keepdim=True) - dynamic_range
    return err, inside


DEMO_SET: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("magnitude", "magnitude", {}),
    ("log_magnitude", "log_magnitude", {}),
    ("grayscale", "grayscale", {}),
    ("grayscale 8-bit", "grayscale", {"levels": 256}),
    ("colormap turbo", "colormap", {"cmap": "turbo"}),
    ("colormap viridis", "colormap", {"cmap": "viridis"}),
    ("colormap jet", "colormap", {"cmap": "jet"}),
    ("colormap magma", "colormap", {"cmap": "magma"}),
    ("colormap gray (RGB)", "colormap", {"cmap": "gray"}),
    ("colormap turbo continuous", "colormap", {"cmap": "turbo", "levels": None}),
    ("image gray PNG", "image_codec", {"format": "png"}),
    ("image gray JPEG q75", "image_codec", {"format": "jpeg", "quality": 75}),
    ("image turbo PNG", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "png"}),
    ("image turbo JPEG q75", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg"}),
    ("image turbo JPEG q95", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg", "quality": 95}),
    ("image gray 224x224 PNG", "image_codec", {"format": "png", "resize": (224, 224)}),
    ("image turbo JPEG q95 4:4:4", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg",
                                                   "quality": 95, "subsampling": "4:4:4"}),
    ("image turbo 224x224 PNG", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "png",
                                                "resize": (224, 224)}),
    ("pcen", "pcen", {}),
    ("stacked db/pcen/power", "stacked", {}),
)


def demo_signal(seconds: float = 3.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A harmonic chirp (F0 120 -> 240 Hz, 15 harmonics, syllable gating) in an exponential tail.

    The "room" is white noise decaying 60 dB in 0.6 s convolved with the dry chirp. ``(L,)``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 * 2 ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    dry = sum(np.sin(k * phase) / k for k in range(1, 16)) * (np.sin(2 * np.pi * 2.5 * t) > 0.2)
    n = int(0.6 * sr)
    rir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n) * 0.2
    rir[0] = 1.0
    wet = np.convolve(dry, rir)[: t.size]
    return (0.5 * wet / np.abs(wet).max()).astype(np.float32)


def _spectrogram(wave: np.ndarray) -> torch.Tensor:
    """``(L,)`` -> magnitude ``(1, 256, N)`` with the project's STFT (512/128 Hann)."""
    return dsp.magnitude(dsp.stft(torch.from_numpy(wave)[None], dsp.StftConfig()))


def _show(ax, x: torch.Tensor, title: str) -> None:
    """Draw an encoded ``(C, F, N)`` item: 3 channels as RGB (each scaled to [0, 1]), 1 as grey."""
    x = x.float()
    if x.shape[0] == 3:
        lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
        img = ((x - lo) / (hi - lo).clamp_min(1e-12)).permute(1, 2, 0).numpy()
        ax.imshow(img, origin="lower", aspect="auto", interpolation="nearest")
    else:
        ax.imshow(x[0].numpy(), origin="lower", aspect="auto", cmap="gray", interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set(xticks=[], yticks=[])


def render(mag: torch.Tensor, out_path: str, title: str, dpi: int = 90) -> list[tuple[str, float, float, float]]:
    """Plot every DEMO_SET representation of ``mag (1, F, N)`` and its decode error; return the table rows.

    Rows: (label, mean |dB error| inside 80 dB, max inside, encode+decode seconds).
    """
    import time

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    ncols = 5
    nrows = 2 * math.ceil(len(DEMO_SET) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (label, name, kwargs) in enumerate(DEMO_SET):
        rep = build(name, **kwargs)
        t0 = time.perf_counter()
        x, ctx = rep.encode(mag)
        dec = rep.decode(x, ctx)
        seconds = time.perf_counter() - t0
        err, inside = db_error(mag, dec)
        mean, worst = float(err[inside].mean()), float(err[inside].max())
        rows.append((label, mean, worst, seconds))
        r, c = 2 * (i // ncols), i % ncols
        axes[r, c].axis("on")
        _show(axes[r, c], x[0], f"{label} ({rep.channels} ch)")
        ax = axes[r + 1, c]
        ax.axis("on")
        shown = torch.where(inside, err, torch.zeros_like(err))[0].numpy()
        im = ax.imshow(shown, origin="lower", aspect="auto", cmap="magma", vmin=0,
                       vmax=max(1.0, float(np.quantile(shown, 0.999))), interpolation="nearest")
        ax.set_title(f"|dB err| mean {mean:.3g} max {worst:.3g}", fontsize=7)
        ax.set(xticks=[], yticks=[])
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return rows


def _read_16k(path, what: str) -> np.ndarray:
    """``(C, L)`` float32 samples of a 16 kHz file; ``ValueError`` with the one-line reason."""
    from dereverb.signals.audio import AudioError, read_audio

    try:
        data, sr = read_audio(path)
    except AudioError as exc:
        raise ValueError(f"cannot read {what} {exc}") from exc
    if sr != 16000:
        raise ValueError(f"{what} {path} is {sr} Hz; this demo needs 16 kHz audio (resample it first)")
    return data


def _signal(args) -> tuple[np.ndarray, str]:
    """The checked arguments' signal ``(L,)`` and its label; ``ValueError`` with the one-line reason."""
    for bad, message in (
        (args.plot.suffix.lower() != ".png", f"--plot {args.plot} must end in .png"),
        (args.plot.exists() and not args.force, f"--plot {args.plot} exists; pass --force to overwrite it"),
        (not args.plot.parent.is_dir(), f"--plot folder {args.plot.parent} does not exist; create it first"),
        (not 20 <= args.dpi <= 600, f"--dpi must be in [20, 600], got {args.dpi}"),
        (not args.seconds > 0, f"--seconds must be > 0, got {args.seconds}"),
    ):
        if bad:
            raise ValueError(message)
    if args.audio is None:
        wave, label = demo_signal(seconds=min(args.seconds, 3.0)), "synthetic reverberant harmonic chirp"
    else:
        wave = _read_16k(args.audio, "--audio").mean(axis=0)[: int(args.seconds * 16000)]
        label = f"{args.audio.name} (first {wave.size / 16000:.2f} s)"
    if args.rir is not None:
        from scipy.signal import fftconvolve

        wave = fftconvolve(wave, _read_16k(args.rir, "--rir")[0])[: wave.size]
        wave = 0.5 * wave / max(float(np.abs(wave).max()), 1e-9)
        label += f" * {args.rir.name}"
    return np.ascontiguousarray(wave, dtype=np.float32), label


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys
    import time
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m dereverb.representations",
        description="Render one utterance in every representation with its decode (round-trip) error.")
    parser.add_argument("--plot", required=True, type=Path, help="output PNG path")
    parser.add_argument("--audio", type=Path, help="WAV/FLAC file (default: a synthetic reverberant chirp)")
    parser.add_argument("--rir", type=Path, help="optional 16 kHz impulse response (WAV/FLAC, first channel) to "
                                                 "convolve the audio with")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of audio to use (default 4)")
    parser.add_argument("--dpi", type=int, default=90, help="resolution of the PNG (default 90)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        wave, label = _signal(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mag = _spectrogram(wave)
    rows = render(mag, str(args.plot), f"{label}: encoding (upper) and |dB error| of decode(encode(S)) inside "
                                        "80 dB of the max (lower; colour scale at least 0-1 dB)", dpi=args.dpi)
    print(f"{'representation':<28} {'mean dB err':>12} {'max dB err':>12} {'enc+dec s':>10}")
    for name, mean, worst, seconds in rows:
        print(f"{name:<28} {mean:>12.4g} {worst:>12.4g} {seconds:>10.3f}")
    print(f"wrote {args.plot} ({mag.shape[-1]} frames) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
