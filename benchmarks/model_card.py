"""Score the shipped pretrained model and write its model card's numbers.

    python benchmarks/model_card.py [--ckpt pretrained] [--out runs/model_card] [--measured-items 200] [--sim-items 200]

Runs ``dereverb.evaluate`` twice — LibriSpeech's test speakers (never seen in training) x the
measured rooms of ``../shared/data/rirs``, and the simulated test rooms of
``configs/recipe.yaml`` — with the reverberant input, WPE and the three oracles beside the model,
then prints one markdown block per set: the command, its runtime, and evaluate's own
``results.md`` (means by T60 band with paired-bootstrap 95 % intervals against the
reverberant input). docs/pretrained.md quotes that output.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SPEECH = SHARED / "speech" / "librispeech-train-clean-100"
MEASURED = SHARED / "rirs"
CONFIG = REPO / "configs" / "recipe.yaml"


def sets(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "measured": ["--speech", str(SPEECH), "--rirs", str(MEASURED), "--speech-split", "test",
                     "--n-items", str(args.measured_items), "--segment-seconds", "4"],
        "simulated": ["--datamodule-config", str(CONFIG), "--speech", str(SPEECH), "--n-items", str(args.sim_items)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="pretrained")
    ap.add_argument("--out", default="runs/model_card")
    ap.add_argument("--measured-items", type=int, default=200)
    ap.add_argument("--sim-items", type=int, default=200)
    ap.add_argument("--baselines", default="reverberant,wpe,oracle")
    args = ap.parse_args()
    if not SPEECH.is_dir() or not MEASURED.is_dir():
        raise SystemExit(f"error: {SPEECH} or {MEASURED} is absent; the model card is measured on them")
    out = Path(args.out)
    print(f"machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU; Python {platform.python_version()}")
    for name, source in sets(args).items():
        dest = out / name
        cmd = [sys.executable, "-m", "dereverb.evaluate", "--ckpt", args.ckpt, "--baselines", args.baselines,
               "-o", str(dest), "--cache-dir", str(out / "cache"), "--force", "--no-progress", "--srmr", "none", *source]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=REPO)
        shown = " ".join(["python -m dereverb.evaluate", *cmd[3:]]).replace(str(REPO) + "/", "").replace(
            str(SHARED), "../shared/data")
        print(f"\n### {name} rooms\n\n`{shown}` ({time.time() - t0:.0f} s)\n")
        print((dest / "results.md").read_text())


if __name__ == "__main__":
    main()
