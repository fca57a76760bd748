"""Training throughput (samples/s) of a DereverbModule step: forward + backward + AdamW.

    python benchmarks/train.py [--config configs/quickstart.yaml] [--steps 10] [--precision 32 bf16 16]

Times full training steps (STFT, representation, U-Net, loss, backward, optimizer) on random
waveforms of the config's segment length and batch size, on CUDA when available (else CPU).
bf16/16 use torch.autocast as Lightning's mixed-precision plugins do (16 with a GradScaler).
Prints one row per precision with samples/s, ms/step and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import yaml

from dereverb.module import DereverbModule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["32", "bf16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--representation", default=None, help="override model.representation")
    args = ap.parse_args()

    cfg = yaml.safe_load(open(args.config))
    model_kw = {k: v for k, v in cfg.get("model", {}).items()}
    if args.representation:
        model_kw["representation"] = args.representation
    data = cfg.get("data", {})
    batch = args.batch_size or data.get("batch_size", 8)
    seconds = data.get("segment_seconds", 2.0)
    dev = torch.device(args.device)
    length = int(seconds * 16000)
    print(f"device={dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'}) "
          f"config={args.config} batch={batch} segment={seconds}s")
    print(f"{'precision':>9} | {'samples/s':>9} | {'ms/step':>8} | {'cpu-time samples/s':>18} | {'peak MB':>8}")
    for prec in args.precision:
        torch.manual_seed(0)
        m = DereverbModule(**model_kw).to(dev)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler(dev.type, enabled=prec == "16")
        dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[prec]
        batch_ = {"reverb": torch.randn(batch, length, device=dev) * 0.1, "clean": torch.randn(batch, length, device=dev) * 0.05}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        def step(m=m, opt=opt, scaler=scaler, dtype=dtype, batch_=batch_) -> None:
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss, _ = m._step(batch_)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        for _ in range(args.warmup):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = (time.perf_counter() - t) / args.steps
        # CPU time per thread: what an idle machine would show, robust to other jobs on the cores
        dc = (time.process_time() - c) / args.steps / (torch.get_num_threads() if dev.type == "cpu" else 1)
        peak = (torch.cuda.max_memory_allocated(dev) / 2**20) if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cpu_rate = f"{batch / dc:18.1f}" if dev.type == "cpu" else f"{'-':>18}"
        print(f"{prec:>9} | {batch / dt:9.1f} | {dt * 1e3:8.1f} | {cpu_rate} | {peak:8.0f}")


if __name__ == "__main__":
    main()
