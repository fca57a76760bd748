"""Evaluation summaries: T60 bands (defined here, once), per-system means by band, paired-bootstrap
intervals (:mod:`dereverb.evaluation.intervals`), and their Markdown / CSV / JSON / PNG files
(written atomically). Metric labels and digits come from :mod:`dereverb.signals.metrics`. Rows are
:func:`dereverb.evaluation.scoring.evaluate_systems`'s per-item dicts: ``id``, ``system``, ``t60``
(s, NaN when unknown) and a float per metric (NaN when not computed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.atomic import atomic_path, write_atomic
from dereverb.evaluation.intervals import bootstrap_diff
from dereverb.signals.metrics import ALL_METRICS as METRICS
from dereverb.signals.metrics import DIGITS, LABELS

#: Upper edges (s) of the T60 bands; the last band is open. The one definition of the bands.
BAND_EDGES: tuple[float, ...] = (0.4, 0.7, 1.0)
BANDS: tuple[str, ...] = ("<=0.4", "0.4-0.7", "0.7-1.0", ">1.0")
ALL = "all"
REFERENCES: tuple[str, ...] = ("reverberant", "wpe")


def t60_band(t60: float | None) -> str | None:
    """The band label of a T60 in seconds (edges belong to the lower band); None if unknown."""
    if t60 is None or not math.isfinite(float(t60)):
        return None
    for edge, label in zip(BAND_EDGES, BANDS, strict=False):
        if float(t60) <= edge:
            return label
    return BANDS[-1]


def _finite_mean(values: Sequence[float]) -> tuple[float, int]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return (float(arr.mean()) if arr.size else math.nan), int(arr.size)


def _is_finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def summarize(rows: Sequence[Mapping[str, Any]], references: Sequence[str] = REFERENCES, n_boot: int = 2000,
              seed: int = 0, metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """Means by T60 band and paired-bootstrap intervals of the differences to ``references``.

    Returns a dict with
    - ``systems``: names in order of first appearance; ``metrics``: those with any finite value;
    - ``bands``: the four T60 bands (when any item has a known T60) and ``"all"``;
    - ``table``: one dict per (system, band): ``system, band, n`` (items) and per metric the
      NaN-ignoring mean and ``<metric>_n`` (finite values);
    - ``ci``: one dict per (system, reference, band, metric) for every system other than the
      reference: ``n`` (items scored by both), ``mean`` (of system - reference), ``lo``, ``hi``
      (95 % percentile bootstrap, ``n_boot`` resamples, ``seed``).
    """
    systems = list(dict.fromkeys(str(r["system"]) for r in rows))
    present = [m for m in metrics if any(_is_finite(r.get(m)) for r in rows)]
    bands = [*BANDS, ALL] if any(t60_band(r.get("t60")) is not None for r in rows) else [ALL]
    # by[system][metric][band] = {item id: value}; counts[(system, band)] = item ids
    by = {s: {m: {b: {} for b in bands} for m in present} for s in systems}
    counts: dict[tuple[str, str], set[str]] = {(s, b): set() for s in systems for b in bands}
    for r in rows:
        s, item = str(r["system"]), str(r["id"])
        for b in {t60_band(r.get("t60")), ALL} & set(bands):
            counts[(s, b)].add(item)
            for m in present:
                by[s][m][b][item] = float(r[m]) if _is_finite(r.get(m)) else math.nan
    table = []
    for s in systems:
        for b in bands:
            entry: dict[str, Any] = {"system": s, "band": b, "n": len(counts[(s, b)])}
            for m in present:
                entry[m], entry[f"{m}_n"] = _finite_mean(list(by[s][m][b].values()))
            table.append(entry)
    ci = []
    for k, ref in enumerate(r for r in references if r in by):
        for s in systems:
            if s == ref or s in references[:k]:  # reverberant - wpe is wpe - reverberant negated
                continue
            for b in bands:
                for m in present:
                    common = sorted(set(by[s][m][b]) & set(by[ref][m][b]))
                    a, r_ = [by[s][m][b][i] for i in common], [by[ref][m][b][i] for i in common]
                    mean, lo, hi = bootstrap_diff(a, r_, n=n_boot, seed=seed)
                    n = int(np.sum(np.isfinite(a) & np.isfinite(r_))) if common else 0
                    ci.append({"system": s, "reference": ref, "band": b, "metric": m, "n": n,
                               "mean": mean, "lo": lo, "hi": hi})
    return {"systems": systems, "metrics": present, "bands": bands, "table": table, "ci": ci,
            "n_boot": n_boot, "seed": seed}


# ----------------------------------------------------------------------------- formats
def _fmt(v: Any, metric: str, signed: bool = False) -> str:
    if not _is_finite(v):
        return "–"
    return f"{float(v):{'+' if signed else ''}.{DIGITS.get(metric, 3)}f}"


def _cell(summary: Mapping[str, Any], system: str, band: str) -> Mapping[str, Any]:
    return next((e for e in summary["table"] if e["system"] == system and e["band"] == band), {})


def _band_n(summary: Mapping[str, Any], band: str) -> int:
    return max((e["n"] for e in summary["table"] if e["band"] == band), default=0)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """A Markdown table, the first ``left`` columns left-aligned and the rest right-aligned, and a blank line."""
    def row(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    return [row(header), "|" + "---|" * left + "---:|" * (len(header) - left), *map(row, rows), ""]


def to_markdown(summary: Mapping[str, Any], title: str = "Evaluation", notes: Sequence[str] = ()) -> str:
    """The summary as Markdown: all-items means, one band table per metric, CI tables."""
    metrics, systems, bands = summary["metrics"], summary["systems"], summary["bands"]
    out = [f"# {title}", "", *[f"- {n}" for n in notes], *([""] if notes else [])]
    out += [f"## All items (n = {_band_n(summary, ALL)})", ""]
    out += _table(["system", "n", *(LABELS.get(m, m) for m in metrics)],
                  [[s, _cell(summary, s, ALL).get("n", 0), *(_fmt(_cell(summary, s, ALL).get(m), m) for m in metrics)]
                   for s in systems])
    if len(bands) > 1:
        out += ["## By T60 band (mean per band; n = items in the band)", ""]
        for m in metrics:
            out += [f"### {LABELS.get(m, m)}", ""]
            out += _table(["system", *(f"{b if b == ALL else f'T60 {b} s'} (n={_band_n(summary, b)})" for b in bands)],
                          [[s, *(_fmt(_cell(summary, s, b).get(m), m) for b in bands)] for s in systems])
    all_ci = {(c["system"], c["reference"], c["metric"]): c for c in summary["ci"] if c["band"] == ALL}

    def interval(c: Mapping[str, Any] | None, m: str) -> str:
        if c is None or not _is_finite(c["mean"]):
            return "–"
        return f"{_fmt(c['mean'], m, True)} [{_fmt(c['lo'], m, True)}, {_fmt(c['hi'], m, True)}]"

    for ref in dict.fromkeys(c["reference"] for c in summary["ci"]):
        out += [f"## Difference to {ref}: mean [95% CI], all items", "",
                f"Paired bootstrap over items ({summary['n_boot']} resamples, seed {summary['seed']}); "
                "an interval that excludes 0 is a difference these items support.", ""]
        compared = {c["system"] for c in summary["ci"] if c["reference"] == ref}
        out += _table(["system", *(f"Δ {LABELS.get(m, m)}" for m in metrics)],
                      [[s, *(interval(all_ci.get((s, ref, m)), m) for m in metrics)] for s in systems if s in compared])
    return "\n".join(out)


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if not _is_finite(v) and isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, Path):
        return str(v)
    return v


def to_json(obj: Any) -> str:
    """JSON with NaN/inf as null (valid JSON for every reader)."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


# ----------------------------------------------------------------------------- plot
def plot_vs_t60(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], path: str | os.PathLike,
                metrics: Sequence[str] = ("pesq", "stoi")) -> Path | None:
    """PNG: per-item scores (dots) and band means (line at the band's mean T60) against T60
    for every system, one panel per metric. Without T60s (paired/unpaired folders) a bar chart
    of the all-item means instead. Metrics absent from the summary are skipped (SRMR is
    plotted when nothing else is there); returns None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = [m for m in metrics if m in summary["metrics"]] or [m for m in ("srmr",) if m in summary["metrics"]]
    if not wanted or not rows:
        return None
    systems = summary["systems"]
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(wanted), figsize=(5.2 * len(wanted), 4.0), squeeze=False)
    has_t60 = len(summary["bands"]) > 1
    for ax, m in zip(axes[0], wanted, strict=True):
        if has_t60:
            for k, s in enumerate(systems):
                pts = [(float(r["t60"]), float(r[m])) for r in rows
                       if r["system"] == s and _is_finite(r.get("t60")) and _is_finite(r.get(m))]
                if not pts:
                    continue
                t, v = np.array(pts).T
                c = colours(k % 10)
                ax.scatter(t, v, s=8, alpha=0.3, color=c)
                band = np.array([t60_band(x) for x in t])
                sels = [band == b for b in BANDS if (band == b).any()]
                ax.plot([t[i].mean() for i in sels], [v[i].mean() for i in sels], "-o", color=c, label=s, markersize=4)
            for edge in BAND_EDGES:
                ax.axvline(edge, color="0.85", lw=0.8, zorder=0)
            ax.set_xlabel("T60 (s)")
        else:
            vals = [_cell(summary, s, ALL).get(m, math.nan) for s in systems]
            ax.bar(range(len(systems)), vals, color=[colours(k % 10) for k in range(len(systems))])
            ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right")
        ax.set_ylabel(LABELS.get(m, m))
        ax.grid(alpha=0.3)
    if has_t60:
        axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- all outputs
#: The files :func:`write_outputs` writes into its folder.
OUTPUT_FILES: tuple[str, ...] = (
    "results.md", "results.csv", "results_ci.csv", "results.json", "per_item.csv", "pesq_stoi_vs_t60.png")


def write_outputs(folder: str | os.PathLike, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                  meta: Mapping[str, Any], title: str = "Dereverberation evaluation", notes: Sequence[str] = ()) -> str:
    """Every file of :data:`OUTPUT_FILES` into ``folder``: the Markdown report, the band table
    (per system and band: n, and per metric its mean and finite count), the intervals, the JSON
    (``meta`` + summary), the per-item rows and the plot. Returns the Markdown."""
    out = Path(folder)
    md = to_markdown(summary, title=title, notes=notes)
    write_atomic(out / "results.md", md + "\n")
    write_atomic(out / "results.csv", _csv_text(summary["table"], ["system", "band", "n"] + [
        c for m in summary["metrics"] for c in (m, f"{m}_n")]))
    write_atomic(out / "results_ci.csv", _csv_text(summary["ci"], ["system", "reference", "band", "metric", "n",
                                                                   "mean", "lo", "hi"]))
    write_atomic(out / "per_item.csv", _csv_text(rows, list(dict.fromkeys(k for r in rows for k in r))))
    write_atomic(out / "results.json", to_json({"meta": meta, **summary}))
    plot_vs_t60(rows, summary, out / "pesq_stoi_vs_t60.png")
    return md
