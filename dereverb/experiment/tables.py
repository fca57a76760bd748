"""The study report's Markdown tables. Labels and digits come from the metric registry
(:mod:`dereverb.signals.metrics`); a value that is not a finite number prints as ``n/a``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dereverb.evaluation.report import BANDS
from dereverb.experiment.analysis import (
    PRIMARY,
    Study,
    band_table,
    baseline_means,
    compare,
    seed_means,
    summary_table,
)
from dereverb.models.net_spec import upgrade_hparams
from dereverb.signals.metrics import DIGITS, LABELS, METRICS


def fmt(v: Any, metric: str) -> str:
    """``v`` with the metric's digits; ``n/a`` for None / NaN."""
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{DIGITS[metric]}f}"


def fmt_signed(v: Any, metric: str) -> str:
    """Like :func:`fmt`, with a sign (differences)."""
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):+.{DIGITS[metric]}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table: a header row, a rule and one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(study: Study, eval_set: str) -> str:
    """Mean over seeds [95 % t interval] per condition, then the baselines (one deterministic value)."""
    rows = []
    for r in summary_table(study, eval_set):
        rows.append(
            [f"`{r['condition']}`", str(r["n_seeds"])]
            + [
                f"{fmt(r[m], m)} [{fmt(r[m + '_lo'], m)}, {fmt(r[m + '_hi'], m)}]"
                for m in METRICS
            ]
        )
    for name, means in baseline_means(study, eval_set).items():
        rows.append([f"({name})", "-"] + [fmt(means[m], m) for m in METRICS])
    return markdown_table(["condition", "seeds", *(LABELS[m] for m in METRICS)], rows)


def parse_summary_markdown(text: str) -> dict[str, dict[str, float]]:
    """Inverse of :func:`summary_markdown` for the condition rows: ``{condition: {metric: mean}}``."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|\s*(\d+)\s*\|(.*)\|\s*$", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(3).split("|")]
        if len(cells) != len(METRICS):
            continue
        out[m.group(1)] = {
            k: (math.nan if c.startswith("n/a") else float(c.split()[0]))
            for k, c in zip(METRICS, cells, strict=True)
        }
    return out


def _diff_cell(comp: Mapping[str, Any], m: str, bold: bool = False) -> str:
    mark = "**" if bold and comp["beyond_noise"] else ""
    return (
        f"{mark}{fmt_signed(comp['delta'], m)}{mark} "
        f"[{fmt_signed(comp['lo'], m)}, {fmt_signed(comp['hi'], m)}]"
    )


def diffs_markdown(study: Study, eval_set: str, n_boot: int) -> str:
    """Each condition minus the reference on the primary metrics: Δ [95 % CI] (thr), bold when
    beyond seed noise."""
    ref = study.reference
    rows = []
    for c in study.conditions:
        if c == ref:
            continue
        cells = [f"`{c}`"]
        flags = []
        for m in PRIMARY:
            comp = compare(study, eval_set, c, ref, m, n_boot=n_boot)
            if comp is None:
                cells.append("n/a")
                continue
            cells.append(
                f"{_diff_cell(comp, m, bold=True)} (thr {fmt(comp['noise_threshold'], m)})"
            )
            flags.append(comp["beyond_noise"])
        cells.append(
            "yes" if any(f for f in flags) else "unknown" if all(f is None for f in flags) else "no"
        )
        rows.append(cells)
    return markdown_table(
        ["condition", *(f"Δ {LABELS[m]} [95% CI]" for m in PRIMARY), "beyond seed noise"], rows
    )


def verdict_markdown(vs: Sequence[Mapping[str, Any]]) -> str:
    """Per mechanism (:func:`dereverb.experiment.verdicts.verdicts`): its headline and a table
    of its comparisons."""
    parts = []
    for v in vs:
        parts.append(f"**({v['key']}) {v['title']}** — {v['headline']}.\n")
        rows = []
        for p in v["results"]:
            cells = [f"`{p['a']}` − `{p['b']}`"]
            by = {c["metric"]: c for c in p["comparisons"]}
            for m in PRIMARY:
                c = by.get(m)
                cells.append(
                    "n/a"
                    if c is None
                    else f"{_diff_cell(c, m)}, thr {fmt(c['noise_threshold'], m)}"
                )
            cells.append(p["outcome"])
            rows.append(cells)
        if rows:
            header = ["comparison", *(f"Δ {LABELS[m]}" for m in PRIMARY), "beyond noise"]
            parts.append(markdown_table(header, rows) + "\n")
        if v["missing"]:
            parts.append(
                "Not compared (no finished runs): "
                + ", ".join(f"`{a}` − `{b}`" for a, b in v["missing"])
                + ".\n"
            )
    return "\n".join(parts)


def bands_markdown(study: Study, eval_set: str, metric: str) -> str:
    """Mean ``metric`` per T60 band (:data:`dereverb.evaluation.report.BANDS`) per condition
    and baseline; only bands with items."""
    rows = band_table(study, eval_set, metric)
    bands = [b for b in BANDS if any(r.get(f"n_{b}", 0) for r in rows)]
    if not rows or not bands:
        return "(no items with a known T60)"
    n = {b: max(r.get(f"n_{b}", 0) for r in rows) for b in bands}
    body = [
        [f"`{r['name']}`" if not r["name"].startswith("(") else r["name"]]
        + [fmt(r[b], metric) for b in bands]
        for r in rows
    ]
    return markdown_table(["condition", *(f"T60 {b} s (n={n[b]})" for b in bands)], body)


def spread_markdown(study: Study, eval_set: str) -> str:
    """σ of the per-seed means per condition on the primary metrics, and the per-seed PESQ."""
    rows = []
    for r in summary_table(study, eval_set):
        seeds = seed_means(study, eval_set, "pesq").get(r["condition"], {})
        rows.append(
            [f"`{r['condition']}`", str(r["n_seeds"])]
            + [fmt(r[m + "_sd"], m) for m in PRIMARY]
            + [", ".join(f"{seeds[s]:.3f}" for s in sorted(seeds))]
        )
    return markdown_table(
        ["condition", "seeds", *(f"σ {LABELS[m]}" for m in PRIMARY), "per-seed PESQ"], rows
    )


def net_arguments(model: Mapping[str, Any]) -> dict[str, Any]:
    """The network's arguments of a ``model`` config, flat (U-Net keys) or under ``net``."""
    return dict((upgrade_hparams(model).get("net") or {}).get("init_args") or {})


def setup_markdown(study: Study) -> str:
    """One row per condition: representation (and its arguments), input expansion, target,
    network parameters and training steps."""
    rows = []
    arms = study.meta.get("arms", {})
    for c in study.conditions:
        arm, target = c.split("@")
        spec = arms.get(arm, {})
        runs = study.runs(c)
        kw = ", ".join(f"{k}={v}" for k, v in (spec.get("representation_kwargs") or {}).items())
        exp = spec.get("input_expansion")
        rows.append(
            [
                f"`{c}`",
                f"{spec.get('representation', '?')}" + (f" ({kw})" if kw else ""),
                f"learned 1x1 -> {exp}" if exp else "-",
                target,
                str(runs[0]["parameters"]) if runs else "?",
                str(runs[0]["global_step"]) if runs else "?",
            ]
        )
    return markdown_table(
        ["condition", "representation", "input expansion", "target", "U-Net parameters", "steps"],
        rows,
    )
