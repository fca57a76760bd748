"""Score the shipped pretrained model and write its model card's numbers.

    python benchmarks/model_card.py [--ckpt pretrained] [--out runs/model_card] [--measured-items 200] [--sim-items 200]

Runs ``dereverb.evaluate`` twice — LibriSpeech's test speakers (never seen in training) x the
measured rooms of ``../shared/data/rirs``, and the simulated test rooms of
``configs/recipe.yaml`` — with the reverberant input, WPE and the three oracles beside the model,
then prints one markdown block per set: the command and its runtime, the all-item means of
every system, and the model's paired differences to the reverberant input and to WPE by T60
band with their paired-bootstrap 95 % intervals (from evaluate's ``results.json`` and
``results_ci.csv``; evaluate's full ``results.md`` is left in ``--out``). docs/pretrained.md
quotes that output.
"""

from __future__ import annotations

import argparse
import csv
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
    ap.add_argument("--tables-only", action="store_true", help="print the tables of an earlier run in --out, evaluate nothing")
    args = ap.parse_args()
    if args.tables_only:
        for name in ("measured", "simulated"):
            if (Path(args.out) / name / "results_ci.csv").is_file():
                print(f"\n### {name} rooms\n")
                print(card_tables(Path(args.out) / name, model="pretrained" if args.ckpt == "pretrained" else None))
        return
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
        print(card_tables(dest, model="pretrained" if args.ckpt == "pretrained" else None))


BAND_ORDER = ("<=0.4", "0.4-0.7", "0.7-1.0", ">1.0", "all")
CARD_METRICS = (("pesq", "PESQ-WB", "{:.3f}", "{:+.3f}"), ("stoi", "STOI", "{:.3f}", "{:+.3f}"),
                ("estoi", "ESTOI", "{:.3f}", "{:+.3f}"), ("si_sdr", "SI-SDR dB", "{:.2f}", "{:+.2f}"))


def card_tables(dest: Path, model: str | None = None) -> str:
    """Markdown for the model card from one evaluate output folder: all-item means of every
    system, then the model's differences to the reverberant input and WPE per T60 band (bands
    with items only), each ``Δ [95 % CI]``. ``model``: the model's system name (default: the
    first system that is neither a baseline nor an oracle)."""
    rows = list(csv.DictReader(open(dest / "results_ci.csv")))
    per_item = list(csv.DictReader(open(dest / "per_item.csv")))
    systems = list(dict.fromkeys(r["system"] for r in per_item))
    model = model or next(s for s in systems if s not in ("reverberant", "wpe") and not s.startswith("oracle"))
    means: dict[str, dict[str, list[float]]] = {}
    for r in per_item:
        for m, *_ in CARD_METRICS:
            try:
                v = float(r[m])
            except (KeyError, ValueError):
                continue
            if v == v:
                means.setdefault(r["system"], {}).setdefault(m, []).append(v)
    out = ["| system | n | " + " | ".join(label for _, label, _, _ in CARD_METRICS) + " |",
           "|---|---:|" + "---:|" * len(CARD_METRICS)]
    for s in systems:
        vals = means.get(s, {})
        n = max((len(v) for v in vals.values()), default=0)
        cells = [fmt.format(sum(vals[m]) / len(vals[m])) if vals.get(m) else "–" for m, _, fmt, _ in CARD_METRICS]
        out.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
    # PESQ-WB / STOI means of every system per T60 band (bands with items)
    by_band: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in per_item:
        for m in ("pesq", "stoi"):
            try:
                v = float(r[m])
            except ValueError:
                continue
            if v == v:
                by_band.setdefault((r["system"], r["band"]), {}).setdefault(m, []).append(v)
    bands = [b for b in BAND_ORDER[:-1] if any(k[1] == b for k in by_band)]
    if bands:
        counts = {b: len(by_band.get((systems[0], b), {}).get("pesq", [])) for b in bands}
        out += ["", "PESQ-WB / STOI by T60 band (of each item's room):", "",
                "| system | " + " | ".join(f"T60 {b} s (n={counts[b]})" for b in bands) + " |",
                "|---|" + "---:|" * len(bands)]
        for s in systems:
            cells = []
            for b in bands:
                v = by_band.get((s, b), {})
                cells.append(f"{sum(v['pesq']) / len(v['pesq']):.3f} / {sum(v['stoi']) / len(v['stoi']):.3f}"
                             if v.get("pesq") and v.get("stoi") else "–")
            out.append(f"| {s} | " + " | ".join(cells) + " |")
    for ref in ("reverberant", "wpe"):
        mine = [r for r in rows if r["system"] == model and r["reference"] == ref]
        if not mine:
            continue
        bands = [b for b in BAND_ORDER if any(r["band"] == b and int(r["n"]) > 0 for r in mine)]
        out += ["", f"`{model}` minus `{ref}`, paired over items, mean [95 % CI]:", "",
                "| T60 band | n | " + " | ".join(f"Δ {label}" for _, label, _, _ in CARD_METRICS) + " |",
                "|---|---:|" + "---:|" * len(CARD_METRICS)]
        for b in bands:
            cells, n = [], 0
            for m, _, _, dfmt in CARD_METRICS:
                r = next((r for r in mine if r["band"] == b and r["metric"] == m), None)
                if r is None or int(r["n"]) == 0:
                    cells.append("–")
                    continue
                n = max(n, int(r["n"]))
                cells.append(f"{dfmt.format(float(r['mean']))} [{dfmt.format(float(r['lo']))}, {dfmt.format(float(r['hi']))}]")
            label = "all" if b == "all" else f"{b} s"
            out.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
