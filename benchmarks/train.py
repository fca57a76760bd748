"""Training throughput (samples/s) of a DereverbModule step: forward + backward + AdamW.

    python benchmarks/train.py [--config configs/quickstart.yaml] [--steps 10] [--precision 32 bf16 16]
    python benchmarks/train.py --fit [--steps 40] [--precision 32 bf16] [-- --data.num_workers 4 ...]

Default: times full training steps (STFT, representation, U-Net, loss, backward, optimizer) on
random waveforms of the config's segment length and batch size, on CUDA when available (else
CPU). bf16/16 use torch.autocast as Lightning's mixed-precision plugins do (16 with a
GradScaler). Prints one row per precision with samples/s, ms/step, GPU utilisation and peak
memory.

``--fit``: the real thing, ``dereverb.train`` with the config's DataModule (workers, RIR bank,
device-path option) and Lightning's precision plugin, validation off; times the steps after
the warm-up and reports the share of wall time the loop spent waiting for the next batch
(the data path is the bottleneck when that share is large). Arguments after ``--`` go to
``dereverb.train`` unchanged.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from gpu_utilisation import GpuUtilisation
from lightning.pytorch.callbacks import Callback

from dereverb.training.module import DereverbModule

LIGHTNING_PRECISION = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepTimer(Callback):
    """Wall time of the training steps after ``warmup``, the part of it spent between one
    step's end and the next one's start (fetching, transferring and building the batch), and
    the GPU utilisation over the same span."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.samples = 0
        self.waiting = 0.0
        self.start = self.end = self._last_end = None
        self.util: GpuUtilisation | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _sync(pl_module.device)
        now = time.perf_counter()
        if trainer.global_step == self.warmup and self.start is None:
            self.start = now
            self.util = GpuUtilisation(pl_module.device)
            self.util.start()
        elif self.start is not None and self._last_end is not None:
            self.waiting += now - self._last_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is None:
            return
        _sync(pl_module.device)
        self._last_end = self.end = time.perf_counter()
        self.samples += batch["reverb"].shape[0]

    def on_train_end(self, trainer, pl_module) -> None:
        if self.util is not None:
            self.util.stop()


def fit_benchmark(args: argparse.Namespace, extra: list[str]) -> None:
    from dereverb.training.run import run

    rows = [f"{'precision':>10} | {'samples/s':>9} | {'ms/step':>8} | {'data wait':>9} | {'GPU util':>8} | {'peak MB':>8}"]
    for prec in args.precision:
        timer = StepTimer(args.warmup)
        with tempfile.TemporaryDirectory() as tmp:
            cli = run(["--config", args.config, "--trainer.max_steps", str(args.steps + args.warmup),
                       "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "0",
                       "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
                       "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", tmp,
                       "--trainer.logger.init_args.save_dir", tmp, "--checkpoint.save_last", "false",
                       "--autosave.every_n_train_steps", "0", "--autosave.save_on_exception", "false",
                       "--trainer.precision", LIGHTNING_PRECISION[prec], *extra], callbacks=[timer])
        if timer.start is None or timer.samples == 0:
            raise SystemExit("error: fewer training steps than --warmup; raise --steps or data.train_items")
        wall = timer.end - timer.start
        steps = cli.trainer.global_step - args.warmup
        rows.append(f"{cli.trainer.precision:>10} | {timer.samples / wall:9.1f} | {wall / steps * 1e3:8.1f} | "
                    f"{timer.waiting / wall:9.0%} | {timer.util:>8} | {_peak_mb(cli.model.device):8.0f}")
    # Lightning's own log lines interleave with the runs: the table comes last, in one piece.
    print(f"\nfit benchmark: config={args.config} device={cli.model.device} steps={args.steps} "
          f"(+{args.warmup} warm-up) extra={' '.join(extra) or '-'}")
    print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(QUICKSTART))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["32", "bf16"])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    ap.add_argument("--device", default=default_device)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--representation", default=None, help="override model.representation")
    ap.add_argument("--fit", action="store_true", help="time dereverb.train itself (DataModule included)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.fit:
        if args.device != default_device:  # Lightning picks the default device by itself
            extra = ["--trainer.accelerator", args.device, *extra]
        if args.representation:
            extra = ["--model.representation", args.representation, *extra]
        if args.batch_size:
            extra = ["--data.batch_size", str(args.batch_size), *extra]
        fit_benchmark(args, extra)
        return

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
    print(f"{'precision':>9} | {'samples/s':>9} | {'ms/step':>8} | {'cpu-time samples/s':>18} | {'GPU util':>8} | {'peak MB':>8}")
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
        _sync(dev)
        t, c = time.perf_counter(), time.process_time()
        with GpuUtilisation(dev) as util:
            for _ in range(args.steps):
                step()
            _sync(dev)
        dt = (time.perf_counter() - t) / args.steps
        # CPU time per thread: what an idle machine would show, robust to other jobs on the cores
        dc = (time.process_time() - c) / args.steps / (torch.get_num_threads() if dev.type == "cpu" else 1)
        cpu_rate = f"{batch / dc:18.1f}" if dev.type == "cpu" else f"{'-':>18}"
        print(f"{prec:>9} | {batch / dt:9.1f} | {dt * 1e3:8.1f} | {cpu_rate} | {util:>8} | {_peak_mb(dev):8.0f}")


if __name__ == "__main__":
    main()
