"""``python -m dereverb.export --ckpt X.ckpt -o model.onnx``: the network for deployment, or
``--pretrained -o FOLDER``: a model folder (``config.json`` + float16 ``model.safetensors``,
:mod:`dereverb.models.checkpoints`) that ``load_model``, ``--ckpt`` and huggingface_hub read.

ONNX (the default) exports the checkpoint's magnitude path (representation encoding, network,
decoding; dynamic batch, frequency and time axes) and prints what stays outside: the STFT in
front and phase recovery behind (docs/predict.md, "Deployment with ONNX"). As
``dereverb/pretrained/librispeech_unet`` a model folder is what ``--ckpt pretrained`` loads.
Several ``--ckpt`` with ``--pretrained`` write the mean of their weights (fine-tunes of one model).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from dereverb.cli_errors import EXIT_OK, EXIT_USAGE, parse_one_line, report
from dereverb.inference.checkpoint import load_model
from dereverb.inference.onnx_export import ExportError, export_onnx
from dereverb.models.checkpoints import MAX_BYTES, CheckpointError, write_model_folder

FILE_SUFFIXES = (".onnx", ".pt", ".pth", ".ckpt", ".safetensors")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m dereverb.export",
        description="Export a checkpoint's network (magnitude in, magnitude out) to ONNX, or with "
        "--pretrained write it as a model folder (config.json + float16 model.safetensors) for load_model / --ckpt.",
        epilog="Examples: python -m dereverb.export --ckpt last.ckpt -o model.onnx; "
        "python -m dereverb.export --ckpt last.ckpt --pretrained -o dereverb/pretrained/librispeech_unet; "
        "python -m dereverb.export --ckpt a.ckpt b.ckpt --pretrained -o mean (the mean of their weights)",
        exit_on_error=False,
        default_env=False,
    )
    p.add_argument("--ckpt", required=True, nargs="+", help="checkpoint written by python -m dereverb.train, a model "
                   "folder, or `pretrained` (the model shipped with the package); several, with --pretrained: "
                   "the mean of their weights (fine-tunes of one model)")
    p.add_argument("-o", "--output", required=True, help="*.onnx, or with --pretrained the model folder to write")
    p.add_argument("--pretrained", action="store_true", help="write a model folder (config.json + float16 "
                   f"model.safetensors, at most {MAX_BYTES // 2**20} MiB) instead of ONNX")
    p.add_argument("--debug", action="store_true", help="print tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_one_line(build_parser(), argv)
    out = Path(args.output)
    if args.pretrained and out.suffix in FILE_SUFFIXES:
        report(f"-o {out}: --pretrained writes a model folder (config.json + model.safetensors); "
               "name a folder, e.g. -o dereverb/pretrained/librispeech_unet")
        return EXIT_USAGE
    if not args.pretrained and len(args.ckpt) > 1:
        report(f"--ckpt: {len(args.ckpt)} models: a mean of weights is written as a model folder; add --pretrained "
               "(and export that folder to ONNX after)")
        return EXIT_USAGE
    if not args.pretrained and out.suffix != ".onnx":
        report(f"-o {out}: name the output file *.onnx (or pass --pretrained for a model folder)")
        return EXIT_USAGE
    try:
        if args.pretrained:
            write_model_folder(args.ckpt, out)
        else:
            info = export_onnx(load_model(args.ckpt[0]), out)
    except (CheckpointError, ExportError, OSError) as exc:
        report(f"{args.ckpt[0]}: {exc}" if isinstance(exc, ExportError) else str(exc), exc, debug=args.debug)
        return EXIT_USAGE
    if args.pretrained:
        size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
        print(f"wrote {out} ({size:.2f} MiB, float16 weights); load it with load_model({str(out)!r}) or --ckpt {out}")
        return EXIT_OK
    print(f"wrote {info['path']}")
    print(f"  input  {info['input']}: |STFT| of float audio in [-1, 1] at {info['sample_rate']} Hz, "
          f"n_fft {info['n_fft']}, hop {info['hop_length']}, Hann window, Nyquist bin dropped")
    print(f"  output {info['output']}: the dereverberated magnitude; add a phase "
          f"(the checkpoint uses {info['phase']}) and invert the STFT")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
