"""The study report's figures, as matplotlib ``Figure`` objects built without pyplot (no
backend or global figure state: ``fig.savefig`` renders with Agg, notebooks display them).

Figures with one row per capacity: :func:`fig_curves` (metric vs training steps with seed
bands), :func:`fig_diffs` (paired differences to the reference vs steps, with the equivalence
margins), :func:`fig_summary`, :func:`fig_bands`, :func:`fig_seed_spread` (each capacity at its
last step). :func:`fig_training` draws the TensorBoard curves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from dereverb.evaluation.report import BANDS
from dereverb.experiment.analysis import (
    PRIMARY,
    SET_TITLES,
    Study,
    band_table,
    baseline_means,
    compare,
    curve_table,
    mean_curve,
    seed_means,
    summary_table,
    training_curves,
)
from dereverb.signals.metrics import LABELS


def _figure(nrows: int, ncols: int, width: float, height: float):
    """A matplotlib ``Figure`` with ``nrows`` x ``ncols`` axes, built without pyplot (no backend
    or global figure state; ``fig.savefig`` renders with Agg, notebooks display it directly)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows))
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _color(k: int):
    import matplotlib

    # the 10 dark tab20 colours first, then their light partners
    return matplotlib.colormaps["tab20"]((2 * k) % 20 + (k // 10) % 2)


def _colors(study: Study) -> dict[str, Any]:
    """One colour per condition, the same in every panel and figure."""
    return {c: _color(k) for k, c in enumerate(study.conditions)}


def _caps(study: Study) -> list[str]:
    return study.capacities or ["default"]


def _legend(fig, axes) -> None:
    """One legend for all panels, right of them (call instead of ``fig.tight_layout()``)."""
    handles: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    width = fig.get_figwidth()
    right = 1.0 - min(0.3, 2.4 / width) if handles else 1.0
    fig.tight_layout(rect=(0.0, 0.0, right, 0.95))
    if handles:
        fig.legend(list(handles.values()), list(handles), fontsize=7, loc="center left",
                   bbox_to_anchor=(right, 0.5))


def fig_curves(study: Study, eval_set: str):
    """Metric vs training steps (log axis), one row per capacity, one column per primary
    metric: the mean over seeds of each condition (solid: target log_magnitude, dashed: target
    same) with a band of ±1 σ of the per-seed means; dotted: reverberant input and WPE."""
    caps = _caps(study)
    colors = _colors(study)
    fig, axes = _figure(len(caps), len(PRIMARY), 4.6, 3.6)
    base = {n: v for n, v in baseline_means(study, eval_set).items() if not n.startswith("oracle")}
    for row, cap in zip(axes, caps, strict=True):
        for ax, m in zip(row, PRIMARY, strict=True):
            table = curve_table(study, eval_set, m, cap)
            for c in study.conditions:
                pts = sorted((r["step"], r["mean"], r["sd"]) for r in table if r["condition"] == c)
                if not pts:
                    continue
                x = np.array([p[0] for p in pts], dtype=float)
                y = np.array([p[1] for p in pts])
                sd = np.nan_to_num(np.array([p[2] for p in pts]))
                ls = "--" if c.endswith("@same") else "-"
                ax.plot(x, y, ls, marker="o", ms=3, lw=1.2, color=colors[c], label=c)
                ax.fill_between(x, y - sd, y + sd, color=colors[c], alpha=0.15, lw=0)
            for k, (bn, bm) in enumerate(base.items()):
                if math.isfinite(bm[m]):
                    ax.axhline(bm[m], ls=":", lw=1, color=f"C{k + 7}", label=f"({bn})")
            _steps_axis(ax, study.steps(cap), f"{LABELS[m]} ({cap})")
    fig.suptitle(
        f"{SET_TITLES.get(eval_set, eval_set)}: metric vs training length, mean over seeds, band "
        "±1 σ of the per-seed means (solid: target log_magnitude, dashed: target same)",
        fontsize=9,
    )
    _legend(fig, axes)
    return fig


def _steps_axis(ax, steps: list[int], title: str, pad: bool = False) -> None:
    """A training-step x axis: logarithmic (the evaluated lengths grow geometrically) with a
    tick at each evaluated step; ``pad`` leaves room for the per-condition offsets."""
    if len(steps) > 1:
        ax.set_xscale("log")
        if pad:
            ax.set_xlim(steps[0] / 1.3, steps[-1] * 1.3)
    ax.set_xticks(steps, [str(s) for s in steps], fontsize=7)
    ax.minorticks_off()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("training step", fontsize=8)
    ax.grid(alpha=0.3)


def fig_diffs(study: Study, eval_set: str, n_boot: int = 2000):
    """Paired differences to the reference vs training steps, one row per capacity: Δ with
    its 95 % verdict interval (items and seeds), the grey band ±margin (equivalence); filled
    markers: better / worse, open: equivalent or inconclusive."""
    caps = _caps(study)
    colors = _colors(study)
    ref = study.reference
    fig, axes = _figure(len(caps), len(PRIMARY), 4.6, 3.6)
    for row, cap in zip(axes, caps, strict=True):
        steps = study.steps(cap)
        views = {st: study.view(cap, st) for st in steps}
        names = [c for c in study.conditions if c != ref]
        for ax, m in zip(row, PRIMARY, strict=True):
            margin = study.margins.get(m, math.nan)
            if math.isfinite(margin):
                ax.axhspan(-margin, margin, color="0.88", lw=0)
            ax.axhline(0, color="k", lw=0.8)
            for k, c in enumerate(names):
                pts = []
                for st in steps:
                    comp = compare(views[st], eval_set, c, ref, m, n_boot=n_boot)
                    if comp is not None and math.isfinite(comp["delta"]):
                        pts.append((st, comp))
                if not pts:
                    continue
                # a small horizontal offset per condition so the intervals do not overlap
                x = np.array([st for st, _ in pts], dtype=float) * (1.0 + 0.025 * (k - len(names) / 2))
                d = np.array([cp["delta"] for _, cp in pts])
                lo = np.array([cp["lo95"] for _, cp in pts])
                hi = np.array([cp["hi95"] for _, cp in pts])
                err = np.nan_to_num(np.vstack([d - lo, hi - d]))
                ax.plot(x, d, "-", lw=0.8, color=colors[c], label=c)
                for xi, di, ei, (_, cp) in zip(x, d, err.T, pts, strict=True):
                    filled = cp["outcome"] in ("better", "worse")
                    ax.errorbar(
                        xi, di, yerr=ei[:, None], fmt="o", ms=4, capsize=2, color=colors[c],
                        mfc=colors[c] if filled else "white",
                    )
            _steps_axis(ax, steps, f"Δ {LABELS[m]} vs {ref} ({cap})", pad=True)
    fig.suptitle(
        f"{SET_TITLES.get(eval_set, eval_set)}: paired differences to the reference, 95 % interval "
        "(hull of items and seeds); grey: ±equivalence margin; filled: better/worse",
        fontsize=9,
    )
    _legend(fig, axes)
    return fig


def fig_summary(study: Study, eval_set: str):
    """Bars: mean over seeds with the 95 % t interval at each capacity's last step (one row
    per capacity); dots: the per-seed means; dashed lines: the reverberant input and WPE
    (oracles only in the tables)."""
    caps = _caps(study)
    n = max(len(study.conditions), 4)
    fig, axes = _figure(len(caps), len(PRIMARY), 5.0, 0.32 * n + 1.6)
    base = {n: v for n, v in baseline_means(study, eval_set).items() if not n.startswith("oracle")}
    for row, cap in zip(axes, caps, strict=True):
        view = study.view(cap)
        table = summary_table(view, eval_set)
        names = [r["condition"] for r in table]
        y = np.arange(len(names))
        for ax, m in zip(row, PRIMARY, strict=True):
            means = np.array([r[m] for r in table])
            err = (
                np.array([[r[m] - r[m + "_lo"], r[m + "_hi"] - r[m]] for r in table]).T
                if table
                else None
            )
            colors = ["tab:orange" if c.endswith("@same") else "tab:blue" for c in names]
            ax.barh(y, means, xerr=np.nan_to_num(err) if err is not None else None, color=colors,
                    alpha=0.6, capsize=2)
            sm = seed_means(view, eval_set, m)
            for i, c in enumerate(names):
                vals = list(sm.get(c, {}).values())
                ax.plot(vals, [i] * len(vals), "k.", ms=4)
            for k, (bn, bm) in enumerate(base.items()):
                if math.isfinite(bm[m]):
                    ax.axvline(bm[m], ls="--", lw=1, color=f"C{k + 2}", label=bn)
            finite = means[np.isfinite(means)] if means.size else means
            if finite.size:
                lo = min([finite.min(), *[bm[m] for bm in base.values() if math.isfinite(bm[m])]])
                ax.set_xlim(lo - 0.05 * abs(lo) - 0.01, None)
            ax.set_yticks(y, names, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{LABELS[m]} ({cap}, step {view.selected[1] if view.selected else '?'})", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    if base:
        axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{SET_TITLES.get(eval_set, eval_set)}: mean over seeds at the last step, 95% t interval; "
        "dots = seeds (blue: target log_magnitude, orange: target same)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def fig_bands(study: Study, eval_set: str = "sim"):
    """PESQ / STOI / ESTOI per T60 band at each capacity's last step (one row per capacity):
    one line per condition, baselines black (reverberant dotted, WPE dashed; oracles only in
    the tables)."""
    caps = _caps(study)
    colors = _colors(study)
    fig, axes = _figure(len(caps), len(PRIMARY), 5.0, 3.8)
    for row, cap in zip(axes, caps, strict=True):
        view = study.view(cap)
        for ax, m in zip(row, PRIMARY, strict=True):
            rows = band_table(view, eval_set, m)
            bands = [b for b in BANDS if any(r.get(f"n_{b}", 0) for r in rows)]
            x = np.arange(len(bands))
            for r in rows:
                base = r["name"].startswith("(")
                if r["name"].startswith("(oracle"):
                    continue  # off the scale of the conditions; in the tables
                ax.plot(
                    x,
                    [r[b] for b in bands],
                    (":" if "reverberant" in r["name"] else "--" if base else "-") + ("" if base else "o"),
                    ms=3,
                    lw=1,
                    color="k" if base else colors.get(r["name"], "0.5"),
                    label=r["name"],
                    alpha=0.9,
                )
            ax.set_xticks(
                x, [f"{b}\n(n={max(r.get(f'n_{b}', 0) for r in rows)})" for b in bands], fontsize=7
            )
            ax.set_xlabel("T60 band (s)", fontsize=8)
            ax.set_title(f"{LABELS[m]} ({cap})", fontsize=9)
            ax.grid(alpha=0.3)
    fig.suptitle(
        f"{SET_TITLES.get(eval_set, eval_set)} by T60 band (mean over seeds, last step)", fontsize=9
    )
    _legend(fig, axes)
    return fig


def fig_training(
    study: Study, curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]] | None = None
):
    """TensorBoard training curves averaged over seeds, one row per capacity: train/val loss
    (target log_magnitude only: the same domain for every arm) and validation STOI / PESQ."""
    curves = training_curves(study) if curves is None else curves
    panels = [
        ("train/loss", "log_magnitude"),
        ("val/loss", "log_magnitude"),
        ("val/stoi", None),
        ("val/pesq", None),
    ]
    caps = _caps(study)
    colors = _colors(study)
    fig, axes = _figure(len(caps), len(panels), 4.6, 3.6)
    for row, cap in zip(axes, caps, strict=True):
        for ax, (tag, only) in zip(row, panels, strict=True):
            for c in study.conditions:
                if only and not c.endswith("@" + only):
                    continue
                runs = [
                    curves.get(r["run_id"], {}).get(tag, [])
                    for r in study.runs(c)
                    if r["capacity"] == cap
                ]
                steps, vals = mean_curve([r for r in runs if r])
                if steps.size:
                    ax.plot(steps, vals, "-" if c.endswith("@log_magnitude") else "--", lw=1,
                            color=colors[c], label=c)
            ax.set_title(f"{tag} ({cap})" + (" (target log_magnitude)" if only else ""), fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(
        "training curves from TensorBoard, mean over seeds (solid: target log_magnitude, dashed: target same)",
        fontsize=9,
    )
    _legend(fig, axes)
    return fig


def fig_seed_spread(study: Study, eval_set: str = "sim"):
    """σ of the per-seed means per condition at each capacity's last step (one row per capacity)."""
    caps = _caps(study)
    n = max(len(study.conditions), 4)
    fig, axes = _figure(len(caps), len(PRIMARY), 5.0, 0.32 * n + 1.6)
    for row, cap in zip(axes, caps, strict=True):
        table = summary_table(study.view(cap), eval_set)
        names = [r["condition"] for r in table]
        y = np.arange(len(names))
        for ax, m in zip(row, PRIMARY, strict=True):
            ax.barh(y, [r[m + "_sd"] for r in table], color="tab:gray")
            ax.set_yticks(y, names, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"σ over seeds of mean {LABELS[m]} ({cap})", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"seed-to-seed spread ({SET_TITLES.get(eval_set, eval_set)}, last step)", fontsize=9)
    fig.tight_layout()
    return fig


#: Every figure file the report can have (``measured`` ones only with the measured-room set).
FIGURES = (
    "curves_sim.png",
    "curves_measured.png",
    "diffs_sim.png",
    "diffs_measured.png",
    "summary_sim.png",
    "summary_measured.png",
    "bands_sim.png",
    "bands_measured.png",
    "training.png",
    "seed_spread.png",
)


def report_figures(study: Study, n_boot: int = 2000) -> Iterator[tuple[str, Any]]:
    """``(file name, figure)`` for each of :data:`FIGURES` the study's results allow, built one
    at a time; nothing without finished runs."""
    if not study.results:
        return
    for s in study.eval_sets:
        yield f"curves_{s}.png", fig_curves(study, s)
        yield f"diffs_{s}.png", fig_diffs(study, s, n_boot=n_boot)
        yield f"summary_{s}.png", fig_summary(study, s)
        yield f"bands_{s}.png", fig_bands(study, s)
    yield "training.png", fig_training(study)
    yield "seed_spread.png", fig_seed_spread(study, study.eval_sets[0])
