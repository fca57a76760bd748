"""A finished study folder's numbers: the runs' scores, their statistics and training curves.

Everything is computed from the runs' ``result.json`` files (per-item scores) and TensorBoard
events. Statistics (intervals and tests from :mod:`dereverb.evaluation.intervals`, T60 bands
from :mod:`dereverb.evaluation.report`):

- per condition (arm @ target) and seed: the mean over the evaluation items (NaN ignored);
  per condition: the mean of those per-seed means, a 95 % t interval over seeds
  (:func:`~dereverb.evaluation.intervals.t_interval`) and the seed-to-seed spread ``sd``
  (standard deviation of the per-seed means, ddof 1);
- differences between two conditions: each item's score is first averaged over the seeds both
  conditions have, then the items are paired and resampled (percentile bootstrap,
  :func:`~dereverb.evaluation.intervals.bootstrap_diff`), i.e. pooled over seeds, paired by item;
- "beyond seed noise": the bootstrap interval excludes 0 **and** ``|delta|`` exceeds the noise
  threshold ``t(0.975, df) * se_seed`` of a Welch t-test on the per-seed means
  (:func:`~dereverb.evaluation.intervals.welch_test`), with
  ``se_seed = sqrt(sd_a**2 / n_a + sd_b**2 / n_b)`` (the spread the difference of two
  seed-averaged means would have from initialisation alone).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.evaluation.intervals import bootstrap_diff, t_interval, welch_test
from dereverb.evaluation.report import BANDS, summarize
from dereverb.experiment.config import EVAL_SETS
from dereverb.experiment.files import (
    BASELINES_JSON,
    RESULT,
    RUNS,
    STUDY_JSON,
    TB_VERSION,
    read_json,
    run_dir,
)
from dereverb.signals.metrics import METRICS

#: The metrics the comparisons, verdicts and figures use (the tables show every metric).
PRIMARY: tuple[str, ...] = ("pesq", "stoi", "estoi")
SET_TITLES = {"sim": "simulated test rooms", "measured": "measured rooms"}
#: Confidence of the Welch test that decides "beyond seed noise".
NOISE_CONFIDENCE = 0.95


# ============================================================================ loading
@dataclass
class Study:
    """A study folder: ``meta`` (study.json), finished ``results`` (result.json dicts) and the
    baselines (``baselines.json`` or None)."""

    folder: Path
    meta: dict[str, Any]
    results: list[dict[str, Any]]
    baselines: dict[str, Any] | None = None
    conditions: list[str] = field(default_factory=list)

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

    def planned(self) -> list[str]:
        """Run ids of the full matrix in study.json (arms x targets x seeds)."""
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
    results = [r for r in found if r is not None]  # a hand-edited, broken file is skipped
    order = [
        f"{a}@{t}"
        for a, arm in meta.get("arms", {}).items()
        for t in arm.get("targets", ["log_magnitude"])
    ]
    present = {r["condition"] for r in results}
    conditions = [c for c in order if c in present] + sorted(present - set(order))
    return Study(root, meta, results, read_json(root / BASELINES_JSON), conditions)


def runtime(study: Study) -> dict[str, Any]:
    """Wall time of the sessions and the runs' training / evaluation / CPU seconds."""
    sessions = study.meta.get("sessions", [])
    res = study.results
    return {
        "sessions": len(sessions),
        "wall_seconds": float(sum(s.get("wall_seconds", 0.0) for s in sessions)),
        "run_seconds": float(sum(r["train_seconds"] + r["eval_seconds"] for r in res)),
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in res])) if res else math.nan,
        "eval_seconds_mean": float(np.mean([r["eval_seconds"] for r in res])) if res else math.nan,
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in res)),
    }


# ============================================================================ statistics
def _val(v: Any) -> float:
    return math.nan if v is None else float(v)


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def item_scores(study: Study, eval_set: str, metric: str) -> dict[str, dict[int, dict[str, float]]]:
    """``{condition: {seed: {item id: value}}}`` (NaN for failed scores)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in study.results:
        rows = r.get("rows", {}).get(eval_set)
        if rows is None:
            continue
        out.setdefault(r["condition"], {})[int(r["seed"])] = {
            str(x["id"]): _val(x.get(metric)) for x in rows
        }
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


def compare(
    study: Study, eval_set: str, a: str, b: str, metric: str, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any] | None:
    """Condition ``a`` minus condition ``b`` on ``metric`` (see the module docstring); None when
    either has no finished run. Keys: ``delta, lo, hi`` (bootstrap), ``n_items``, ``seeds``,
    ``sd_a, sd_b, se_seed``, ``welch_df``, ``noise_threshold`` (Welch t quantile x se_seed),
    ``ci_excludes_zero``, ``beyond_noise`` (None with < 2 seeds or no finite difference)."""
    scores = item_scores(study, eval_set, metric)
    if a not in scores or b not in scores:
        return None
    seeds = sorted(set(scores[a]) & set(scores[b]))
    if not seeds:
        return None
    items = sorted(
        set.intersection(*(set(scores[a][s]) for s in seeds), *(set(scores[b][s]) for s in seeds))
    )
    va = np.array([finite_mean([scores[a][s][i] for s in seeds]) for i in items])
    vb = np.array([finite_mean([scores[b][s][i] for s in seeds]) for i in items])
    delta, lo, hi = bootstrap_diff(va, vb, n=n_boot, seed=seed)
    ma = [finite_mean(list(scores[a][s].values())) for s in seeds]
    mb = [finite_mean(list(scores[b][s].values())) for s in seeds]
    noise = welch_test(ma, mb, confidence=NOISE_CONFIDENCE)
    excl = bool(math.isfinite(lo) and (lo > 0 or hi < 0))
    beyond = (
        None
        if not math.isfinite(noise.threshold) or not math.isfinite(delta)
        else bool(excl and abs(delta) > noise.threshold)
    )
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "eval_set": eval_set,
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
        "per_seed_delta": [x - y for x, y in zip(ma, mb, strict=True)],
    }


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
    :func:`dereverb.evaluation.report.summarize` (each seed one system)."""
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
