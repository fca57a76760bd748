"""Representation encode/decode throughput and peak memory; colormap inversion at 16 x 256 x 256.

    python benchmarks/representations.py                 # ~4 min on a busy 2-core CPU
    python benchmarks/representations.py --quick         # smaller, for a look
    python benchmarks/representations.py --device cuda   # peak = torch.cuda.max_memory_allocated

Every case runs in a fresh process (spawn) with ``--threads`` torch threads (default 1:
on a shared machine the single-thread CPU time is the number that does not depend on the
neighbours' load; wall time is printed beside it). Its peak memory is its own: on CPU the peak
is the process's peak RSS (VmHWM, reset just before via /proc/self/clear_refs) above its RSS
at that moment, measured in a separate process with MALLOC_MMAP_THRESHOLD_=65536 so freed
blocks leave the RSS (torch's CPU allocations are invisible to tracemalloc); on CUDA it is
``torch.cuda.max_memory_allocated``. Throughput = frames (B * N) per wall second and per CPU
second (``time.process_time``), best of ``--repeats``; the first full-size encode + decode
is timed separately, after a small warm-up call
so one-time library loading is not counted. Prints Markdown tables (pasted into
docs/representations.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("magnitude", "magnitude", {}),
    ("log_magnitude", "log_magnitude", {}),
    ("grayscale 8-bit", "grayscale", {"levels": 256}),
    ("colormap turbo", "colormap", {"cmap": "turbo"}),
    ("colormap turbo continuous", "colormap", {"cmap": "turbo", "levels": None}),
    ("image_codec gray PNG", "image_codec", {"format": "png"}),
    ("image_codec turbo JPEG q75", "image_codec", {"base": "colormap", "cmap": "turbo", "format": "jpeg"}),
    ("image_codec gray 224x224", "image_codec", {"resize": (224, 224)}),
    ("pcen", "pcen", {}),
    ("stacked db/pcen/power", "stacked", {}),
]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: clear_refs 5); return the RSS now, bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not permitted: the peak then also covers earlier work in this process
        pass
    return _status_kib("VmRSS") * 1024


def _peak_since(device: str, rss0: int) -> float:
    """MiB: CUDA max allocated, or the CPU peak RSS (VmHWM) above ``rss0``."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return max(0, _status_kib("VmHWM") * 1024 - rss0) / 2**20


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _magnitude(batch: int, frames: int, device: str, seed: int):
    """A speech-like-range magnitude (B, 256, N): log-normal around -20 dB with a 1/f tilt."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    tilt = torch.linspace(0, -40, 256)[:, None]
    db = -20 + tilt + 15 * torch.randn(batch, 256, frames, generator=gen)
    return (10 ** (db / 20)).to(device)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - t[0], now[1] - t[1]


def run_case(args: tuple[str, str, dict[str, Any], int, int, int, str, int]) -> dict[str, Any]:
    """One representation: first-call time and peak memory, then the best of ``repeats`` (0: skip)."""
    label, name, kwargs, batch, frames, repeats, device, threads = args
    import torch

    torch.set_num_threads(threads)

    from dereverb.representations import build

    mag = _magnitude(batch, frames, device, seed=0)
    rep = build(name, **kwargs)
    # Warm up on a 16-frame slice: one-time library loading and thread-pool buffers (tens of MiB
    # on the first cdist call) are not the method's memory. The cube is still built below.
    warm = build(name, **kwargs)
    warm.decode(*warm.encode(mag[:1, :, :16]))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss0 = _reset_peak()
    t0 = time.perf_counter()
    x, ctx = rep.encode(mag)
    rep.decode(x, ctx)
    _sync(device)
    first = time.perf_counter() - t0
    peak = _peak_since(device, rss0)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = _clock()
        x, ctx = rep.encode(mag)
        _sync(device)
        enc.append(_since(t0))
        t1 = _clock()
        rep.decode(x, ctx)
        _sync(device)
        dec.append(_since(t1))
    n = batch * frames
    out = {"label": label, "first": first, "peak": peak}
    if repeats:
        out.update(enc=n / min(e[0] for e in enc), enc_cpu=n / min(e[1] for e in enc),
                   dec=n / min(d[0] for d in dec), dec_cpu=n / min(d[1] for d in dec))
    return out


def run_inversion(args: tuple[str, int, int, int, str, int]) -> dict[str, Any]:
    """Nearest-colour inversion (``Colormap.nearest_index``) of a (batch, 3, size, size) turbo image."""
    pixels_kind, batch, size, repeats, device, threads = args
    import torch

    torch.set_num_threads(threads)

    from dereverb.representations import build

    rep = build("colormap", cmap="turbo")
    lut = rep.lut_cpu.to(device)
    gen = torch.Generator().manual_seed(0)
    rgb = lut[torch.randint(0, 256, (batch * size * size,), generator=gen).to(device)]
    if pixels_kind == "noisy":  # a network output / JPEG: sigma 0.02 per channel off the path
        rgb = (rgb + 0.02 * torch.randn(rgb.shape, generator=gen).to(device)).clamp(0, 1)
    elif pixels_kind == "uniform":
        rgb = torch.rand(rgb.shape, generator=gen).to(device)
    rep.nearest_index(rgb[:1000])  # warm-up: one-time loading is not the method's memory
    rss0 = _reset_peak()
    times = []
    for _ in range(max(repeats, 1)):
        t0 = _clock()
        rep.nearest_index(rgb)
        _sync(device)
        times.append(_since(t0))
    return {"pixels": pixels_kind, "time": min(t[0] for t in times), "cpu": min(t[1] for t in times),
            "peak": _peak_since("cpu", rss0)}


def _in_fresh_process(fn, args, measure_memory: bool = False):
    """Run ``fn(args)`` in a new process. ``measure_memory``: glibc then mmaps every block >= 64 KiB
    and unmaps it on free (MALLOC_MMAP_THRESHOLD_), so the peak RSS is the method's own and
    not heap growth from glibc's adaptive threshold - but every allocation costs a page fault,
    so times are taken in a second process with the default allocator."""
    old = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if measure_memory:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        with mp.get_context("spawn").Pool(1) as pool:
            return pool.apply(fn, (args,))
    finally:
        if measure_memory:
            if old is None:
                os.environ.pop("MALLOC_MMAP_THRESHOLD_")
            else:
                os.environ["MALLOC_MMAP_THRESHOLD_"] = old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="items per encode/decode (default 4)")
    parser.add_argument("--frames", type=int, default=500, help="frames N per item (default 500 = 4 s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per case (default 1)")
    parser.add_argument("--quick", action="store_true", help="batch 2, 200 frames, inversion at 4 x 256 x 256")
    parser.add_argument("--skip-inversion", action="store_true", help="only the per-representation table")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but no CUDA device is visible; use --device cpu", file=sys.stderr)
            return 2
    if min(args.batch, args.frames, args.repeats, args.threads) < 1:
        print("error: --batch, --frames, --repeats and --threads must be >= 1", file=sys.stderr)
        return 2
    batch, frames, inv_batch = (2, 200, 4) if args.quick else (args.batch, args.frames, 16)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"device {args.device}, {args.threads} torch thread(s), torch {__import__('torch').__version__}, "
          f"python {platform.python_version()}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"\n### encode / decode, B={batch}, F=256, N={frames} ({batch * frames} frames a call)\n")
    print("| representation | encode frames/CPU-s | decode frames/CPU-s | encode frames/s (wall) "
          "| decode frames/s (wall) | first encode+decode (s, wall) | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for label, name, kwargs in CASES:
        case = (label, name, kwargs, batch, frames, args.repeats, args.device, args.threads)
        r = _in_fresh_process(run_case, case)
        r["peak"] = _in_fresh_process(run_case, (*case[:5], 0, *case[6:]), measure_memory=True)["peak"]
        print(f"| {r['label']} | {r['enc_cpu']:,.0f} | {r['dec_cpu']:,.0f} | {r['enc']:,.0f} | {r['dec']:,.0f} "
              f"| {r['first']:.3f} | {r['peak']:.0f} |", flush=True)
    if args.skip_inversion:
        return 0
    print(f"\n### colormap inversion (turbo, 256 levels, cKDTree), {inv_batch} x 256 x 256 = "
          f"{inv_batch * 65536:,} pixels\n")
    print("| pixels | inversion CPU-s (wall s) | Mpixel/CPU-s | peak memory (MiB) |")
    print("|---|---|---|---|")
    for kind in ("on-path", "noisy", "uniform"):
        case = (kind, inv_batch, 256, args.repeats, args.device, args.threads)
        r = _in_fresh_process(run_inversion, case)
        r["peak"] = _in_fresh_process(run_inversion, (*case[:3], 0, *case[4:]), measure_memory=True)["peak"]
        print(f"| {kind} | {r['cpu']:.2f} ({r['time']:.2f}) | {inv_batch * 65536 / r['cpu'] / 1e6:.2f} "
              f"| {r['peak']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
