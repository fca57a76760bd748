"""Inference speed: real-time factor of ``dereverberate`` on CPU (and GPU when present).

    python benchmarks/predict.py [--config configs/quickstart.yaml] [--seconds 60] [--iters 32]

Builds an untrained model of the config's size (speed does not depend on the weights), runs
:func:`dereverb.inference.dereverberate` on synthetic speech, and prints the real-time factor
(processing time / audio duration) for each phase method, batch size and option
(``channels_last``, ``torch.compile``). RTF < 1 is faster than real time. Two columns: wall
clock, and process CPU time divided by the thread count (what an idle machine would show).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from dereverb.data.speech import SyntheticSpeech
from dereverb.inference import dereverberate
from dereverb.models.dereverber import Dereverber

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def rtf(model, wave, sr, **kw) -> tuple[float, float]:
    """(wall-clock RTF, CPU-time RTF per thread): the second is what an otherwise idle machine
    with that many cores would show, and is robust to other jobs sharing the cores."""
    dereverberate(wave[: sr * 2], sr, model, **kw)  # warm-up (allocator, compile)
    t, c = time.perf_counter(), time.process_time()
    dereverberate(wave, sr, model, **kw)
    seconds = wave.shape[-1] / sr
    return (time.perf_counter() - t) / seconds, (time.process_time() - c) / torch.get_num_threads() / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(QUICKSTART))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--iters", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--options", nargs="+", default=["plain", "channels_last", "compile"])
    args = ap.parse_args()

    cfg = yaml.safe_load(open(args.config)).get("model", {})
    dev = torch.device(args.device)
    sr = 16000
    wave = SyntheticSpeech().utterance(seed=1, duration=args.seconds).astype(np.float32)
    print(f"device={dev} threads={torch.get_num_threads()} config={args.config} audio={args.seconds:.0f}s")
    print(f"{'phase':>16} | {'iters':>5} | {'batch':>5} | {'option':>13} | {'RTF wall':>8} | {'RTF cpu':>7}")
    for option in args.options:
        model = Dereverber.from_hparams(cfg).eval().to(dev)
        if option == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        elif option == "compile":
            model.net = torch.compile(model.net, dynamic=True)
        for phase, iters in (("reverberant", 0), ("griffinlim-warm", args.iters)):
            for bs in args.batch_sizes:
                try:
                    wall, cpu = rtf(model, wave, sr, phase=phase, n_iter=iters, batch_size=bs)
                    print(f"{phase:>16} | {iters:>5} | {bs:>5} | {option:>13} | {wall:8.4f} | {cpu:7.4f}")
                except Exception as exc:  # e.g. no compiler for torch.compile
                    print(f"{phase:>16} | {iters:>5} | {bs:>5} | {option:>13} | failed: {type(exc).__name__}")
                    break


if __name__ == "__main__":
    main()
