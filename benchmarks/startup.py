"""Start-up time and memory of inference, side by side with ``import torch`` in one run.

    python benchmarks/startup.py [--repeats 5] [--seconds 3600] [--ckpt X.ckpt]

Prints, for each command, the median / min / max wall time over ``--repeats`` interleaved runs
and the peak RSS of the process (``os.wait4``), then the ratios the goals are stated in:

- start-up of ``python -m dereverb.predict --help`` <= 1.3 x ``python -c "import torch"``;
- peak RSS of predicting a ``--seconds`` long file <= torch's own import + 250 MB.

Without ``--ckpt`` the file is predicted with an untrained U-Net of the default size
(memory and speed do not depend on the weights) using the reverberant phase.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

GOAL_STARTUP_RATIO = 1.3
GOAL_EXTRA_RSS_MB = 250.0


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def write_checkpoint(path: Path) -> None:
    """A checkpoint of an untrained default-size model, in the layout ``dereverb.train`` writes."""
    import torch

    from dereverb.models.dereverber import Dereverber

    hp = {"representation": "log_magnitude", "representation_kwargs": {}, "target": "log_magnitude",
          "net": {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 32, "depth": 4}},
          "sample_rate": 16000, "n_fft": 512, "hop_length": 128}
    torch.manual_seed(0)
    model = Dereverber.from_hparams(hp)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)


def write_long_file(path: Path, seconds: float, sr: int = 16000) -> None:
    """``seconds`` of noise-modulated tones as 16-bit WAV, written in blocks (bounded memory)."""
    rng = np.random.default_rng(0)
    block = 60 * sr
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        left = int(seconds * sr)
        while left > 0:
            n = min(block, left)
            t = np.arange(n) / sr
            f.write((0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(n)).astype(np.float32))
            left -= n


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} | {min(values):7.2f} | {max(values):7.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3600.0, help="length of the predicted file")
    ap.add_argument("--ckpt", default=None, help="checkpoint to predict with (default: untrained, default size)")
    args = ap.parse_args()
    py = sys.executable
    commands = {
        "import torch": [py, "-c", "import torch"],
        "import dereverb.predict": [py, "-c", "import dereverb.predict"],
        "predict --help": [py, "-m", "dereverb.predict", "--help"],
        "import lightning": [py, "-c", "import torch, lightning"],
    }
    walls: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, list[float]] = {k: [] for k in commands}
    run(commands["import torch"])  # warm the page cache once
    for _ in range(args.repeats):  # interleaved, so drift in the machine's speed hits all alike
        for name, cmd in commands.items():
            w, m = run(cmd)
            walls[name].append(w)
            rss[name].append(m)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeats} interleaved runs each")
    print(f"{'command':>28} | {'wall s (median | min | max)':>27} | {'peak RSS MB':>11}")
    for name in commands:
        print(f"{name:>28} | {summary(walls[name])} | {statistics.median(rss[name]):11.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ckpt = Path(args.ckpt) if args.ckpt else tmp_path / "untrained.ckpt"
        if not args.ckpt:
            write_checkpoint(ckpt)
        src = tmp_path / "long.wav"
        write_long_file(src, args.seconds)
        wall, peak = run([py, "-m", "dereverb.predict", "--ckpt", str(ckpt), "-o", str(tmp_path / "out"),
                          str(src), "--phase", "reverberant", "--device", "cpu"])
    label = f"predict {args.seconds:g} s file"
    print(f"{label:>28} | {wall:7.2f} | {'':7} | {'':7} | {peak:11.0f}")

    ratio = statistics.median(walls["predict --help"]) / statistics.median(walls["import torch"])
    extra = peak - statistics.median(rss["import torch"])
    print(f"start-up ratio predict --help / import torch: {ratio:.2f} (goal <= {GOAL_STARTUP_RATIO})"
          f" {'PASS' if ratio <= GOAL_STARTUP_RATIO else 'FAIL'}")
    print(f"peak RSS of predict over import torch: +{extra:.0f} MB (goal <= +{GOAL_EXTRA_RSS_MB:.0f} MB)"
          f" {'PASS' if extra <= GOAL_EXTRA_RSS_MB else 'FAIL'}")
    print(f"real-time factor of the {args.seconds:g} s file (wall, incl. start-up): {wall / args.seconds:.4f}")


if __name__ == "__main__":
    main()
