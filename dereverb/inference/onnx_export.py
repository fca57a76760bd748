"""Export a :class:`Dereverber`'s magnitude path to ONNX for deployment without PyTorch.

What is exported: reverberant magnitude ``(B, F, N)`` -> estimated clean magnitude ``(B, F, N)``,
i.e. the input representation's encoding, the network, the residual skip, the output activation
and the decoding back to a magnitude, with dynamic batch, frequency and time axes. What stays
outside (cheap and standard in any runtime): the STFT (512-point Hann, hop 128 at 16 kHz by
default, Nyquist bin dropped) and phase recovery (the reverberant phase, or Griffin-Lim).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dereverb.models.dereverber import Dereverber

INPUT_NAME, OUTPUT_NAME = "magnitude", "estimate"
# Axis limits for the exporter's symbolic shapes (not limits of the ONNX model's use in practice).
MAX_BATCH, MAX_BINS, MAX_FRAMES = 4096, 8192, 10_000_000


class ExportError(Exception):
    """The model cannot be exported; the message says why and what to do."""


class MagnitudePath(nn.Module):
    """``Dereverber`` as one tensor function: magnitude ``(B, F, N)`` -> magnitude ``(B, F, N)``."""

    def __init__(self, model: Dereverber) -> None:
        super().__init__()
        self.model = model

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        y, ctx = self.model(magnitude)
        return self.model.decode(y, ctx)


def export_onnx(model: Dereverber, path: str | os.PathLike, *, frames: int = 64) -> dict[str, Any]:
    """Write ``model``'s magnitude path to ``path`` (ONNX, float32, dynamic batch/frequency/time)
    and return a summary (input/output names and shapes, opset, the STFT the model expects).

    ``frames`` is the length of the example used for tracing. Raises :class:`ExportError` when the
    ONNX exporter is missing or the model's representation cannot be expressed in ONNX.
    """
    try:
        import onnxscript  # noqa: F401 - torch's exporter needs it; fail here with a clear message
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx and onnxscript packages: pip install 'dereverb[export]'") from exc
    from torch.export import Dim

    if model.filter_taps:
        raise ExportError("a multi-frame filter model (filter_taps > 0) works on the complex spectrum; "
                          "ONNX export covers the magnitude path only (filter_taps: 0)")
    model = model.eval().float().cpu()
    wrapped = MagnitudePath(model).eval()
    bins = model.stft_cfg.n_fft // 2
    example = torch.rand(1, bins, frames) + 1e-3
    dims = {0: Dim("batch", min=1, max=MAX_BATCH), 1: Dim("bins", min=1, max=MAX_BINS), 2: Dim("frames", min=1, max=MAX_FRAMES)}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # the exporter narrates each pass on stdout
            program = torch.onnx.export(
                wrapped,
                (example,),
                dynamo=True,
                dynamic_shapes={"magnitude": dims},
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
            )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"the {type(model.input_repr).__name__} representation (target {model.target}) cannot be exported to ONNX "
            f"({reason}); use a checkpoint trained with a scalar representation such as log_magnitude"
        ) from exc
    program.save(str(out))
    return {
        "path": str(out),
        "input": f"{INPUT_NAME}: float32 (batch, {bins} bins, frames)",
        "output": f"{OUTPUT_NAME}: float32 (batch, {bins} bins, frames)",
        "sample_rate": model.stft_cfg.sample_rate,
        "n_fft": model.stft_cfg.n_fft,
        "hop_length": model.stft_cfg.hop_length,
        "phase": model.phase,
    }
