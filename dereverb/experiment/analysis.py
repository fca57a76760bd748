"""A finished study folder's numbers: per-condition scores, paired comparisons, the answer's family.

Everything is computed from the runs' ``result.json`` files (per-item scores at every evaluated
training step). Every comparison is made within one capacity at one training step.

- A condition's score at one capacity and step: the mean over seeds of the per-seed means over
  the evaluation items, with a 95 % Student-t interval over seeds.
- ``a`` minus ``b`` (:func:`compare`) is tested twice, on the items (each item's score averaged
  over the seeds both have, paired t over items) and on the seeds (Welch on the per-seed means);
  its p-value is the larger of the two (both must reject) and its interval the hull of the two
  95 % intervals.
- The answer (:func:`answer_family`): every colour-image condition against each plain input at
  each capacity's last step, on the pre-stated primary metric (PESQ-WB) only; the p-values are
  Holm-corrected over that family, per evaluation set. ``better`` / ``worse`` = corrected p below
  ``alpha``; STOI and ESTOI are reported beside it, uncorrected, and decide nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from dereverb.experiment.config import EVAL_SETS
from dereverb.experiment.files import BASELINES_JSON, RESULT, RUNS, STUDY_JSON, read_json
from dereverb.signals.metrics import METRICS

PRIMARY = "pesq"
SECONDARY: tuple[str, ...] = ("stoi", "estoi")
SET_TITLES = {"sim": "simulated rooms", "measured": "measured rooms"}
LM = "log_magnitude"
#: The plain inputs a colour image is measured against in the answer (target log_magnitude).
BASES: dict[str, str] = {
    f"log_magnitude@{LM}": "the log magnitude",
    f"grayscale@{LM}": "the grayscale image",
    f"magnitude@{LM}": "the raw magnitude",
}
#: ``{seed: {item id: value}}``: one condition's scores.
Scores = dict[int, dict[str, float]]


@dataclass
class Study:
    """A study folder: ``meta`` (study.json), the finished ``results`` (result.json dicts) and
    ``baselines`` (baselines.json or None); ``conditions`` in the study config's order."""

    folder: Path
    meta: dict[str, Any]
    results: list[dict[str, Any]]
    baselines: dict[str, Any] | None = None
    conditions: list[str] = field(default_factory=list)
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def reference(self) -> str:
        return str(self.meta.get("reference", f"log_magnitude@{LM}"))

    @property
    def alpha(self) -> float:
        return float((self.meta.get("analysis") or {}).get("alpha", 0.05))

    @property
    def eval_sets(self) -> list[str]:
        have = {s for r in self.results for s in r["rows"]}
        return [s for s in EVAL_SETS if s in have]

    @property
    def capacities(self) -> list[str]:
        """Capacities with finished runs, in the study config's order."""
        present = {r["capacity"] for r in self.results}
        return [c for c in self.meta.get("capacities", {}) if c in present] + sorted(
            present - set(self.meta.get("capacities", {}))
        )

    def steps(self, capacity: str | None = None) -> list[int]:
        """The evaluated steps of the runs (of ``capacity``), ascending."""
        return sorted({int(s["step"]) for r in self.results if capacity in (None, r["capacity"]) for s in r["steps"]})

    def runs(self, condition: str, capacity: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.results if r["condition"] == condition and r["capacity"] == capacity),
                      key=lambda r: r["seed"])

    def planned(self) -> list[str]:
        return [p["run_id"] for p in self.meta.get("plan", [])]

    def missing(self) -> list[str]:
        have = {r["run_id"] for r in self.results}
        return [r for r in self.planned() if r not in have]

    def scores(self, eval_set: str, metric: str, capacity: str, step: int) -> dict[str, Scores]:
        """``{condition: {seed: {item id: value}}}`` at ``capacity`` and ``step`` (NaN: no score)."""
        key = (eval_set, metric, capacity, step)
        if key not in self.memo:
            out: dict[str, Scores] = {}
            for r in self.results:
                at = next((s for s in r["steps"] if s["step"] == step), None) if r["capacity"] == capacity else None
                if at is not None and eval_set in at["rows"]:
                    out.setdefault(r["condition"], {})[int(r["seed"])] = {
                        str(x["id"]): math.nan if x.get(metric) is None else float(x[metric]) for x in at["rows"][eval_set]
                    }
            self.memo[key] = out
        return self.memo[key]


def load_study(folder: str | os.PathLike) -> Study:
    """Read a study folder written by ``python -m dereverb.study``."""
    root = Path(folder)
    meta = read_json(root / STUDY_JSON)
    if meta is None:
        raise FileNotFoundError(f"{root}: no study.json; run python -m dereverb.study first (or pass the study folder)")
    results = [r for p in sorted((root / RUNS).glob(f"*/{RESULT}")) if (r := read_json(p)) is not None]
    order = [f"{a}@{t}" for a, arm in meta.get("arms", {}).items() for t in arm.get("targets", [LM])]
    present = {r["condition"] for r in results}
    conditions = [c for c in order if c in present] + sorted(present - set(order))
    return Study(root, meta, results, read_json(root / BASELINES_JSON), conditions)


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def interval(values: Sequence[float]) -> dict[str, float]:
    """``{mean, lo, hi, sd}``: the mean of the finite values with a 95 % t interval."""
    a = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if a.size < 2:
        return {"mean": float(a.mean()) if a.size else math.nan, "lo": math.nan, "hi": math.nan, "sd": math.nan}
    ci = stats.ttest_1samp(a, 0.0).confidence_interval(0.95)
    return {"mean": float(a.mean()), "lo": float(ci.low), "hi": float(ci.high), "sd": float(a.std(ddof=1))}


def summary(study: Study, eval_set: str, capacity: str, step: int) -> list[dict[str, Any]]:
    """One row per condition: ``condition, seeds`` and per metric ``{mean, lo, hi, sd}`` of the
    per-seed means (95 % t interval over seeds)."""
    rows = []
    for c in study.conditions:
        per = {m: study.scores(eval_set, m, capacity, step).get(c, {}) for m in METRICS}
        if per[METRICS[0]]:
            rows.append({"condition": c, "seeds": sorted(per[METRICS[0]]),
                         **{m: interval([finite_mean(list(v.values())) for v in per[m].values()]) for m in METRICS}})
    return rows


def baseline_means(study: Study, eval_set: str) -> dict[str, dict[str, float]]:
    """``{baseline: {metric: mean over items}}``."""
    rows = ((study.baselines or {}).get("rows") or {}).get(eval_set, {})
    return {n: {m: finite_mean([math.nan if x.get(m) is None else x[m] for x in rs]) for m in METRICS}
            for n, rs in rows.items()}


def compare(study: Study, eval_set: str, a: str, b: str, metric: str, capacity: str, step: int) -> dict[str, Any] | None:
    """``a`` minus ``b`` at ``capacity`` and ``step`` (module docstring): ``delta``, ``lo, hi`` (hull
    of the item- and seed-level 95 % intervals), ``p`` (the larger p-value), the parts
    ``p_items, p_seeds``, ``seeds``, ``n_items``. None when either has no runs there."""
    sc = study.scores(eval_set, metric, capacity, step)
    if a not in sc or b not in sc or not (seeds := sorted(set(sc[a]) & set(sc[b]))):
        return None
    x, y = sc[a], sc[b]
    items = sorted(set.intersection(*(set(x[s]) & set(y[s]) for s in seeds)))
    va = np.array([finite_mean([x[s][i] for s in seeds]) for i in items])
    vb = np.array([finite_mean([y[s][i] for s in seeds]) for i in items])
    ok = np.isfinite(va) & np.isfinite(vb)
    ma = [finite_mean([x[s][i] for i in items]) for s in seeds]
    mb = [finite_mean([y[s][i] for i in items]) for s in seeds]
    tests = []
    if ok.sum() >= 2 and len(seeds) >= 2:
        tests = [stats.ttest_rel(va[ok], vb[ok]), stats.ttest_ind(ma, mb, equal_var=False)]
    cis = [t.confidence_interval(0.95) for t in tests]
    ps = [float(t.pvalue) for t in tests]
    finite = tests and all(math.isfinite(p) for p in ps)
    return {
        "a": a, "b": b, "eval_set": eval_set, "metric": metric, "capacity": capacity, "step": step,
        "delta": float(np.mean(va[ok] - vb[ok])) if ok.any() else math.nan,
        "lo": float(min(c.low for c in cis)) if finite else math.nan,
        "hi": float(max(c.high for c in cis)) if finite else math.nan,
        "p": max(ps) if finite else math.nan,
        "p_items": ps[0] if tests else math.nan,
        "p_seeds": ps[1] if tests else math.nan,
        "seeds": seeds,
        "n_items": int(ok.sum()),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN counts as 1: a test that could not be made)."""
    p = np.nan_to_num(np.asarray(pvalues, dtype=np.float64), nan=1.0)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out.tolist()


def colour_conditions(study: Study) -> list[str]:
    """Conditions whose input is a colour image (a colormap, or an image codec on one)."""
    arms = study.meta.get("arms", {})

    def colour(arm: dict[str, Any]) -> bool:
        kw = arm.get("representation_kwargs") or {}
        return arm.get("representation") == "colormap" or (arm.get("representation") == "image_codec" and kw.get("base") == "colormap")

    return [c for c in study.conditions if colour(arms.get(c.split("@")[0], {}))]


def answer_family(study: Study, eval_set: str) -> list[dict[str, Any]]:
    """The answer's comparisons on one evaluation set: every colour-image condition minus each of
    :data:`BASES` at each capacity's last step. Each is its primary-metric :func:`compare` with
    ``p_holm`` (Holm over the family), ``outcome`` (``better`` / ``worse`` / ``undecided``) and
    ``secondary`` (the same comparison on STOI and ESTOI, uncorrected)."""
    family = []
    for base in BASES:
        for c in colour_conditions(study):
            for cap in study.capacities:
                step = study.steps(cap)[-1]
                if (comp := compare(study, eval_set, c, base, PRIMARY, cap, step)) is not None:
                    comp["secondary"] = {m: compare(study, eval_set, c, base, m, cap, step) for m in SECONDARY}
                    family.append(comp)
    for comp, p in zip(family, holm([c["p"] for c in family]), strict=True):
        decided = p < study.alpha and math.isfinite(comp["delta"])
        comp.update(p_holm=p, outcome=("better" if comp["delta"] > 0 else "worse") if decided else "undecided")
    return family


def differences(study: Study, eval_set: str) -> list[dict[str, Any]]:
    """Every condition minus the reference at every capacity and evaluated step, on every metric
    (exploratory: uncorrected)."""
    return [
        comp
        for cap in study.capacities
        for step in study.steps(cap)
        for c in study.conditions
        if c != study.reference
        for m in METRICS
        if (comp := compare(study, eval_set, c, study.reference, m, cap, step)) is not None
    ]


def runtime(study: Study) -> dict[str, Any]:
    """Wall time of the sessions and the mean training / evaluation seconds per run, per capacity."""
    sessions = study.meta.get("sessions", [])
    per_cap = {}
    for cap in study.capacities:
        rs = [r for r in study.results if r["capacity"] == cap]
        per_cap[cap] = {"runs": len(rs), "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])),
                        "eval_seconds_mean": float(np.mean([r["eval_seconds"] for r in rs])),
                        "parameters": sorted({int(r.get("parameters", 0)) for r in rs})}
    return {
        "sessions": len(sessions),
        "wall_seconds": float(sum(s.get("wall_seconds", 0.0) for s in sessions)),
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in study.results)),
        "per_capacity": per_cap,
    }
