"""Score the shipped pretrained model on the test set and write its model card's numbers, or
compare a candidate with the shipped model on the dev set (to choose a bundle).

    python benchmarks/model_card.py [--ckpt pretrained] [--out runs/model_card] [--measured-items 200] [--sim-items 200] [--previous FOLDER]
    python benchmarks/model_card.py --dev-compare runs/x/last.ckpt [--out runs/dev_compare]

The test set (configs/measured_rooms.yaml ``test``: LibriSpeech's test speakers, never seen in
training, x measured rooms no model is chosen on), the earlier card's two rooms of
``../shared/data/rirs`` alone, and the simulated test rooms of ``configs/recipe.yaml``, each
through ``dereverb.evaluate`` with the reverberant input, WPE and the oracles beside the model;
then the same test rooms at lower input levels (peak -20 and -40 dBFS) and with pink background
noise (20 and 10 dB SNR). Prints one markdown block per set: the command and its runtime, the
all-item means of every system, PESQ-WB/STOI by T60 band, the model's paired differences to the
reverberant input and to WPE with paired-bootstrap 95 % intervals. docs/pretrained.md quotes it.

``--dev-compare`` scores the candidate and the shipped model on the dev set only
(benchmarks/recipe.py's :func:`dev_sets` with its quiet and noisy set) and prints the candidate
minus the shipped model, paired, per set and over all dev items (the number a bundle is chosen on).
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

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SPEECH = SHARED / "speech" / "librispeech-train-clean-100"
MEASURED = SHARED / "rirs"
CONFIG = REPO / "configs" / "recipe.yaml"
ROOMS = REPO / "configs" / "measured_rooms.yaml"
sys.path.insert(0, str(REPO / "benchmarks"))  # recipe.py beside it: the dev set and the paired table
from recipe import dev_sets, paired_table, per_item_rows, score  # noqa: E402


def test_rooms() -> str:
    return ",".join(str(SHARED / p) for p in yaml.safe_load(ROOMS.read_text())["test"])


def sets(args: argparse.Namespace) -> dict[str, list[str]]:
    measured = ["--speech", str(SPEECH), "--speech-split", "test", "--segment-seconds", "4"]
    n, sweep_n = ["--n-items", str(args.measured_items)], ["--n-items", str(args.sweep_items)]
    return {
        "test measured rooms": [*measured, "--rirs", test_rooms(), *n],
        "the earlier card's two rooms (rirs/)": [*measured, "--rirs", str(MEASURED), *n],
        "simulated test rooms": ["--datamodule-config", str(CONFIG), "--speech", str(SPEECH), "--n-items", str(args.sim_items)],
        "test measured rooms, input peak -20 dBFS": [*measured, "--rirs", test_rooms(), *sweep_n, "--level-db", "-20"],
        "test measured rooms, input peak -40 dBFS": [*measured, "--rirs", test_rooms(), *sweep_n, "--level-db", "-40"],
        "test measured rooms, pink noise 20 dB SNR": [*measured, "--rirs", test_rooms(), *sweep_n, "--snr-db", "20"],
        "test measured rooms, pink noise 10 dB SNR": [*measured, "--rirs", test_rooms(), *sweep_n, "--snr-db", "10"],
    }


def evaluate(ckpts: list[str], dest: Path, cache: Path, baselines: str, source: list[str]) -> str:
    """Run ``dereverb.evaluate``; returns the command as a user would type it, with its runtime."""
    cmd = [sys.executable, "-m", "dereverb.evaluate", "--ckpt", *ckpts, "--baselines", baselines,
           "-o", str(dest), "--cache-dir", str(cache), "--force", "--no-progress", "--srmr", "none", *source]
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO)
    shown = " ".join(["python -m dereverb.evaluate", *cmd[3:]]).replace(str(REPO) + "/", "").replace(str(SHARED), "../shared/data")
    return f"`{shown}` ({time.time() - t0:.0f} s)"


def dev_compare(args: argparse.Namespace) -> None:
    from dereverb.evaluation.systems import checkpoint_names

    ckpts = ["pretrained", args.dev_compare]
    names = checkpoint_names(ckpts, taken=("reverberant",))
    pooled: dict[str, dict[str, dict]] = {}  # every dev set's rows, item ids prefixed by the set
    for set_name, source in dev_sets(args.measured_items, args.sim_items, noisy=True).items():
        dest = Path(args.out) / set_name.replace(" ", "_").replace(",", "")
        shown = evaluate(ckpts, dest, Path(args.out) / "cache", "reverberant", source)
        by_system = per_item_rows(dest)
        table = paired_table(by_system, {"shipped": names[0], "candidate": names[1], "reverberant": "reverberant"}, "shipped")
        print(f"\n### {set_name}\n\n{shown}\n\n| system | PESQ-WB | Δ vs shipped [95 % CI] | STOI | Δ vs shipped [95 % CI] |\n|---|---|---|---|---|")
        for label, e in table.items():
            cells = [f"{e[m]['mean']:.3f} | " + ("–" if label == "shipped" else f"{e[m]['diff']:+.3f} [{e[m]['lo']:+.3f}, {e[m]['hi']:+.3f}]")
                     for m in ("pesq", "stoi")]
            print(f"| {label} | " + " | ".join(cells) + " |")
        for system in names:
            pooled.setdefault(system, {}).update({f"{set_name}/{i}": r for i, r in by_system[system].items()})
    # The decision: every dev item of every set, paired, in one interval.
    print("\nall dev items, candidate - shipped: " + paired_line(pooled, names[1], names[0], "; "))


def paired_cells(by_system: dict[str, dict[str, dict]], model: str, reference: str) -> dict[str, tuple[str, int]]:
    """``model`` minus ``reference``, paired (recipe.py's :func:`paired_table`: items where either
    score is missing are left out): ``{"pesq" / "stoi": ("+d [lo, hi]", n)}``."""
    table = paired_table(by_system, {"model": model, "reference": reference}, "reference")["model"]
    return {m: (f"{table[m]['diff']:+.3f} [{table[m]['lo']:+.3f}, {table[m]['hi']:+.3f}]", table[m]["n"])
            for m in ("pesq", "stoi")}


def paired_line(by_system: dict[str, dict[str, dict]], model: str, reference: str, sep: str = ", ") -> str:
    """:func:`paired_cells` as ``PESQ-WB +d [lo, hi] (n = k)`` and the same for STOI, joined by ``sep``."""
    cells = paired_cells(by_system, model, reference)
    return sep.join(f"{label} {cells[m][0]} (n = {cells[m][1]})" for m, label in (("pesq", "PESQ-WB"), ("stoi", "STOI")))


def folder_of(set_name: str) -> str:
    """The evaluate output folder of one of :func:`sets`' sets, inside ``--out``."""
    return set_name.replace(" ", "_").replace("'", "").replace("/", "").replace(",", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="pretrained")
    ap.add_argument("--out", default="runs/model_card")
    ap.add_argument("--measured-items", type=int, default=200)
    ap.add_argument("--sweep-items", type=int, default=100, help="items of each level / noise condition")
    ap.add_argument("--sim-items", type=int, default=200)
    ap.add_argument("--baselines", default="reverberant,wpe,oracle")
    ap.add_argument("--dev-compare", metavar="CKPT", help="score CKPT against the shipped model on the dev set instead")
    ap.add_argument("--previous", metavar="FOLDER", help="also score this (the previous bundle) and print the model minus it")
    ap.add_argument("--tables-only", action="store_true", help="print the tables of an earlier run in --out, evaluate nothing")
    args = ap.parse_args()
    if not SPEECH.is_dir() or not MEASURED.is_dir():
        raise SystemExit(f"error: {SPEECH} or {MEASURED} is absent; the model card is measured on them")
    if args.dev_compare:
        dev_compare(args)
        return
    from dereverb.evaluation.systems import checkpoint_names

    out = Path(args.out)
    model = "pretrained" if args.ckpt == "pretrained" else None
    if not args.tables_only:
        print(f"machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU; Python {platform.python_version()}")
    ckpts = [args.ckpt, *([args.previous] if args.previous else [])]
    names = checkpoint_names(ckpts, taken=("reverberant", "wpe"))
    for name, source in sets(args).items():
        dest = out / folder_of(name)
        sweep = "dBFS" in name or "SNR" in name
        if args.tables_only:
            if (dest / "results_ci.csv").is_file():
                print(f"\n### {name}\n\n{card_tables(dest, model=model)}")
            continue
        shown = evaluate(ckpts, dest, out / "cache", "reverberant,wpe" if sweep else args.baselines, source)
        print(f"\n### {name}\n\n{shown}\n")
        print(card_tables(dest, model=model))
        if args.previous:
            print(previous_diff(dest, *names))
    if all((out / folder_of(name)).is_dir() for name in LEVEL_SETS.values()):
        print("\n### Level and background noise\n\n" + level_table(out, *names))


#: The level table's rows: condition -> the set of :func:`sets` it comes from (the first one: as built).
LEVEL_SETS = {"as built (peaks −6…0 dBFS)": "test measured rooms",
              "peak −20 dBFS": "test measured rooms, input peak -20 dBFS",
              "peak −40 dBFS": "test measured rooms, input peak -40 dBFS",
              "pink noise, 20 dB SNR": "test measured rooms, pink noise 20 dB SNR",
              "pink noise, 10 dB SNR": "test measured rooms, pink noise 10 dB SNR"}


def level_table(out: Path, model: str, previous: str | None = None) -> str:
    """The card's level and noise table: per sweep condition (the first items of the test rooms
    at -20 / -40 dBFS and with pink noise at 20 / 10 dB SNR), every system's PESQ-WB / STOI, and
    the model minus itself as built, minus its (noisy) input and minus ``previous``, paired by item."""
    by_set = {label: per_item_rows(out / folder_of(name)) for label, name in LEVEL_SETS.items()}
    built = next(iter(by_set.values()))
    systems = ["reverberant", "wpe", *([previous] if previous else []), model]
    head = ["input", "reverberant PESQ-WB / STOI", "WPE", *(["previous bundle"] if previous else []), "**this bundle**",
            "this bundle minus itself as built, PESQ-WB / STOI", "this bundle minus its input, PESQ-WB",
            *(["this bundle minus the previous, PESQ-WB / STOI"] if previous else [])]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    ids = set(by_set["peak −20 dBFS"]["reverberant"])  # the sweep's items: the first of the test rooms

    def both(cells: dict[str, tuple[str, int]]) -> str:
        return f"{cells['pesq'][0]} / {cells['stoi'][0]}"

    for label, by_system in by_set.items():
        rows = {s: {i: r for i, r in by_id.items() if i in ids} for s, by_id in by_system.items()}
        means = [" / ".join(f"{np.nanmean([score(r, m) for r in rows[s].values()]):.3f}" for m in ("pesq", "stoi"))
                 for s in systems]
        vs_built = "–" if by_system is built else both(
            paired_cells({"condition": rows[model], "built": built[model]}, "condition", "built"))
        vs_input = paired_cells(rows, model, "reverberant")["pesq"][0]
        vs_prev = [both(paired_cells(rows, model, previous))] if previous else []
        lines.append(f"| {label} | " + " | ".join([*means, vs_built, vs_input, *vs_prev]) + " |")
    return "\n".join(lines) + "\n"


def previous_diff(dest: Path, model: str, previous: str) -> str:
    """One line: ``model`` minus ``previous`` over all items of ``dest``, PESQ-WB and STOI, paired."""
    return f"`{model}` minus the previous bundle (`{previous}`), paired over items: " + \
        paired_line(per_item_rows(dest), model, previous) + "\n"


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
    by_band: dict[tuple[str, str], dict[str, list[float]]] = {}  # PESQ-WB / STOI per T60 band
    for r in per_item:
        for m, *_ in CARD_METRICS:
            v = score(r, m)
            if v == v:
                means.setdefault(r["system"], {}).setdefault(m, []).append(v)
                if m in ("pesq", "stoi"):
                    by_band.setdefault((r["system"], r["band"]), {}).setdefault(m, []).append(v)
    out = ["| system | n | " + " | ".join(label for _, label, _, _ in CARD_METRICS) + " |",
           "|---|---:|" + "---:|" * len(CARD_METRICS)]
    for s in systems:
        vals = means.get(s, {})
        n = max((len(v) for v in vals.values()), default=0)
        cells = [fmt.format(sum(vals[m]) / len(vals[m])) if vals.get(m) else "–" for m, _, fmt, _ in CARD_METRICS]
        out.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
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
