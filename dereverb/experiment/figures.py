"""The study's figures as matplotlib ``Figure`` objects built without pyplot (no global state:
``fig.savefig`` renders with Agg, notebooks display them): the report's headline figure (the
answer's comparisons) and the training-length curves (notebook 02)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dereverb.experiment.analysis import BASES, PRIMARY, SET_TITLES, Study, baseline_means, summary
from dereverb.signals.metrics import LABELS

OUTCOME_COLOURS = {"better": "tab:green", "worse": "tab:red", "undecided": "0.45"}


def _figure(nrows: int, ncols: int, width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def fig_headline(families: Mapping[str, Sequence[Mapping[str, Any]]]):
    """The answer at a glance: per evaluation set (columns), each colour-image condition minus each
    plain input at each capacity's last step, Δ PESQ-WB with its 95 % interval; coloured by the
    outcome after the Holm correction (green better, red worse, grey undecided)."""
    sets = [s for s in families if families[s]]
    n = max((len(families[s]) for s in sets), default=1)
    fig, axes = _figure(1, max(len(sets), 1), 5.2, 0.9 + 0.26 * n)
    for ax, s in zip(axes[0], sets, strict=False):
        fam = families[s]
        for y, c in enumerate(fam):
            colour = OUTCOME_COLOURS[c["outcome"]]
            ax.plot([c["lo"], c["hi"]], [y, y], color=colour, lw=1.6)
            ax.plot([c["delta"]], [y], "o", color=colour, ms=5, mfc=colour if c["outcome"] != "undecided" else "white")
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_yticks(range(len(fam)))
        ax.set_yticklabels([f"{c['a'].replace('@log_magnitude', '')} − {c['b'].split('@')[0]} ({c['capacity']})" for c in fam]
                           if s == sets[0] else [], fontsize=7)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"Δ {LABELS[PRIMARY]} (95 % CI, uncorrected)")
        ax.set_title(f"{SET_TITLES[s]}: colour image − plain input", fontsize=9)
    fig.suptitle(f"Colour image vs {', '.join(BASES.values())}; filled: decided after Holm", fontsize=9)
    return fig


def fig_curves(study: Study, eval_set: str, metric: str = PRIMARY):
    """``metric`` vs training steps (log axis), one panel per capacity: the mean over seeds of
    each condition with its 95 % interval over seeds; dotted: the baselines."""
    import matplotlib

    caps = study.capacities
    fig, axes = _figure(1, len(caps), 5.0, 3.8)
    colours = {c: matplotlib.colormaps["tab20"](k % 20) for k, c in enumerate(study.conditions)}
    for ax, cap in zip(axes[0], caps, strict=True):
        steps = study.steps(cap)
        rows = {st: {r["condition"]: r[metric] for r in summary(study, eval_set, cap, st)} for st in steps}
        for c in study.conditions:
            pts = [(st, rows[st][c]) for st in steps if c in rows[st]]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1]["mean"] for p in pts], "o-", color=colours[c], ms=3, lw=1.2, label=c,
                    ls="--" if c.endswith("@same") else "-")
            ax.fill_between(xs, [p[1]["lo"] for p in pts], [p[1]["hi"] for p in pts], color=colours[c], alpha=0.12)
        for name, means in baseline_means(study, eval_set).items():
            ax.axhline(means[metric], color="0.4", ls=":", lw=1)
            ax.annotate(name, (steps[0], means[metric]), fontsize=6, color="0.3", va="bottom")
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlabel("training step")
        ax.set_ylabel(LABELS[metric])
        ax.set_title(f"{SET_TITLES[eval_set]}, {cap}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
