"""The study report's figures, as matplotlib ``Figure`` objects built without pyplot (no
backend or global figure state: ``fig.savefig`` renders with Agg, notebooks display them)."""

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
    mean_curve,
    seed_means,
    summary_table,
    training_curves,
)
from dereverb.signals.metrics import LABELS


def _figure(ncols: int, width: float, height: float):
    """A matplotlib ``Figure`` with one row of ``ncols`` axes, built without pyplot (no backend
    or global figure state; ``fig.savefig`` renders with Agg, notebooks display it directly)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    return fig, fig.subplots(1, ncols, squeeze=False)


def _color(k: int):
    import matplotlib

    return matplotlib.colormaps["tab20"](k % 20)


def fig_summary(study: Study, eval_set: str):
    """Bars: mean over seeds with the 95 % t interval; dots: the per-seed means; dashed lines:
    the reverberant input and WPE (oracles only in the tables)."""
    table = summary_table(study, eval_set)
    fig, axes = _figure(len(PRIMARY), 5.0, 0.32 * max(len(table), 4) + 1.6)
    names = [r["condition"] for r in table]
    y = np.arange(len(names))
    # Oracles (PESQ ~4.3) would squeeze the axis the conditions differ on; they stay in the tables.
    base = {n: v for n, v in baseline_means(study, eval_set).items() if not n.startswith("oracle")}
    for ax, m in zip(axes[0], PRIMARY, strict=True):
        means = np.array([r[m] for r in table])
        err = (
            np.array([[r[m] - r[m + "_lo"], r[m + "_hi"] - r[m]] for r in table]).T
            if table
            else None
        )
        colors = ["tab:orange" if n.endswith("@same") else "tab:blue" for n in names]
        ax.barh(
            y,
            means,
            xerr=np.nan_to_num(err) if err is not None else None,
            color=colors,
            alpha=0.6,
            capsize=2,
        )
        sm = seed_means(study, eval_set, m)
        for i, n in enumerate(names):
            vals = list(sm.get(n, {}).values())
            ax.plot(vals, [i] * len(vals), "k.", ms=4)
        for k, (bn, bm) in enumerate(base.items()):
            if math.isfinite(bm[m]):
                ax.axvline(bm[m], ls="--", lw=1, color=f"C{k + 2}", label=bn)
        finite = means[np.isfinite(means)]
        if finite.size:
            lo = min(
                finite.min(),
                *[bm[m] for bm in base.values() if math.isfinite(bm[m]) and bm[m] < finite.min()]
                or [finite.min()],
            )
            ax.set_xlim(lo - 0.05 * abs(lo) - 0.01, None)
        ax.set_yticks(y, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(LABELS[m], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    if base:
        axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{SET_TITLES.get(eval_set, eval_set)}: mean over seeds, 95% t interval; dots = seeds "
        "(blue: target log_magnitude, orange: target same)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def fig_diffs(study: Study, eval_set: str, n_boot: int = 2000):
    """Forest plot of differences to the reference: bootstrap CI (bar) and the ± seed-noise
    threshold (grey band)."""
    ref = study.reference
    names = [c for c in study.conditions if c != ref]
    fig, axes = _figure(len(PRIMARY), 5.0, 0.32 * max(len(names), 4) + 1.6)
    for ax, m in zip(axes[0], PRIMARY, strict=True):
        for i, n in enumerate(names):
            c = compare(study, eval_set, n, ref, m, n_boot=n_boot)
            if c is None or not math.isfinite(c["delta"]):
                continue
            if math.isfinite(c["noise_threshold"]):
                ax.fill_betweenx(
                    [i - 0.35, i + 0.35],
                    -c["noise_threshold"],
                    c["noise_threshold"],
                    color="0.85",
                    lw=0,
                )
            color = "tab:red" if c["beyond_noise"] else "tab:blue"
            ax.errorbar(
                c["delta"],
                i,
                xerr=[[c["delta"] - c["lo"]], [c["hi"] - c["delta"]]],
                fmt="o",
                color=color,
                ms=4,
                capsize=2,
            )
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(np.arange(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"Δ {LABELS[m]} vs {ref}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"{SET_TITLES.get(eval_set, eval_set)}: paired bootstrap 95% CI (items, seed-averaged); grey: "
        "± seed-noise threshold (Welch t x se); red: beyond seed noise",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def fig_bands(study: Study, eval_set: str = "sim"):
    """PESQ / STOI / ESTOI per T60 band: one line per condition, baselines black (reverberant
    dotted, WPE dashed; oracles only in the tables)."""
    fig, axes = _figure(len(PRIMARY), 5.0, 4.2)
    for ax, m in zip(axes[0], PRIMARY, strict=True):
        rows = band_table(study, eval_set, m)
        bands = [b for b in BANDS if any(r.get(f"n_{b}", 0) for r in rows)]
        x = np.arange(len(bands))
        for k, r in enumerate(rows):
            base = r["name"].startswith("(")
            if r["name"].startswith("(oracle"):
                continue  # off the scale of the conditions; in the tables
            ax.plot(
                x,
                [r[b] for b in bands],
                (":" if "reverberant" in r["name"] else "--" if base else "-")
                + ("" if base else "o"),
                ms=3,
                lw=1,
                color="k" if base else _color(k),
                label=r["name"],
                alpha=0.9,
            )
        ax.set_xticks(
            x, [f"{b}\n(n={max(r.get(f'n_{b}', 0) for r in rows)})" for b in bands], fontsize=7
        )
        ax.set_xlabel("T60 band (s)", fontsize=8)
        ax.set_title(LABELS[m], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{SET_TITLES.get(eval_set, eval_set)} by T60 band (mean over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def fig_curves(
    study: Study, curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]] | None = None
):
    """Training curves averaged over seeds: train/val loss (target log_magnitude only: the same
    domain for every arm) and validation STOI / PESQ (every condition)."""
    curves = training_curves(study) if curves is None else curves
    panels = [
        ("train/loss", "log_magnitude"),
        ("val/loss", "log_magnitude"),
        ("val/stoi", None),
        ("val/pesq", None),
    ]
    fig, axes = _figure(len(panels), 4.6, 4.2)
    for ax, (tag, only) in zip(axes[0], panels, strict=True):
        for k, c in enumerate(study.conditions):
            if only and not c.endswith("@" + only):
                continue
            runs = [curves.get(r["run_id"], {}).get(tag, []) for r in study.runs(c)]
            runs = [r for r in runs if r]
            steps, vals = mean_curve(runs)
            if steps.size:
                ax.plot(
                    steps,
                    vals,
                    "-" if c.endswith("@log_magnitude") else "--",
                    lw=1,
                    color=_color(k),
                    label=c,
                )
        ax.set_title(tag + (" (target log_magnitude)" if only else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(
        "training curves, mean over seeds (solid: target log_magnitude, dashed: target same)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def fig_seed_spread(study: Study, eval_set: str = "sim"):
    """σ of the per-seed means per condition, next to the bootstrap half-width of its difference to the reference."""
    table = summary_table(study, eval_set)
    names = [r["condition"] for r in table]
    fig, axes = _figure(len(PRIMARY), 5.0, 0.32 * max(len(names), 4) + 1.6)
    y = np.arange(len(names))
    for ax, m in zip(axes[0], PRIMARY, strict=True):
        ax.barh(y, [r[m + "_sd"] for r in table], color="tab:gray")
        ax.set_yticks(y, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"σ over seeds of mean {LABELS[m]}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"seed-to-seed spread ({SET_TITLES.get(eval_set, eval_set)})", fontsize=9)
    fig.tight_layout()
    return fig


#: Every figure file the report can have (``measured`` ones only with the measured-room set).
FIGURES = (
    "summary_sim.png",
    "summary_measured.png",
    "diffs_sim.png",
    "diffs_measured.png",
    "bands.png",
    "curves.png",
    "seed_spread.png",
)


def report_figures(study: Study, n_boot: int = 2000) -> Iterator[tuple[str, Any]]:
    """``(file name, figure)`` for each of :data:`FIGURES` the study's results allow, built one
    at a time; nothing without finished runs."""
    if not study.results:
        return
    for s in study.eval_sets:
        yield f"summary_{s}.png", fig_summary(study, s)
        yield f"diffs_{s}.png", fig_diffs(study, s, n_boot=n_boot)
    if "sim" in study.eval_sets:
        yield "bands.png", fig_bands(study, "sim")
    yield "curves.png", fig_curves(study)
    yield "seed_spread.png", fig_seed_spread(study, study.eval_sets[0])
