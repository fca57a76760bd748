"""RIR simulation cost and accuracy: image method vs image-order caps vs hybrid ray tracing.

    python benchmarks/rir.py                # ~2 min on a 2-core machine
    python benchmarks/rir.py --rooms 2 --bank-size 16   # quick look

Part 1: per-RIR time (one thread, as in a bank worker) and measured T30 for rooms with a fixed
requested T60 (0.3, 0.6, 1.0 s), the same rooms for every setting. Part 2: a bank of
``--bank-size`` rooms from the default sampler (T60 0.2-1.0 s) built on all cores per setting,
the spread of measured / requested T60, and the time to load it back from the cache.
Prints Markdown tables (pasted into docs/rir.md).

    python benchmarks/rir.py --drr          # ~2 min: T60 and DRR, training bank vs measured rooms

``--drr`` instead: the T60 and DRR of ``configs/recipe.yaml``'s simulated training bank (built or
read from its cache, ``data/cache/rirs``) beside the measured dev and test rooms of
``configs/measured_rooms.yaml``, by T60 band (the case for ``data.drr_db_range``, docs/data.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dereverb.data.rir_bank import RirBank  # noqa: E402
from dereverb.data.rooms import RoomSampler, estimate_t60, simulate_rir  # noqa: E402

SETTINGS = {
    "image, full order": dict(),
    "image, order <= 40": dict(max_order=40),
    "image, order <= 20": dict(max_order=20),
    "hybrid rays (order 3)": dict(use_rays=True),
    "image, order <= 40, calibrate 2": dict(max_order=40, calibrate=2),
    "hybrid rays, calibrate 2": dict(use_rays=True, calibrate=2),
}


def per_rir(t60s: list[float], rooms: int, seed: int) -> list[str]:
    import pyroomacoustics as pra

    pra.constants.set("num_threads", 1)  # what one bank worker gets
    rows = [
        "| T60 asked (s) | setting | time / RIR (s) | measured T30 (s), mean [min, max] | RIR length (s) |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    for t60 in t60s:
        sampler = RoomSampler(t60_range=(t60, t60))
        rng = np.random.default_rng(seed)
        specs = [sampler.sample(rng) for _ in range(rooms)]
        for name, kw in SETTINGS.items():
            times, meas, lengths = [], [], []
            for spec in specs:
                t0 = time.perf_counter()
                r = simulate_rir(spec, **kw)
                times.append(time.perf_counter() - t0)
                meas.append(estimate_t60(r, 16000))
                lengths.append(r.size / 16000)
            rows.append(
                f"| {t60:.1f} | {name} | {np.mean(times):.3f} | {np.mean(meas):.2f} "
                f"[{min(meas):.2f}, {max(meas):.2f}] | {np.mean(lengths):.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def bank_build(n: int, workers: int, seed: int) -> list[str]:
    rows = [
        f"| setting | build {n} RIRs, {workers} workers (s) | measured/asked T60: median [5 %, 95 %] "
        "| load from cache (s) |",
        "|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    for name in (
        "image, full order",
        "image, order <= 40",
        "hybrid rays (order 3)",
        "image, order <= 40, calibrate 2",
        "hybrid rays, calibrate 2",
    ):
        kw = SETTINGS[name]
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            bank = RirBank.simulate(
                n,
                RoomSampler(),
                seed=seed,
                split="train",
                cache_dir=cache,
                workers=workers,
                progress=False,
                **kw,
            )
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            RirBank.simulate(
                n, RoomSampler(), seed=seed, split="train", cache_dir=cache, workers=workers, **kw
            )
            load = time.perf_counter() - t0
        ratio = bank.t60s / bank.nominal_t60s
        q = np.percentile(ratio, [50, 5, 95])
        rows.append(f"| {name} | {build:.1f} | {q[0]:.2f} [{q[1]:.2f}, {q[2]:.2f}] | {load:.3f} |")
        print(rows[-1], flush=True)
    return rows


def drr_by_band(config: str = "configs/recipe.yaml", rooms: str = "configs/measured_rooms.yaml") -> list[str]:
    """Median [min, max] DRR (dB) per T60 band of the recipe's training bank and each measured set."""
    import yaml

    from dereverb.evaluation.sources import build_datamodule, load_datamodule_config, measured_rooms

    sets = {"simulated training bank": build_datamodule(load_datamodule_config(config)).rir_bank("train")}
    shared = Path(config).resolve().parents[1].parent / "shared" / "data"
    for name, entries in yaml.safe_load(Path(rooms).read_text()).items():
        paths = [shared / e for e in entries]
        if not all(p.exists() for p in paths):
            print(f"# {name}: measured rooms not found under {shared}, left out")
            continue
        sets[f"measured {name} rooms"] = measured_rooms(paths)
    bands = [(0.0, 0.4), (0.4, 0.7), (0.7, 1.0), (1.0, 99.0)]
    rows = ["| RIRs | " + " | ".join(f"T60 {a:g}-{b:g} s" if b < 99 else f"T60 > {a:g} s" for a, b in bands) + " | all |",
            "|---|" + "---|" * (len(bands) + 1)]
    for name, bank in sets.items():
        t60s, drrs = np.asarray(bank.t60s), np.asarray(bank.drrs)
        cells = []
        for m in [(t60s >= a) & (t60s < b) for a, b in bands] + [np.ones_like(t60s, bool)]:
            d = drrs[m]
            cells.append(f"{np.median(d):+.1f} [{d.min():+.1f}, {d.max():+.1f}] (n={m.sum()})" if m.any() else "–")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rooms", type=int, default=4, help="rooms per T60 in part 1 (default 4)")
    ap.add_argument("--t60s", type=float, nargs="+", default=[0.3, 0.6, 1.0])
    ap.add_argument(
        "--bank-size", type=int, default=64, help="RIRs per bank in part 2 (default 64)"
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drr", action="store_true", help="only the T60/DRR table of the training bank and measured rooms")
    args = ap.parse_args()
    if args.drr:
        drr_by_band()
        return
    import pyroomacoustics as pra

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, pyroomacoustics {pra.__version__}"
    )
    t0 = time.perf_counter()
    per_rir(args.t60s, args.rooms, args.seed)
    print()
    bank_build(args.bank_size, args.workers, args.seed)
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
