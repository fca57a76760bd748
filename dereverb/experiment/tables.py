"""The study report's Markdown tables. Labels and digits come from the metric registry
(:mod:`dereverb.signals.metrics`); a value that is not a finite number prints as ``n/a``.

Tables of one capacity and training length take a view (``study.view(capacity, step)``); the
others loop over the study's capacities and steps themselves.
"""

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
    combine,
    compare,
    compare_capacities,
    curve_table,
    runtime,
    seed_means,
    summary_table,
)
from dereverb.models.net_spec import upgrade_hparams
from dereverb.signals.metrics import DIGITS, LABELS, METRICS

#: One-character marks of the outcomes in dense tables.
MARKS = {"better": "▲", "worse": "▼", "equivalent": "≈", "inconclusive": "?", "mixed": "±"}


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
    """Mean over seeds [95 % t interval] per condition, then the baselines (one deterministic
    value). One capacity and step (a view)."""
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


def diff_cell(comp: Mapping[str, Any], m: str) -> str:
    """``Δ [95 % verdict interval] outcome-mark``."""
    return (
        f"{fmt_signed(comp['delta'], m)} [{fmt_signed(comp['lo95'], m)}, "
        f"{fmt_signed(comp['hi95'], m)}] {MARKS.get(comp['outcome'], '?')}"
    )


def diffs_markdown(study: Study, eval_set: str, n_boot: int) -> str:
    """Each condition minus the reference on the primary metrics (one capacity and step):
    Δ [95 % verdict interval] and the outcome."""
    ref = study.reference
    rows = []
    for c in study.conditions:
        if c == ref:
            continue
        cells = [f"`{c}`"]
        outs = []
        for m in PRIMARY:
            comp = compare(study, eval_set, c, ref, m, n_boot=n_boot)
            if comp is None:
                cells.append("n/a")
                continue
            cells.append(diff_cell(comp, m))
            outs.append(comp["outcome"])
        cells.append(combine(outs))
        rows.append(cells)
    return markdown_table(
        ["condition", *(f"Δ {LABELS[m]} [95% CI]" for m in PRIMARY), "outcome"], rows
    )


def steps_diffs_markdown(study: Study, eval_set: str, metric: str, n_boot: int) -> str:
    """Paired differences to the reference at every evaluated length: one row per condition
    and capacity, one column per step, ``Δ [95 % CI] mark``."""
    ref = study.reference
    steps = study.steps()
    rows = []
    for cap in study.capacities:
        cap_steps = study.steps(cap)
        views = {st: study.view(cap, st) for st in cap_steps}
        for c in study.conditions:
            if c == ref or not any(c in v.conditions for v in views.values()):
                continue
            cells = [f"`{c}`", cap]
            for st in steps:
                comp = compare(views[st], eval_set, c, ref, metric, n_boot=n_boot) if st in views else None
                cells.append("" if comp is None else diff_cell(comp, metric))
            rows.append(cells)
    if not rows:
        return "(no condition shares runs with the reference)"
    return markdown_table(["condition", "capacity", *(f"step {s}" for s in steps)], rows)


def curve_markdown(study: Study, eval_set: str, metric: str) -> str:
    """Metric vs training length: per condition and capacity the mean over seeds ± the seed
    spread (σ) at every evaluated step."""
    steps = study.steps()
    rows = []
    for cap in study.capacities:
        table = curve_table(study, eval_set, metric, cap)
        for c in study.conditions:
            cells = {r["step"]: r for r in table if r["condition"] == c}
            if not cells:
                continue
            rows.append(
                [f"`{c}`", cap, str(max(r["n_seeds"] for r in cells.values()))]
                + [
                    f"{fmt(cells[s]['mean'], metric)} ± {fmt(cells[s]['sd'], metric)}" if s in cells else ""
                    for s in steps
                ]
            )
    return markdown_table(["condition", "capacity", "seeds", *(f"step {s}" for s in steps)], rows)


def capacity_markdown(study: Study) -> str:
    """The capacities: U-Net arguments, parameters, steps, runs and time per run."""
    rt = runtime(study)["per_capacity"]
    rows = []
    for cap in study.capacities:
        runs = [r for r in study.results if r["capacity"] == cap]
        args = study.capacity_args(cap)
        params = sorted({int(r.get("parameters", 0)) for r in runs})
        shown = {k: v for k, v in args.items() if k in ("base_channels", "depth")} or args
        rows.append(
            [
                cap,
                ", ".join(f"{k} {v}" for k, v in shown.items()) or "-",
                f"{params[0]}–{params[-1]}" if len(params) > 1 else (str(params[0]) if params else "?"),
                ", ".join(str(s) for s in study.steps(cap)),
                str(len(runs)),
                str(len({r['condition'] for r in runs})),
                f"{rt[cap]['train_seconds_mean']:.0f} + {rt[cap]['eval_seconds_mean']:.0f}",
            ]
        )
    return markdown_table(
        ["capacity", "U-Net", "parameters", "evaluated steps", "runs", "conditions", "s per run (train + eval)"],
        rows,
    )


def capacity_effect_markdown(study: Study, eval_set: str, n_boot: int) -> str:
    """Per condition run at two capacities: the mean at each (its last step) and the change
    from the first capacity to the last, Δ [95 % CI] and outcome, per primary metric."""
    caps = study.capacities
    if len(caps) < 2:
        return "(one capacity only)"
    pair = (caps[0], caps[-1])
    rows = []
    for c in study.conditions:
        comps = [compare_capacities(study, eval_set, c, m, pair, n_boot=n_boot) for m in PRIMARY]
        if all(x is None for x in comps):
            continue
        means = [summary_table(study.view(cap), eval_set) for cap in pair]
        row = [f"`{c}`"]
        for m, comp in zip(PRIMARY, comps, strict=True):
            vals = [next((r[m] for r in t if r["condition"] == c), math.nan) for t in means]
            row.append(
                f"{fmt(vals[0], m)} → {fmt(vals[1], m)}: " + ("n/a" if comp is None else diff_cell(comp, m))
            )
        rows.append(row)
    if not rows:
        return f"(no condition has runs at both {pair[0]} and {pair[1]})"
    return markdown_table(
        ["condition", *(f"{LABELS[m]} {pair[0]} → {pair[1]}, Δ [95% CI]" for m in PRIMARY)], rows
    )


def pairs_markdown(pairs: Sequence[Mapping[str, Any]]) -> str:
    """:func:`dereverb.experiment.verdicts.pair_outcomes` dicts as a table."""
    rows = []
    for p in pairs:
        by = {c["metric"]: c for c in p["comparisons"]}
        rows.append(
            [f"`{p['a']}` − `{p['b']}`", p["capacity"], str(p["step"])]
            + [diff_cell(by[m], m) if m in by else "n/a" for m in PRIMARY]
            + [p["outcome"]]
        )
    return markdown_table(
        ["comparison", "capacity", "step", *(f"Δ {LABELS[m]} [95% CI]" for m in PRIMARY), "outcome"],
        rows,
    )


def bands_markdown(study: Study, eval_set: str, metric: str) -> str:
    """Mean ``metric`` per T60 band (:data:`dereverb.evaluation.report.BANDS`) per condition
    and baseline; only bands with items. One capacity and step (a view)."""
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
    """σ of the per-seed means per condition on the primary metrics, and the per-seed PESQ.
    One capacity and step (a view)."""
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
    """One row per condition and capacity: representation (and its arguments), input
    expansion, target, network (+ learned frontend) parameters, seeds and training steps."""
    rows = []
    arms = study.meta.get("arms", {})
    for cap in study.capacities:
        for c in study.conditions:
            runs = [r for r in study.runs(c) if r["capacity"] == cap]
            if not runs:
                continue
            arm, target = c.split("@")
            spec = arms.get(arm, {})
            kw = ", ".join(f"{k}={v}" for k, v in (spec.get("representation_kwargs") or {}).items())
            exp = spec.get("input_expansion")
            front = int(runs[0].get("frontend_parameters") or 0)
            rows.append(
                [
                    f"`{c}`",
                    cap,
                    f"{spec.get('representation', '?')}" + (f" ({kw})" if kw else ""),
                    f"learned 1x1 -> {exp}" if exp else "-",
                    target,
                    str(runs[0].get("parameters", "?")) + (f" + {front}" if front else ""),
                    str(len(runs)),
                    str(runs[0]["global_step"]),
                ]
            )
    return markdown_table(
        [
            "condition", "capacity", "representation", "input expansion", "target",
            "parameters (U-Net + frontend)", "seeds", "steps",
        ],
        rows,
    )
