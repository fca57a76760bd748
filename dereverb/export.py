"""``python -m dereverb.export --ckpt X.ckpt -o model.onnx``: the network for deployment.

Exports the checkpoint's magnitude path (representation encoding, network, decoding; dynamic
batch, frequency and time axes) to ONNX, and prints what stays outside: the STFT in front and
phase recovery behind (docs/predict.md, "Deployment with ONNX").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from dereverb.cli_errors import EXIT_OK, EXIT_USAGE, parse_one_line, report
from dereverb.inference.checkpoint import CheckpointError, load_model
from dereverb.inference.onnx_export import ExportError, export_onnx


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m dereverb.export",
        description="Export a checkpoint's network (magnitude in, magnitude out) to ONNX.",
        exit_on_error=False,
        default_env=False,
    )
    p.add_argument("--ckpt", required=True, help="checkpoint written by python -m dereverb.train")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--debug", action="store_true", help="print tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_one_line(build_parser(), argv)
    if not str(args.output).endswith(".onnx"):
        report(f"-o {args.output}: name the output file *.onnx")
        return EXIT_USAGE
    try:
        info = export_onnx(load_model(args.ckpt), args.output)
    except (CheckpointError, ExportError, OSError) as exc:
        report(f"{args.ckpt}: {exc}" if isinstance(exc, ExportError) else str(exc), exc, debug=args.debug)
        return EXIT_USAGE
    print(f"wrote {info['path']}")
    print(f"  input  {info['input']}: |STFT| of float audio in [-1, 1] at {info['sample_rate']} Hz, "
          f"n_fft {info['n_fft']}, hop {info['hop_length']}, Hann window, Nyquist bin dropped")
    print(f"  output {info['output']}: the dereverberated magnitude; add a phase "
          f"(the checkpoint uses {info['phase']}) and invert the STFT")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
