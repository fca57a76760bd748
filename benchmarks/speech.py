"""SyntheticSpeech generation time per utterance (CPU time and wall time, median).

    python benchmarks/speech.py                    # 1, 2 and 4 s utterances, 10 repeats
    python benchmarks/speech.py --seconds 2 --repeats 3

CPU time (``time.process_time``) is robust to other processes sharing the cores; wall time is
what a DataLoader worker waits. Each utterance uses a new seed and speaker, after one warm-up
call. Prints a Markdown table (docs/speech.md quotes it: ~9 ms CPU for 2 s). Moved here from the
test suite (it was ``tests/test_speech.py::test_synthetic_speed``); nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dereverb.data.speech import SyntheticSpeech  # noqa: E402


def time_utterances(seconds: float, repeats: int) -> tuple[float, float]:
    """Median ``(CPU ms, wall ms)`` to generate one ``seconds``-long utterance."""
    g = SyntheticSpeech()
    g.utterance(0, seconds)  # warm-up
    cpu, wall = [], []
    for i in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        g.utterance(i, seconds, speaker=i)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return 1000 * float(np.median(cpu)), 1000 * float(np.median(wall))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    print(f"SyntheticSpeech at 16 kHz, {args.repeats} utterances per length, {platform.processor() or platform.machine()}")
    print("| seconds | ms CPU (median) | ms wall (median) |")
    print("|---|---|---|")
    for s in args.seconds:
        cpu, wall = time_utterances(s, args.repeats)
        print(f"| {s:g} | {cpu:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
