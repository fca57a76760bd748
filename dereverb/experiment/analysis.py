"""A finished study folder's numbers: the runs' scores, their statistics and training curves.

Everything is computed from the runs' ``result.json`` files (per-item scores at every evaluated
training step) and TensorBoard events. A study can have several network *capacities* and
training *lengths*; every table and comparison is made within one capacity at one step: take a
view with :meth:`Study.view` (``study.view(capacity, step)``; default: the last step). Result
files of study version 1 (no capacity, the last step only) read as capacity ``default``.

Statistics (intervals and tests from :mod:`dereverb.evaluation.intervals`, T60 bands from
:mod:`dereverb.evaluation.report`):

- per condition (arm @ target) and seed: the mean over the evaluation items (NaN ignored);
  per condition: the mean of those per-seed means, a 95 % t interval over seeds
  (:func:`~dereverb.evaluation.intervals.t_interval`) and the seed-to-seed spread ``sd``
  (standard deviation of the per-seed means, ddof 1);
- a difference between two conditions (:func:`compare`) has two sources of uncertainty, the
  test items and the seeds (initialisation), and is judged on both: an *item-level* interval
  (each item's score averaged over the seeds, paired by item, paired t) and a *seed-level* one
  (Welch on the per-seed means). The verdict interval is the hull of the two:

  - ``better`` / ``worse``: the hull of the two ``1 - alpha`` (95 %) intervals excludes 0;
  - ``equivalent`` (within ``±margin``): both TOSTs reject at ``alpha``, i.e. both
    ``1 - 2 alpha`` (90 %) intervals lie inside ``±margin`` (checked first: a detected
    difference smaller than the margin is "equivalent", flagged ``detected``);
  - ``inconclusive`` otherwise (or with fewer than 2 seeds).

  Margins per metric: ``analysis.margins`` of the study config. The paired percentile
  bootstrap of version 1 (``lo``, ``hi``) and its "beyond seed noise" flag (bootstrap interval
  excludes 0 and ``|delta|`` exceeds the Welch threshold ``t(0.975, df) * se_seed``) are kept.
- a change of a difference (:func:`change_with_steps`, :func:`change_with_capacity`): the same
  judgement on per-seed, per-item differences of differences (the same run at two steps is
  paired; across capacities the runs are independent).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.evaluation.intervals import (
    bootstrap_diff,
    paired_differences,
    t_interval,
    tost_paired,
    tost_welch,
    welch_test,
)
from dereverb.evaluation.report import BANDS, summarize
from dereverb.experiment.config import DEFAULT_MARGINS, EVAL_SETS
from dereverb.experiment.files import (
    BASELINES_JSON,
    RESULT,
    RUNS,
    STUDY_JSON,
    TB_VERSION,
    read_json,
    run_dir,
)
from dereverb.signals.metrics import METRICS, REGISTRY

#: The metrics the comparisons, verdicts and figures use (the tables show every metric).
PRIMARY: tuple[str, ...] = ("pesq", "stoi", "estoi")
SET_TITLES = {"sim": "simulated test rooms", "measured": "measured rooms"}
#: Confidence of the Welch test that decides "beyond seed noise" (version 1's flag).
NOISE_CONFIDENCE = 0.95
#: The capacity of result files that have none (study version 1).
DEFAULT_CAPACITY = "default"
#: The outcomes of a comparison.
OUTCOMES: tuple[str, ...] = ("better", "worse", "equivalent", "inconclusive")
#: ``{seed: {item id: value}}``: one condition's scores (or differences of scores).
Scores = dict[int, dict[str, float]]


# ============================================================================ loading
def _normalise(r: dict[str, Any]) -> dict[str, Any]:
    """A result of any study version with ``capacity`` and ``steps`` (version 1: the last step
    only, capacity :data:`DEFAULT_CAPACITY`)."""
    r = dict(r)
    r["capacity"] = r.get("capacity") or DEFAULT_CAPACITY
    if not r.get("steps"):
        r["steps"] = [
            {"step": int(r.get("global_step", -1)), "rows": r.get("rows", {}), "means": r.get("means", {})}
        ]
    return r


@dataclass
class Study:
    """A study folder: ``meta`` (study.json), finished ``results`` (result.json dicts, with
    ``capacity`` and ``steps``) and the baselines (``baselines.json`` or None). A *view*
    (:meth:`view`) holds the results of one capacity with ``rows`` set to one step's scores."""

    folder: Path
    meta: dict[str, Any]
    results: list[dict[str, Any]]
    baselines: dict[str, Any] | None = None
    conditions: list[str] = field(default_factory=list)
    #: ``(capacity, step)`` of a view; None for the whole study.
    selected: tuple[str, int] | None = None
    #: Computed item scores and comparisons, shared by a study and its views (a report asks
    #: for the same comparison several times).
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def runs(self, condition: str) -> list[dict[str, Any]]:
        return sorted(
            (r for r in self.results if r["condition"] == condition), key=lambda r: r["seed"]
        )

    @property
    def reference(self) -> str:
        return str(self.meta.get("reference", "log_magnitude@log_magnitude"))

    @property
    def eval_sets(self) -> list[str]:
        sets = {s for r in self.results for s in r.get("rows", {})}
        return [s for s in EVAL_SETS if s in sets]

    @property
    def margins(self) -> dict[str, float]:
        """Equivalence margins per metric (the study config's ``analysis.margins``)."""
        given = (self.meta.get("analysis") or {}).get("margins") or {}
        return {**DEFAULT_MARGINS, **{k: float(v) for k, v in given.items()}}

    @property
    def alpha(self) -> float:
        return float((self.meta.get("analysis") or {}).get("alpha", 0.05))

    @property
    def capacities(self) -> list[str]:
        """Capacities with finished runs: the study config's order, then any others."""
        present = {r["capacity"] for r in self.results}
        order = [c for c in (self.meta.get("capacities") or {}) if c in present]
        return order + sorted(present - set(order))

    def capacity_args(self, capacity: str) -> dict[str, Any]:
        """The U-Net arguments of ``capacity`` (from a run's resolved network, else study.json)."""
        run = next((r for r in self.results if r["capacity"] == capacity and r.get("net")), None)
        if run is not None:
            return dict((run["net"] or {}).get("init_args") or {})
        return dict((self.meta.get("capacities") or {}).get(capacity) or {})

    def steps(self, capacity: str | None = None) -> list[int]:
        """The evaluated steps of the runs (of ``capacity``), ascending."""
        return sorted(
            {
                int(s["step"])
                for r in self.results
                if capacity is None or r["capacity"] == capacity
                for s in r["steps"]
            }
        )

    def view(self, capacity: str | None = None, step: int | None = None) -> Study:
        """The runs of ``capacity`` (default: the only one; required when there are several)
        with ``rows`` / ``means`` / ``global_step`` of training step ``step`` (default: the
        capacity's last step); runs not evaluated at ``step`` are left out."""
        caps = self.capacities
        if capacity is None:
            if len(caps) > 1:
                raise ValueError(f"the study has capacities {caps}: choose one")
            capacity = caps[0] if caps else DEFAULT_CAPACITY
        steps = self.steps(capacity)
        if step is None:
            step = steps[-1] if steps else -1
        out = []
        for r in self.results:
            if r["capacity"] != capacity:
                continue
            at = next((s for s in r["steps"] if int(s["step"]) == int(step)), None)
            if at is not None:
                out.append({**r, "rows": at.get("rows", {}), "means": at.get("means", {}), "global_step": int(step)})
        present = {r["condition"] for r in out}
        return replace(
            self,
            results=out,
            conditions=[c for c in self.conditions if c in present],
            selected=(capacity, int(step)),
        )

    def _single(self) -> None:
        if self.selected is None and len({r["capacity"] for r in self.results}) > 1:
            raise ValueError(
                "this study has several capacities: compare within one, study.view(capacity, step)"
            )

    def planned(self) -> list[str]:
        """Run ids of the profile's whole plan (study.json); for a version-1 study the matrix
        arms x targets x seeds."""
        if self.meta.get("plan"):
            return [p["run_id"] for p in self.meta["plan"]]
        seeds = self.meta.get("seeds", [])
        return [
            f"{a}__{t}__seed{s}"
            for a, arm in self.meta.get("arms", {}).items()
            for t in arm.get("targets", ["log_magnitude"])
            for s in seeds
        ]

    def missing(self) -> list[str]:
        have = {r["run_id"] for r in self.results}
        return [r for r in self.planned() if r not in have]

    def tb_dir(self, run_id: str) -> Path:
        return run_dir(self.folder, run_id) / TB_VERSION


def load_study(folder: str | os.PathLike) -> Study:
    """Read a study folder written by ``python -m dereverb.study``."""
    root = Path(folder)
    meta = read_json(root / STUDY_JSON)
    if meta is None:
        raise FileNotFoundError(
            f"{root}: no study.json; run python -m dereverb.study first (or pass the study folder)"
        )
    found = (read_json(p) for p in sorted((root / RUNS).glob(f"*/{RESULT}")))
    results = [_normalise(r) for r in found if r is not None]  # a hand-edited, broken file is skipped
    order = [
        f"{a}@{t}"
        for a, arm in meta.get("arms", {}).items()
        for t in arm.get("targets", ["log_magnitude"])
    ]
    present = {r["condition"] for r in results}
    conditions = [c for c in order if c in present] + sorted(present - set(order))
    return Study(root, meta, results, read_json(root / BASELINES_JSON), conditions)


def runtime(study: Study) -> dict[str, Any]:
    """Wall time of the sessions and the runs' training / evaluation / CPU seconds (also per
    capacity: ``per_capacity``)."""
    sessions = study.meta.get("sessions", [])
    res = study.results

    def means(rs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {
            "runs": len(rs),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])) if rs else math.nan,
            "eval_seconds_mean": float(np.mean([r["eval_seconds"] for r in rs])) if rs else math.nan,
        }

    return {
        "sessions": len(sessions),
        "wall_seconds": float(sum(s.get("wall_seconds", 0.0) for s in sessions)),
        "run_seconds": float(sum(r["train_seconds"] + r["eval_seconds"] for r in res)),
        **means(res),
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in res)),
        "per_capacity": {
            c: means([r for r in res if r["capacity"] == c]) for c in study.capacities
        },
    }


# ============================================================================ statistics
def _val(v: Any) -> float:
    return math.nan if v is None else float(v)


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def item_scores(study: Study, eval_set: str, metric: str) -> dict[str, Scores]:
    """``{condition: {seed: {item id: value}}}`` (NaN for failed scores) of a one-capacity
    study or view."""
    study._single()
    key = ("items", study.selected, len(study.results), eval_set, metric)
    if key in study.memo:
        return study.memo[key]
    out: dict[str, Scores] = {}
    for r in study.results:
        rows = r.get("rows", {}).get(eval_set)
        if rows is None:
            continue
        out.setdefault(r["condition"], {})[int(r["seed"])] = {
            str(x["id"]): _val(x.get(metric)) for x in rows
        }
    study.memo[key] = out
    return out


def seed_means(study: Study, eval_set: str, metric: str) -> dict[str, dict[int, float]]:
    """``{condition: {seed: mean over items}}``."""
    return {
        c: {s: finite_mean(list(v.values())) for s, v in seeds.items()}
        for c, seeds in item_scores(study, eval_set, metric).items()
    }


def summary_table(
    study: Study, eval_set: str, metrics: Sequence[str] = METRICS
) -> list[dict[str, Any]]:
    """One row per condition: ``condition, n_seeds, seeds`` and per metric ``<m>`` (mean of the
    per-seed means), ``<m>_lo``, ``<m>_hi`` (95 % t interval over seeds), ``<m>_sd`` (seed spread)."""
    per = {m: seed_means(study, eval_set, m) for m in metrics}
    rows = []
    for c in study.conditions:
        seeds = sorted(per[metrics[0]].get(c, {}))
        if not seeds:
            continue
        row: dict[str, Any] = {"condition": c, "n_seeds": len(seeds), "seeds": seeds}
        for m in metrics:
            mean, lo, hi, sd = t_interval([per[m][c][s] for s in seeds])
            row.update({m: mean, f"{m}_lo": lo, f"{m}_hi": hi, f"{m}_sd": sd})
        rows.append(row)
    return rows


def outcome(lo95: float, hi95: float, equivalent: bool, higher_is_better: bool = True) -> str:
    """``better`` / ``worse`` / ``equivalent`` / ``inconclusive`` from the verdict intervals
    (see the module docstring); equivalence is checked first."""
    if equivalent:
        return "equivalent"
    if not (math.isfinite(lo95) and math.isfinite(hi95)):
        return "inconclusive"
    if lo95 > 0:
        return "better" if higher_is_better else "worse"
    if hi95 < 0:
        return "worse" if higher_is_better else "better"
    return "inconclusive"


def combine(outcomes: Sequence[str]) -> str:
    """One word for a pair over several metrics: ``better`` (better on some, worse on none),
    ``worse``, ``mixed`` (both), ``equivalent`` (equivalent on all), else ``inconclusive``."""
    up, down = "better" in outcomes, "worse" in outcomes
    if up and down:
        return "mixed"
    if up or down:
        return "better" if up else "worse"
    if outcomes and all(o == "equivalent" for o in outcomes):
        return "equivalent"
    return "inconclusive"


def contrast(
    x: Scores,
    y: Scores,
    metric: str,
    *,
    margin: float,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """``x`` minus ``y`` judged on items and seeds (the module docstring): the seeds both have,
    the items every one of those seeds has. None when they share no seed."""
    seeds = sorted(set(x) & set(y))
    if not seeds:
        return None
    items = sorted(set.intersection(*(set(x[s]) for s in seeds), *(set(y[s]) for s in seeds)))
    va = np.array([finite_mean([x[s][i] for s in seeds]) for i in items])
    vb = np.array([finite_mean([y[s][i] for s in seeds]) for i in items])
    delta, lo, hi = bootstrap_diff(va, vb, n=n_boot, seed=seed)
    ma = [finite_mean([x[s][i] for i in items]) for s in seeds]
    mb = [finite_mean([y[s][i] for i in items]) for s in seeds]
    noise = welch_test(ma, mb, confidence=1.0 - alpha)
    _, item_lo, item_hi, _ = t_interval(paired_differences(va, vb), confidence=1.0 - alpha)
    lo95, hi95 = _hull(item_lo, noise.lo), _hull(item_hi, noise.hi, upper=True)
    if math.isfinite(margin) and margin > 0:
        item_eq = tost_paired(va, vb, margin, alpha)
        seed_eq = tost_welch(ma, mb, margin, alpha)
        lo90, hi90 = _hull(item_eq.lo, seed_eq.lo), _hull(item_eq.hi, seed_eq.hi, upper=True)
        equivalent = item_eq.equivalent and seed_eq.equivalent
        p_tost = _max_p(item_eq.pvalue, seed_eq.pvalue)
    else:  # no margin for this metric: no equivalence statement
        lo90 = hi90 = p_tost = math.nan
        equivalent = False
    higher = REGISTRY[metric].higher_is_better if metric in REGISTRY else True
    excl = bool(math.isfinite(lo) and (lo > 0 or hi < 0))
    # version 1's flag: bootstrap CI excludes 0 and |delta| beyond the Welch threshold
    beyond = (
        None
        if not math.isfinite(noise.threshold) or not math.isfinite(delta)
        else bool(excl and abs(delta) > noise.threshold)
    )
    return {
        "metric": metric,
        "delta": delta,
        "lo": lo,
        "hi": hi,
        "n_items": int(np.sum(np.isfinite(va) & np.isfinite(vb))),
        "seeds": seeds,
        "sd_a": t_interval(ma)[3],
        "sd_b": t_interval(mb)[3],
        "se_seed": noise.se,
        "welch_df": noise.df,
        "noise_threshold": noise.threshold,
        "ci_excludes_zero": excl,
        "beyond_noise": beyond,
        "per_seed_delta": [p - q for p, q in zip(ma, mb, strict=True)],
        "margin": margin,
        "alpha": alpha,
        "item_lo": item_lo,
        "item_hi": item_hi,
        "seed_lo": noise.lo,
        "seed_hi": noise.hi,
        "lo95": lo95,
        "hi95": hi95,
        "lo90": lo90,
        "hi90": hi90,
        "p_tost": p_tost,
        "equivalent": equivalent,
        "detected": bool(math.isfinite(lo95) and (lo95 > 0 or hi95 < 0)),
        "outcome": outcome(lo95, hi95, equivalent, higher),
    }


def _hull(a: float, b: float, upper: bool = False) -> float:
    """The outer end of two interval ends (NaN if either is NaN: both levels must be known)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b) if upper else min(a, b)


def _max_p(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _margin_alpha(study: Study, metric: str, margin: float | None, alpha: float | None) -> tuple[float, float]:
    return (
        float(margin if margin is not None else study.margins.get(metric, math.nan)),
        float(alpha if alpha is not None else study.alpha),
    )


def compare(
    study: Study,
    eval_set: str,
    a: str,
    b: str,
    metric: str,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    margin: float | None = None,
    alpha: float | None = None,
) -> dict[str, Any] | None:
    """Condition ``a`` minus condition ``b`` on ``metric`` in a one-capacity study or view (see
    the module docstring); None when either has no finished run. Keys: ``delta``, the verdict
    ``outcome`` with its intervals ``lo95, hi95`` (hull of the item-level paired t and the
    seed-level Welch intervals) and ``lo90, hi90`` (TOST against ``margin``, p ``p_tost``),
    ``equivalent``, ``detected``; the parts ``item_lo/hi``, ``seed_lo/hi``; version 1's
    ``lo, hi`` (paired bootstrap), ``n_items``, ``seeds``, ``sd_a, sd_b, se_seed``,
    ``welch_df``, ``noise_threshold``, ``ci_excludes_zero``, ``beyond_noise`` (None with < 2
    seeds or no finite difference)."""
    m, al = _margin_alpha(study, metric, margin, alpha)
    key = ("compare", study.selected, len(study.results), eval_set, a, b, metric, n_boot, seed, m, al)
    if key not in study.memo:
        scores = item_scores(study, eval_set, metric)
        c = None
        if a in scores and b in scores:
            c = contrast(scores[a], scores[b], metric, margin=m, alpha=al, n_boot=n_boot, seed=seed)
        study.memo[key] = None if c is None else {"a": a, "b": b, "eval_set": eval_set, **_where(study), **c}
    hit = study.memo[key]
    return None if hit is None else dict(hit)  # a copy: callers may annotate it


def _where(study: Study) -> dict[str, Any]:
    cap, step = study.selected or (None, None)
    return {"capacity": cap, "step": step}


def _sub(x: Scores, y: Scores) -> Scores:
    """``x - y`` per seed and item (the seeds and items both have)."""
    return {
        s: {i: x[s][i] - y[s][i] for i in x[s].keys() & y[s].keys()} for s in x.keys() & y.keys()
    }


def effect_scores(
    study: Study, eval_set: str, a: str, b: str, metric: str, capacity: str, step: int
) -> Scores | None:
    """Per seed and item, ``a - b`` at ``capacity`` and ``step`` (seed k of ``a`` minus seed k
    of ``b``: independent runs, so pairing the seeds this way adds no assumption)."""
    scores = item_scores(study.view(capacity, step), eval_set, metric)
    if a not in scores or b not in scores:
        return None
    return _sub(scores[a], scores[b])


def change_with_steps(
    study: Study,
    eval_set: str,
    a: str,
    b: str,
    metric: str,
    capacity: str,
    steps: tuple[int, int],
    n_boot: int = 2000,
) -> dict[str, Any] | None:
    """How ``a - b`` changes from ``steps[0]`` to ``steps[1]`` at ``capacity``: ``(a - b)`` at the
    later step minus ``(a - b)`` at the earlier one. Each run is paired with itself across the
    steps (its own change), so the seed-level test is on the per-seed changes of ``a`` against
    those of ``b``. ``outcome`` "better" = the difference grew (in ``a``'s favour)."""
    v0, v1 = study.view(capacity, steps[0]), study.view(capacity, steps[1])
    s0, s1 = item_scores(v0, eval_set, metric), item_scores(v1, eval_set, metric)
    if not all(c in s for c in (a, b) for s in (s0, s1)):
        return None
    m, al = _margin_alpha(study, metric, None, None)
    c = contrast(_sub(s1[a], s0[a]), _sub(s1[b], s0[b]), metric, margin=m, alpha=al, n_boot=n_boot)
    if c is None:
        return None
    return {"a": a, "b": b, "eval_set": eval_set, "capacity": capacity, "steps": list(steps), **c}


def change_with_capacity(
    study: Study,
    eval_set: str,
    a: str,
    b: str,
    metric: str,
    capacities: tuple[str, str],
    step: int | None = None,
    n_boot: int = 2000,
) -> dict[str, Any] | None:
    """How ``a - b`` changes from ``capacities[0]`` to ``capacities[1]`` (each at ``step``,
    default: its last step): ``(a - b)`` at the second minus ``(a - b)`` at the first.
    ``outcome`` "better" = the difference grew (in ``a``'s favour)."""
    effects = []
    for cap in capacities:
        st = step if step is not None else (study.steps(cap) or [-1])[-1]
        e = effect_scores(study, eval_set, a, b, metric, cap, st)
        if e is None:
            return None
        effects.append(e)
    m, al = _margin_alpha(study, metric, None, None)
    c = contrast(effects[1], effects[0], metric, margin=m, alpha=al, n_boot=n_boot)
    if c is None:
        return None
    return {"a": a, "b": b, "eval_set": eval_set, "capacities": list(capacities), "step": step, **c}


def compare_capacities(
    study: Study,
    eval_set: str,
    condition: str,
    metric: str,
    capacities: tuple[str, str],
    n_boot: int = 2000,
) -> dict[str, Any] | None:
    """One condition at ``capacities[1]`` minus at ``capacities[0]``, each at its last step
    (independent runs; items paired)."""
    scores = []
    for cap in capacities:
        sc = item_scores(study.view(cap), eval_set, metric).get(condition)
        if sc is None:
            return None
        scores.append(sc)
    m, al = _margin_alpha(study, metric, None, None)
    c = contrast(scores[1], scores[0], metric, margin=m, alpha=al, n_boot=n_boot)
    if c is None:
        return None
    return {"a": condition, "b": condition, "eval_set": eval_set, "capacities": list(capacities), **c}


def compare_by_step(
    study: Study, eval_set: str, a: str, b: str, metric: str, capacity: str, n_boot: int = 2000
) -> list[dict[str, Any]]:
    """:func:`compare` of ``a`` and ``b`` at every evaluated step of ``capacity``."""
    out = []
    for st in study.steps(capacity):
        c = compare(study.view(capacity, st), eval_set, a, b, metric, n_boot=n_boot)
        if c is not None:
            out.append(c)
    return out


def curve_table(
    study: Study, eval_set: str, metric: str, capacity: str
) -> list[dict[str, Any]]:
    """Metric vs training steps at ``capacity``: per condition and step ``{condition, step,
    mean, lo, hi, sd, n_seeds, per_seed}`` (mean over seeds of the per-seed means, 95 % t
    interval over seeds)."""
    rows = []
    for st in study.steps(capacity):
        v = study.view(capacity, st)
        sm = seed_means(v, eval_set, metric)
        for c in v.conditions:
            per = sm.get(c, {})
            if not per:
                continue
            mean, lo, hi, sd = t_interval(list(per.values()))
            rows.append(
                {
                    "condition": c,
                    "step": st,
                    "mean": mean,
                    "lo": lo,
                    "hi": hi,
                    "sd": sd,
                    "n_seeds": len(per),
                    "per_seed": {int(k): float(x) for k, x in per.items()},
                }
            )
    return rows


def _band_means(summary: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """``{<band>: mean over the summary's systems of their band means, n_<band>: items}``."""
    out: dict[str, Any] = {}
    for band in BANDS:
        cells = [e for e in summary["table"] if e["band"] == band]
        out[band] = finite_mean([e.get(metric, math.nan) for e in cells]) if cells else math.nan
        out[f"n_{band}"] = max((e["n"] for e in cells), default=0)
    return out


def band_table(study: Study, eval_set: str, metric: str) -> list[dict[str, Any]]:
    """Per condition (mean over seeds of per-seed band means) and baseline:
    ``{name, <band>: mean, n_<band>}``; bands and band means from
    :func:`dereverb.evaluation.report.summarize` (each seed one system). One capacity (a view)."""
    study._single()
    rows = []
    for c in study.conditions:
        scored = [
            {**x, "system": str(r["seed"])}
            for r in study.runs(c)
            for x in r.get("rows", {}).get(eval_set, [])
        ]
        if scored:
            summary = summarize(scored, references=(), metrics=(metric,))
            rows.append({"name": c, **_band_means(summary, metric)})
    for name, brows in baseline_rows(study, eval_set).items():
        summary = summarize(
            [{**x, "system": name} for x in brows], references=(), metrics=(metric,)
        )
        rows.append({"name": f"({name})", **_band_means(summary, metric)})
    return rows


def baseline_rows(study: Study, eval_set: str) -> dict[str, list[dict[str, Any]]]:
    if not study.baselines:
        return {}
    return dict(study.baselines.get("rows", {}).get(eval_set, {}))


def baseline_means(study: Study, eval_set: str) -> dict[str, dict[str, float]]:
    return {
        n: {m: finite_mean([_val(x.get(m)) for x in rows]) for m in METRICS}
        for n, rows in baseline_rows(study, eval_set).items()
    }


# ============================================================================ training curves
def training_curves(
    study: Study, tags: Sequence[str] = ("train/loss", "val/loss", "val/stoi", "val/pesq")
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{run_id: {tag: [(step, value), ...]}}`` read from each run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in study.results:
        logdir = study.tb_dir(r["run_id"])
        if not logdir.is_dir():
            continue
        ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
        ea.Reload()
        have = set(ea.Tags().get("scalars", []))
        out[r["run_id"]] = {
            t: [(int(e.step), float(e.value)) for e in ea.Scalars(t)] for t in tags if t in have
        }
    return out


def mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Average curves over seeds at the steps all of them have: ``(steps, values)``."""
    if not curves:
        return np.array([]), np.array([])
    common = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    vals = [np.array([dict(c)[s] for s in common]) for c in curves]
    return np.array(common), np.mean(vals, axis=0)
