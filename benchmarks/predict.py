"""Inference speed: real-time factor of ``dereverberate`` beside WPE on the same files.

    python benchmarks/predict.py [--ckpt pretrained] [--files 20] [--seconds 6] [--iters 32 16 8]

Runs the model (the shipped one by default) on ``--files`` synthetic utterances of ``--seconds``
each, one file at a time as ``dereverb.predict`` does, for each phase recovery (the reverberant
phase; warm-started Griffin-Lim at each ``--iters``; the last of them also with the weights as
stored, without ``load_model``'s inference preparation), then single-channel WPE (nara-wpe: 10 taps,
delay 3, 5 iterations, the evaluation baseline) on the same files in the same run, and prints
the real-time factor (processing time / audio duration; < 1 is faster than real time). Two
columns: wall clock, and process CPU time divided by the thread count (what an otherwise idle
machine would show; robust to other jobs sharing the cores). Start-up is not counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from dereverb.data.speech import SyntheticSpeech
from dereverb.evaluation.systems import Wpe
from dereverb.inference import dereverberate, load_model
from dereverb.models.checkpoints import build_model, read_model, resolve_checkpoint


def timed(fn, waves: list[np.ndarray]) -> tuple[float, float]:
    """(wall RTF, CPU RTF per thread) of ``fn`` over ``waves`` at 16 kHz."""
    fn(waves[0][:32000])  # warm-up (allocator, first-call costs)
    t, c = time.perf_counter(), time.process_time()
    for w in waves:
        fn(w)
    seconds = sum(w.shape[-1] for w in waves) / 16000
    return (time.perf_counter() - t) / seconds, (time.process_time() - c) / torch.get_num_threads() / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="pretrained")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--iters", type=int, nargs="+", default=[32, 16, 8])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="where the model runs (WPE runs on the CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.ckpt).to(args.device)
    speech = SyntheticSpeech()
    waves = [speech.utterance(seed=i, duration=args.seconds).astype(np.float32) for i in range(args.files)]
    print(f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, model on {args.device}; "
          f"--ckpt {args.ckpt}; {args.files} files x {args.seconds:g} s")
    print(f"{'system':>34} | {'RTF wall':>8} | {'RTF cpu':>7}")
    # The same weights as built from the file, without load_model's inference preparation
    # (batch norms folded, channels-last weights): what that preparation buys.
    stored = resolve_checkpoint(args.ckpt)
    unprepared = build_model(read_model(stored), stored).eval().to(args.device)
    rows = [("model, reverberant phase", model, dict(phase="reverberant"))]
    rows += [(f"model, Griffin-Lim warm x{n}", model, dict(phase="griffinlim-warm", n_iter=n)) for n in args.iters]
    rows += [(f"unprepared, Griffin-Lim warm x{n}", unprepared, dict(phase="griffinlim-warm", n_iter=n))
             for n in args.iters[-1:]]
    for name, m, kw in rows:
        wall, cpu = timed(lambda w, m=m, kw=kw: dereverberate(w, 16000, m, **kw), waves)
        print(f"{name:>34} | {wall:8.4f} | {cpu:7.4f}")
    wpe = Wpe()
    wall, cpu = timed(lambda w: wpe(torch.from_numpy(w)[None], 16000), waves)
    print(f"{'WPE (10 taps, 5 iterations)':>34} | {wall:8.4f} | {cpu:7.4f}")


if __name__ == "__main__":
    main()
