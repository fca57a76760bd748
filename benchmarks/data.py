"""Training DataLoader throughput (pairs/s) from a cached RIR bank, for 0/1/2 workers.

    python benchmarks/data.py [--speech synthetic|FOLDER] [--seconds 2] [--batches 30]

Builds (or loads from cache) the simulated train bank first, then times iterating batches of
reverberant/clean pairs; prints one row per worker count. Goal: >= 200 pairs/s with 2 workers.
"""

from __future__ import annotations

import argparse
import time

import torch

from dereverb.data.datamodule import DereverbDataModule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", default="synthetic")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bank", type=int, default=200, help="train RIRs in the (cached) bank")
    ap.add_argument("--device", default=None, help="also time the device path on this device (cpu, cuda)")
    args = ap.parse_args()

    print(f"speech={args.speech} segment={args.seconds}s batch={args.batch_size}")
    t0 = time.perf_counter()
    dm = DereverbDataModule(
        speech=args.speech, segment_seconds=args.seconds, batch_size=args.batch_size,
        train_items=args.batch_size * (args.batches + 2), rir_bank_sizes=(args.bank, 8, 8),
    )
    dm.rir_bank("train")
    print(f"bank ready in {time.perf_counter() - t0:.1f} s")
    paths = [("cpu", None)] + ([("device", torch.device(args.device))] if args.device else [])
    print(f"{'path':>12} | {'workers':>7} | {'pairs/s':>8}")
    for path, device in paths:
        dm.reverb_on_device = device is not None
        for w in args.workers:
            dm.num_workers = w
            dm.datasets.clear()
            loader = dm.train_dataloader()
            it = iter(loader)

            def batch(it=it, device=device) -> int:
                b = next(it)
                if device is not None:  # what Lightning does: transfer, then build the pair there
                    b = dm.on_after_batch_transfer({k: v.to(device) for k, v in b.items()}, 0)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                return b["reverb"].shape[0]

            batch()  # worker start-up and first batch are not throughput
            n, t = 0, time.perf_counter()
            for _ in range(args.batches):
                n += batch()
            rate = n / (time.perf_counter() - t)
            label = path if device is None else f"device:{device.type}"
            print(f"{label:>12} | {w:>7} | {rate:8.1f}")
            del loader


if __name__ == "__main__":
    main()
