"""The training recipe, measured: quality per CPU-minute of training variants at one fixed budget.

    python benchmarks/recipe.py speed [--threads 1] [--steps 6]          # cost of a training step
    python benchmarks/recipe.py train --out runs/recipe [--minutes 12] [--parallel 2] [--variants a,b]
    python benchmarks/recipe.py evaluate --out runs/recipe [--measured-items 120] [--sim-items 100] [--variants a,b]
    python benchmarks/recipe.py all --out runs/recipe                     # train, then evaluate

``speed`` times full training steps (STFT, representation, U-Net, loss, backward, AdamW) on
random waveforms for each way of making a step cheaper (precision, ``torch.compile``,
channels-last, width, batch and segment shape) and prints seconds of training audio per
second of wall time.

``train`` trains every variant of :data:`VARIANTS` with ``dereverb.train`` for the same CPU
time (``--minutes`` per thread, counted by the process itself, so variants sharing the cores
still get equal computation), ``--parallel`` at a time side by side with ``--threads`` torch
threads each, no data workers (the data pipeline is inside the budget), validation off (it
would cost budget), on the train speakers x simulated rooms. Each variant is a list of command-line overrides of
``configs/recipe.yaml``. A finished variant is skipped when run again.

``evaluate`` scores every variant's last checkpoint through ``dereverb.evaluate`` on the dev
set (:func:`dev_sets`: LibriSpeech's val speakers x the dev rooms of configs/measured_rooms.yaml,
and x simulated val rooms), then each variant minus ``baseline`` with paired-bootstrap 95 %
intervals over the same items, into ``OUT/recipe.md`` and ``OUT/recipe.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SPEECH = SHARED / "speech" / "librispeech-train-clean-100"
MORE_SPEECH = SHARED / "speech" / "speechocean762"
ROOMS = REPO / "configs" / "measured_rooms.yaml"
BASE_CONFIG = REPO / "configs" / "recipe.yaml"
METRICS = ("pesq", "stoi", "si_sdr")

#: name -> (what it changes, overrides of configs/recipe.yaml). ``baseline`` first. Round 2: every
#: variant trains in the corrected world (preroll, background noise, level-normalised input) from
#: scratch; round 1's table (configs/librispeech.yaml variants) is kept in docs/recipe.md.
_BOTH_CORPORA = f"[{SPEECH}, {MORE_SPEECH}]"
_DILATED = ["--model.net", "dereverb.models.dilated_unet.DilatedUNet", "--model.net.init_args.base_channels", "16",
            "--model.net.init_args.depth", "4", "--model.net.init_args.dilations", "[1, 2, 4, 8]"]
_NOISIER = ["--data.noise_prob", "0.9", "--data.noise_snr_db_range", "[0.0, 30.0]"]
_TREBLE = ["--data.room.hf_absorption_range", "[1.0, 3.0]", "--data.rir_air_absorption", "true"]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("configs/recipe.yaml: round 1's recipe (U-Net base 16, batch 8 x 2 s, L1 on log magnitudes) in the "
                 "corrected world (pre-roll, noise, level-free input): LibriSpeech, simulated rooms T60 0.2-1.0 s", []),
    "wide_rooms": ("baseline with simulated rooms up to T60 2.0 s (image order <= 40: every tail ends by ~1.2 s)",
                   ["--data.room.t60_range", "[0.2, 2.0]"]),
    "long_rooms": ("baseline with simulated rooms up to T60 2.0 s and their whole tails (hybrid ray tracing: image "
                   "order 3 + rays, calibrated; RIRs up to ~4 s)",
                   ["--data.room.t60_range", "[0.2, 2.0]", "--data.rir_use_rays", "true", "--data.rir_max_order", "null"]),
    "more_speech": ("baseline + speechocean762 (100 more speakers, 2 h)", ["--data.speech", _BOTH_CORPORA]),
    "compressed": ("baseline + L1 on compressed magnitudes |X|^0.3 of the level-normalised signal (weight 1)",
                   ["--model.compressed_weight", "1.0"]),
    "dilated": ("baseline with the time-dilated residual bottleneck (dilations 1, 2, 4, 8 frames)", _DILATED),
    "early": ("baseline with the early target (direct path + 50 ms) instead of the dry speech",
              ["--data.clean_target", "early"]),
    "treble_rooms": ("baseline with walls absorbing 1-3x more at 8 kHz than at 1 kHz and below, and air absorption "
                     "(treble tails decaying faster than flat walls make them)", _TREBLE),
    "combined": ("dilated + treble_rooms + more_speech: the three changes that did not lose on dev, together",
                 [*_DILATED, *_TREBLE, "--data.speech", _BOTH_CORPORA]),
    "noisier": ("baseline with background noise on 9 of 10 items at 0-30 dB SNR (as the bundle's run 7) instead of "
                "3 of 4 at 5-40 dB", _NOISIER),
    "filter": ("baseline with a 4-frame complex multi-frame filter as the output (model.filter_taps 4) instead of the "
               "magnitude; the network also sees the compressed complex spectrum",
               ["--model.filter_taps", "4"]),
    # The baseline's cosine spans its 50 epochs (25000 steps): at a budget of a few hundred steps it never anneals.
    "annealed": ("baseline with its cosine learning-rate schedule sized to the budget (to 5 % of lr by step 360, "
                 "fewer steps than the baseline makes in 14 CPU-minutes)", ["--trainer.max_steps", "360"]),
    "annealed_dilated": ("dilated with its cosine schedule sized to the budget (by step 330: its steps cost ~10 % more)",
                         [*_DILATED, "--trainer.max_steps", "330"]),
    "annealed_noisier": ("annealed with noisier's background noise (9 of 10 items at 0-30 dB SNR): the two largest STOI "
                         "gains of round 2 together", ["--trainer.max_steps", "360", *_NOISIER]),
    "annealed_hot": ("annealed at twice the peak learning rate (4e-3): a schedule that ends with the budget can afford "
                     "a larger step", ["--trainer.max_steps", "360", "--model.lr", "0.004"]),
    "drr": ("baseline with DRR augmentation: each training item's RIR tail rescaled to a DRR uniform in -15..+10 dB "
            "(real rooms pair any T60 with any DRR, shoeboxes do not; docs/data.md)", ["--data.drr_db_range", "[-15.0, 10.0]"]),
    "drr_long": ("baseline with DRR augmentation on the rooms of T60 >= 0.7 s only, uniform in -10..+6 dB (the short "
                 "simulated rooms' DRRs already span real ones; docs/data.md)",
                 ["--data.drr_db_range", "[-10.0, 6.0]", "--data.drr_min_t60", "0.7"]),
}


# ---------------------------------------------------------------------------------- speed
SPEED_ROWS: list[tuple[str, dict]] = [
    ("fp32, base 32, depth 4", {}),
    ("channels-last", {"channels_last": True}),
    ("torch.compile (inductor)", {"compile": True}),
    ("base 24", {"base": 24}),
    ("base 16", {"base": 16}),
    ("base 32, depth 5", {"depth": 5}),
    ("batch 16 x 3 s (configs/librispeech.yaml)", {"batch": 16, "seconds": 3.0}),
    # one step only: without avx512_bf16 / AMX, oneDNN runs bf16 convolutions on slow paths
    ("bf16 autocast (1 step)", {"bf16": True, "steps": 1, "warmup": 0}),
]


def speed(args: argparse.Namespace) -> None:
    import torch

    from dereverb.training.module import DereverbModule

    torch.set_num_threads(args.threads)
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    native_bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"}) or ["none"]
    print(f"CPU: {os.cpu_count()} cores, avx2={'avx2' in flags}, avx512f={'avx512f' in flags}, native bf16: {', '.join(native_bf16)}")
    print(f"training-step cost on the CPU, {torch.get_num_threads()} torch thread(s), "
          f"{args.steps} timed steps after {args.warmup} warm-up steps; random waveforms, "
          f"batch {args.batch} x {args.seconds:g} s unless the row says otherwise")
    print(f"{'setting':>38} | {'CPU ms/step':>11} | {'audio s per CPU s':>17} | {'vs fp32':>8}")
    base_rate = None
    rows = [(n, o) for i, (n, o) in enumerate(SPEED_ROWS) if i == 0 or not args.rows or str(i) in args.rows.split(",")]
    for name, opt in rows:
        batch, seconds = opt.get("batch", args.batch), opt.get("seconds", args.seconds)
        torch.manual_seed(0)
        net = {"class_path": "dereverb.models.unet.UNet",
               "init_args": {"base_channels": opt.get("base", 32), "depth": opt.get("depth", 4)}}
        m = DereverbModule(net=net)
        if opt.get("channels_last"):
            m = m.to(memory_format=torch.channels_last)
        if opt.get("compile"):
            m.model.net.compile()
        opt_ = torch.optim.AdamW(m.parameters(), lr=1e-3)
        length = int(seconds * 16000)
        gen = torch.Generator().manual_seed(0)
        batch_ = {"reverb": torch.randn(batch, length, generator=gen) * 0.1,
                  "clean": torch.randn(batch, length, generator=gen) * 0.05}

        bf16 = bool(opt.get("bf16", False))

        def step(m=m, opt_=opt_, batch_=batch_, bf16=bf16) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _ = m._step(batch_)
            opt_.zero_grad(set_to_none=True)
            loss.backward()
            opt_.step()

        for _ in range(opt.get("warmup", args.warmup) + (2 if opt.get("compile") else 0)):
            step()
        # CPU time of this process (one thread): robust to other jobs sharing the cores.
        steps = opt.get("steps", args.steps)
        t = time.process_time()
        for _ in range(steps):
            step()
        dt = (time.process_time() - t) / steps / torch.get_num_threads()
        rate = batch * seconds / dt
        base_rate = base_rate or rate
        print(f"{name:>38} | {dt * 1e3:11.0f} | {rate:17.2f} | {rate / base_rate:7.2f}x", flush=True)


# ---------------------------------------------------------------------------------- train
def train_args(name: str, out: Path) -> list[str]:
    """``dereverb.train`` arguments of variant ``name``: the base config, its overrides,
    validation off (it would spend the budget), no data workers (so the process's CPU time is
    all the work, data included), outputs under ``out/name``."""
    root = out / name
    return [
        "--config", str(BASE_CONFIG), "--data.num_workers", "0",
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.logger.init_args.name", "recipe", "--trainer.logger.init_args.version", name,
        "--checkpoint.dirpath", str(root / "checkpoints"), "--checkpoint.monitor", "null",
        "--checkpoint.save_top_k", "0", *VARIANTS[name][1],
    ]


class CpuBudget:
    """Stops training once the process has used ``seconds`` of CPU time since training began
    (a Lightning callback; built lazily so ``speed`` does not import Lightning)."""

    def __new__(cls, seconds: float):
        from lightning.pytorch import Callback

        class _CpuBudget(Callback):
            def __init__(self) -> None:
                self.seconds, self.start, self.used = seconds, None, 0.0

            def on_train_start(self, trainer, pl_module) -> None:
                self.start = time.process_time()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                self.used = time.process_time() - self.start
                if self.used >= self.seconds:
                    trainer.should_stop = True

        return _CpuBudget()


def train_one(args: argparse.Namespace) -> None:
    """One variant, in this process: train until its CPU budget is spent, then write done.json."""
    import torch

    from dereverb.training.run import run

    torch.set_num_threads(args.threads)
    out, name = Path(args.out), args.variant
    budget = CpuBudget(args.minutes * 60 * args.threads)
    t0 = time.time()
    cli = run(train_args(name, out) + args.extra, callbacks=[budget])
    ckpt = last_checkpoint(out, name)
    info = {"variant": name, "change": VARIANTS[name][0], "overrides": VARIANTS[name][1],
            "cpu_minutes_budget": args.minutes, "threads": args.threads, "steps": int(cli.trainer.global_step),
            "cpu_s": round(budget.used, 1), "wall_s": round(time.time() - t0, 1), "checkpoint": str(ckpt)}
    (out / name / "done.json").write_text(json.dumps(info, indent=1))


def last_checkpoint(out: Path, name: str) -> Path:
    return out / name / "checkpoints" / "last.ckpt"


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.variants.split(",") if n] if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    todo = [n for n in names if not (out / n / "done.json").is_file()]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    running: list[tuple[str, subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < args.parallel:
            name = todo.pop(0)
            (out / name).mkdir(parents=True, exist_ok=True)
            log = open(out / name / "train.log", "w")
            cmd = [sys.executable, __file__, "_one", name, "--out", str(out), "--minutes", str(args.minutes),
                   "--threads", str(args.threads), *args.extra]
            print(f"[{time.strftime('%H:%M:%S')}] start {name}: python -m dereverb.train "
                  f"{' '.join(train_args(name, out))}", flush=True)
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO),
                            time.time()))
        time.sleep(5)
        for item in list(running):
            name, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            done = out / name / "done.json"
            if proc.returncode != 0 or not done.is_file():
                print(f"[{time.strftime('%H:%M:%S')}] {name} FAILED ({proc.returncode}); see {out / name / 'train.log'}", flush=True)
                continue
            info = json.loads(done.read_text())
            print(f"[{time.strftime('%H:%M:%S')}] {name} done: {info['steps']} steps, {info['cpu_s']:.0f} CPU s, "
                  f"{info['wall_s']:.0f} s wall", flush=True)


# ---------------------------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> None:
    from dereverb.evaluation.systems import checkpoint_names

    out = Path(args.out)
    done = {}
    chosen = {"baseline", *args.variants.split(",")} if args.variants else set(VARIANTS)
    for name in (n for n in VARIANTS if n in chosen):
        f = out / name / "done.json"
        if f.is_file():
            done[name] = json.loads(f.read_text())
    if "baseline" not in done:
        raise SystemExit(f"error: {out}/baseline has not finished training; run `recipe.py train` first")
    ckpts = [done[n]["checkpoint"] for n in done]
    sets = dev_sets(args.measured_items, args.sim_items)
    results: dict[str, dict] = {"variants": done, "sets": {}}
    for set_name, source in sets.items():
        dest = out / "eval" / set_name.replace(" ", "_")
        cmd = [sys.executable, "-m", "dereverb.evaluate", "--ckpt", *ckpts, "--baselines", "reverberant,wpe",
               "-o", str(dest), "--cache-dir", str(out / "eval" / "cache"), "--force", "--no-progress",
               "--srmr", "none", *source]
        print(f"[{time.strftime('%H:%M:%S')}] evaluate {set_name}: {' '.join(cmd[2:])}", flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
        by_system = per_item_rows(dest)
        names = checkpoint_names(ckpts, taken=("reverberant", "wpe"))
        system_of = {**dict(zip(done, names, strict=True)), "reverberant": "reverberant", "wpe": "wpe"}
        table = paired_table(by_system, system_of, reference="baseline")
        results["sets"][set_name] = {"table": table, "command": " ".join(["python -m dereverb.evaluate", *cmd[3:]]),
                                     "seconds": round(time.time() - t0)}
    (out / "recipe.json").write_text(json.dumps(results, indent=1))
    (out / "recipe.md").write_text(markdown(results))
    print((out / "recipe.md").read_text())


def dev_sets(measured_items: int, sim_items: int, noisy: bool = False) -> dict[str, list[str]]:
    """``dereverb.evaluate`` arguments of the dev set: LibriSpeech's val speakers x the dev rooms of
    configs/measured_rooms.yaml, and x the simulated val rooms of configs/recipe.yaml; ``noisy``
    adds the dev rooms at -40 dBFS peak with pink noise at 20 dB SNR and at 0 dBFS with pink
    noise at 10 dB SNR (the conditions the card sweeps). The test set (model card) is never used here."""
    import yaml

    dev_rooms = ",".join(str(SHARED / p) for p in yaml.safe_load(ROOMS.read_text())["dev"])
    measured = ["--speech", str(SPEECH), "--rirs", dev_rooms, "--speech-split", "val",
                "--n-items", str(measured_items), "--segment-seconds", "4"]
    sets = {
        "dev measured": measured,
        "dev simulated": ["--datamodule-config", str(BASE_CONFIG), "--speech", str(SPEECH),
                          "--speech-split", "val", "--n-items", str(sim_items)],
    }
    if noisy:
        sets["dev measured, -40 dBFS, pink noise 20 dB SNR"] = [*measured, "--level-db", "-40", "--snr-db", "20"]
        sets["dev measured, pink noise 10 dB SNR"] = [*measured, "--snr-db", "10"]
    return sets


def per_item_rows(dest: Path) -> dict[str, dict[str, dict]]:
    """``dereverb.evaluate``'s per-item rows in ``dest``: ``{system: {item id: row}}``."""
    by_system: dict[str, dict[str, dict]] = {}
    for r in csv.DictReader(open(dest / "per_item.csv")):
        by_system.setdefault(r["system"], {})[r["id"]] = r
    return by_system


def paired_table(by_system: dict[str, dict[str, dict]], system_of: dict[str, str], reference: str) -> dict:
    """Per label: each metric's mean and its paired difference from ``reference`` with a
    percentile-bootstrap 95 % interval, over the items both scored (non-finite scores left out).

    ``by_system``: evaluate's per-item rows, ``{system: {item id: row}}``; ``system_of``:
    ``{label: system name}``, in the order of the table.
    """
    from dereverb.evaluation.intervals import bootstrap_diff

    base = by_system[system_of[reference]]
    table = {}
    for label, system in system_of.items():
        rows = by_system[system]
        entry = {}
        for metric in METRICS:
            ids = [i for i in base if i in rows]
            a = np.array([score(rows[i], metric) for i in ids])
            b = np.array([score(base[i], metric) for i in ids])
            both = np.isfinite(a) & np.isfinite(b)
            a, b = a[both], b[both]
            diff, lo, hi = bootstrap_diff(a, b, n=2000, seed=0)
            entry[metric] = {"mean": float(a.mean()), "diff": diff, "lo": lo, "hi": hi, "n": len(a)}
        table[label] = entry
    return table


def score(row: dict, metric: str) -> float:
    """One score of a per-item row as a float; NaN when absent, blank or not a number."""
    try:
        return float(row[metric])
    except (KeyError, ValueError):
        return float("nan")


def markdown(results: dict) -> str:
    lines = []
    for set_name, data in results["sets"].items():
        lines += [f"### {set_name} ({next(iter(data['table'].values()))['pesq']['n']} items)", "",
                  f"`{data['command']}` ({data['seconds']} s)", "",
                  "| variant | steps | PESQ-WB | Δ vs baseline [95 % CI] | STOI | Δ vs baseline [95 % CI] | SI-SDR dB | Δ [95 % CI] |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, entry in data["table"].items():
            steps = results["variants"].get(label, {}).get("steps", "–")
            cells = []
            for metric, fmt in (("pesq", "{:.3f}"), ("stoi", "{:.3f}"), ("si_sdr", "{:.2f}")):
                e = entry[metric]
                cells.append(fmt.format(e["mean"]))
                cells.append("–" if label == "baseline" else
                             f"{e['diff']:+.3f} [{e['lo']:+.3f}, {e['hi']:+.3f}]")
            lines.append(f"| {label} | {steps} | " + " | ".join(cells) + " |")
        lines += ["", *[f"- {n}: {results['variants'][n]['change']}" for n in results["variants"]]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed", help="cost of one training step, per setting")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--steps", type=int, default=6)
    sp.add_argument("--warmup", type=int, default=2)
    sp.add_argument("--rows", default=None, help="comma-separated row numbers to time (the first row, the reference, always runs)")
    sp.add_argument("--batch", type=int, default=4, help="items per step of every row but the last")
    sp.add_argument("--seconds", type=float, default=2.0, help="segment length of every row but the last")
    for name in ("train", "evaluate", "all"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--threads", type=int, default=1, help="torch threads of each training / evaluation")
        p.add_argument("--variants", default=None, help=f"comma-separated subset of {', '.join(VARIANTS)} "
                                                         "(evaluate: baseline always)")
        if name in ("train", "all"):
            p.add_argument("--minutes", type=float, default=12.0, help="CPU budget of each variant, in minutes per thread")
            p.add_argument("--parallel", type=int, default=6, help="variants trained side by side")
            p.add_argument("extra", nargs="*", help="more dereverb.train overrides (after --)")
        if name in ("evaluate", "all"):
            p.add_argument("--measured-items", type=int, default=120)
            p.add_argument("--sim-items", type=int, default=100)
    one = sub.add_parser("_one", help="(internal) train one variant in this process")
    one.add_argument("variant", choices=list(VARIANTS))
    one.add_argument("--out", required=True)
    one.add_argument("--minutes", type=float, required=True)
    one.add_argument("--threads", type=int, default=1)
    one.add_argument("extra", nargs="*")
    args = ap.parse_args()
    if args.cmd == "_one":
        train_one(args)
        return
    if args.cmd == "speed":
        speed(args)
        return
    if not SPEECH.is_dir():
        raise SystemExit(f"error: {SPEECH} is absent; the recipe is measured on LibriSpeech train-clean-100")
    if args.cmd in ("train", "all"):
        train(args)
    if args.cmd in ("evaluate", "all"):
        evaluate(args)


if __name__ == "__main__":
    main()
