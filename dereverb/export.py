"""``python -m dereverb.export --ckpt X.ckpt -o model.onnx``: the network for deployment, or
``--pretrained -o model.pt``: a small bundle :func:`dereverb.inference.load_model` loads.

ONNX (the default) exports the checkpoint's magnitude path (representation encoding, network,
decoding; dynamic batch, frequency and time axes) and prints what stays outside: the STFT in
front and phase recovery behind (docs/predict.md, "Deployment with ONNX").

``--pretrained`` writes the pretrained bundle (:mod:`dereverb.inference.pretrained`): plain
hyperparameters and float16 weights, at most 10 MiB; placed at
``dereverb/pretrained/librispeech_unet.pt`` it is the model ``--ckpt pretrained`` means
(docs/predict.md, "The pretrained model").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from dereverb.cli_errors import EXIT_OK, EXIT_USAGE, parse_one_line, report
from dereverb.inference.checkpoint import CheckpointError, load_model, read_checkpoint
from dereverb.inference.onnx_export import ExportError, export_onnx
from dereverb.inference.pretrained import write_pretrained


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m dereverb.export",
        description="Export a checkpoint's network (magnitude in, magnitude out) to ONNX, or with "
        "--pretrained write it as a pretrained bundle (float16 weights) for load_model / --ckpt.",
        epilog="Examples: python -m dereverb.export --ckpt last.ckpt -o model.onnx; "
        "python -m dereverb.export --ckpt last.ckpt --pretrained -o dereverb/pretrained/librispeech_unet.pt",
        exit_on_error=False,
        default_env=False,
    )
    p.add_argument(
        "--ckpt",
        required=True,
        help="checkpoint written by python -m dereverb.train, a bundle, or `pretrained` (the model shipped with the package)",
    )
    p.add_argument("-o", "--output", required=True, help="the file to write: *.onnx, or *.pt with --pretrained")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="write a pretrained bundle (hyperparameters + float16 weights, at most 10 MiB) instead of ONNX",
    )
    p.add_argument("--debug", action="store_true", help="print tracebacks for errors")
    return p


def _provenance(ckpt: str) -> dict:
    """The bundle's ``meta``: the source's file name, epoch and step (a bundle's own ``meta``
    when re-bundling one)."""
    raw = read_checkpoint(ckpt)
    if isinstance(raw.get("meta"), dict) and raw["meta"]:
        return dict(raw["meta"])
    meta: dict = {"source": Path(str(ckpt)).name}
    meta.update({k: raw[k] for k in ("epoch", "global_step") if isinstance(raw.get(k), int)})
    return meta


def _export_pretrained(args) -> int:
    if not str(args.output).endswith(".pt"):
        report(f"-o {args.output}: name the bundle *.pt (e.g. dereverb/pretrained/librispeech_unet.pt)")
        return EXIT_USAGE
    try:
        path = write_pretrained(args.ckpt, args.output, meta=_provenance(args.ckpt))
    except (CheckpointError, OSError) as exc:
        report(str(exc), exc, debug=args.debug)
        return EXIT_USAGE
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB, float16 weights)")
    print(f"  load it with load_model({str(path)!r}) or --ckpt {path}; "
          "as dereverb/pretrained/librispeech_unet.pt it is the model --ckpt pretrained loads")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_one_line(build_parser(), argv)
    if args.pretrained:
        return _export_pretrained(args)
    if not str(args.output).endswith(".onnx"):
        report(f"-o {args.output}: name the output file *.onnx (or pass --pretrained for a *.pt bundle)")
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
