"""The representation study's numbers, figures and ``REPORT.md``, from a study folder.

Everything is computed from the runs' ``result.json`` files (per-item scores) and TensorBoard
events; nothing in the report is written by hand. Statistics:

- per condition (arm @ target) and seed: the mean over the evaluation items (NaN ignored);
  per condition: the mean of those per-seed means, a 95 % t interval over seeds and the
  seed-to-seed spread ``sd`` (standard deviation of the per-seed means, ddof 1);
- differences between two conditions: each item's score is first averaged over the seeds both
  conditions have, then the items are paired and resampled (percentile bootstrap,
  :func:`dereverb.evaluation.bootstrap.bootstrap_diff`), i.e. pooled over seeds, paired by item;
- "beyond seed noise": the bootstrap interval excludes 0 **and** ``|delta|`` exceeds the noise
  threshold ``t(0.975, df) * se_seed`` of a Welch t-test on the per-seed means, with
  ``se_seed = sqrt(sd_a**2 / n_a + sd_b**2 / n_b)`` (the spread the difference of two
  seed-averaged means would have from initialisation alone).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.atomic import atomic_path, write_atomic
from dereverb.evaluation.bootstrap import bootstrap_diff

METRICS: tuple[str, ...] = ("pesq", "stoi", "estoi", "si_sdr")
PRIMARY: tuple[str, ...] = ("pesq", "stoi", "estoi")
LABELS = {"pesq": "PESQ-WB", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)"}
DIGITS = {"pesq": 3, "stoi": 4, "estoi": 4, "si_sdr": 2}
BANDS: tuple[str, ...] = ("<=0.4", "0.4-0.7", "0.7-1.0", ">1.0")
SET_TITLES = {"sim": "simulated test rooms", "measured": "measured rooms"}
NOISE_CONFIDENCE = 0.95
FIGURES = (
    "summary_sim.png",
    "summary_measured.png",
    "diffs_sim.png",
    "diffs_measured.png",
    "bands.png",
    "curves.png",
    "seed_spread.png",
)


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
        return [s for s in ("sim", "measured") if s in sets]

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


def load_study(folder: str | os.PathLike) -> Study:
    """Read a study folder written by :mod:`dereverb.study`."""
    root = Path(folder)
    meta_path = root / "study.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{root}: no study.json; run python -m dereverb.study first (or pass the study folder)"
        )
    meta = json.loads(meta_path.read_text())
    results = []
    for p in sorted((root / "runs").glob("*/result.json")):
        try:
            results.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue  # cannot happen with atomic writes; a hand-edited file is skipped
    bl_path = root / "baselines.json"
    baselines = json.loads(bl_path.read_text()) if bl_path.is_file() else None
    order = [
        f"{a}@{t}"
        for a, arm in meta.get("arms", {}).items()
        for t in arm.get("targets", ["log_magnitude"])
    ]
    present = {r["condition"] for r in results}
    conditions = [c for c in order if c in present] + sorted(present - set(order))
    return Study(root, meta, results, baselines, conditions)


# ============================================================================ statistics
def _val(v: Any) -> float:
    return math.nan if v is None else float(v)


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


def _nanmean(values: Sequence[float]) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def seed_means(study: Study, eval_set: str, metric: str) -> dict[str, dict[int, float]]:
    """``{condition: {seed: mean over items}}``."""
    return {
        c: {s: _nanmean(list(v.values())) for s, v in seeds.items()}
        for c, seeds in item_scores(study, eval_set, metric).items()
    }


def t_interval(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, sd)`` of ``values`` with a Student-t interval; lo/hi/sd NaN for n < 2."""
    a = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(a.mean())
    if a.size < 2:
        return mean, math.nan, math.nan, math.nan
    from scipy.stats import t

    sd = float(a.std(ddof=1))
    half = float(t.ppf(0.5 + confidence / 2, a.size - 1)) * sd / math.sqrt(a.size)
    return mean, mean - half, mean + half, sd


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
    ``ci_excludes_zero``, ``beyond_noise`` (None with < 2 seeds)."""
    scores = item_scores(study, eval_set, metric)
    if a not in scores or b not in scores:
        return None
    seeds = sorted(set(scores[a]) & set(scores[b]))
    if not seeds:
        return None
    items = sorted(
        set.intersection(*(set(scores[a][s]) for s in seeds), *(set(scores[b][s]) for s in seeds))
    )
    with np.errstate(all="ignore"):
        va = np.array([_nanmean([scores[a][s][i] for s in seeds]) for i in items])
        vb = np.array([_nanmean([scores[b][s][i] for s in seeds]) for i in items])
    delta, lo, hi = bootstrap_diff(va, vb, n=n_boot, seed=seed)
    ma = [_nanmean(list(scores[a][s].values())) for s in seeds]
    mb = [_nanmean(list(scores[b][s].values())) for s in seeds]
    n = len(seeds)
    sd_a = float(np.std(ma, ddof=1)) if n > 1 else math.nan
    sd_b = float(np.std(mb, ddof=1)) if n > 1 else math.nan
    se = math.sqrt(sd_a**2 / n + sd_b**2 / n) if n > 1 else math.nan
    df, threshold = welch_threshold(sd_a, sd_b, n)
    excl = bool(math.isfinite(lo) and (lo > 0 or hi < 0))
    beyond = (
        None
        if not math.isfinite(threshold) or not math.isfinite(delta)
        else bool(excl and abs(delta) > threshold)
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
        "sd_a": sd_a,
        "sd_b": sd_b,
        "se_seed": se,
        "welch_df": df,
        "noise_threshold": threshold,
        "ci_excludes_zero": excl,
        "beyond_noise": beyond,
        "per_seed_delta": [x - y for x, y in zip(ma, mb, strict=True)],
    }


def welch_threshold(
    sd_a: float, sd_b: float, n: int, confidence: float = NOISE_CONFIDENCE
) -> tuple[float, float]:
    """``(df, threshold)``: Welch-Satterthwaite degrees of freedom for two means of ``n`` seeds
    each, and the difference they must exceed to be significant at ``1 - confidence``
    (``t(0.5 + confidence / 2, df) * se``); NaN with fewer than 2 seeds."""
    if n < 2 or not (math.isfinite(sd_a) and math.isfinite(sd_b)):
        return math.nan, math.nan
    va, vb = sd_a**2 / n, sd_b**2 / n
    se = math.sqrt(va + vb)
    if se == 0:
        return float(2 * (n - 1)), 0.0
    from scipy.stats import t

    df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    return float(df), float(t.ppf(0.5 + confidence / 2, df)) * se


def band_table(study: Study, eval_set: str, metric: str) -> list[dict[str, Any]]:
    """Per condition (mean over seeds of per-seed band means) and baseline: ``{name, <band>: mean, n_<band>}``."""
    bands_of: dict[str, str] = {}
    for r in study.results:
        for x in r.get("rows", {}).get(eval_set, []):
            if x.get("band") in BANDS:
                bands_of[str(x["id"])] = x["band"]
    scores = item_scores(study, eval_set, metric)
    rows = []
    for c in study.conditions:
        if c not in scores:
            continue
        row: dict[str, Any] = {"name": c}
        for band in BANDS:
            ids = [i for i, b in bands_of.items() if b == band]
            per_seed = (
                [_nanmean([v[i] for i in ids if i in v]) for v in scores[c].values()] if ids else []
            )
            row[band] = _nanmean(per_seed) if per_seed else math.nan
            row[f"n_{band}"] = len(ids)
        rows.append(row)
    for name, brows in baseline_rows(study, eval_set).items():
        row = {"name": f"({name})"}
        for band in BANDS:
            vals = [_val(x.get(metric)) for x in brows if x.get("band") == band]
            row[band], row[f"n_{band}"] = _nanmean(vals) if vals else math.nan, len(vals)
        rows.append(row)
    return rows


def baseline_rows(study: Study, eval_set: str) -> dict[str, list[dict[str, Any]]]:
    if not study.baselines:
        return {}
    return dict(study.baselines.get("rows", {}).get(eval_set, {}))


def baseline_means(study: Study, eval_set: str) -> dict[str, dict[str, float]]:
    return {
        n: {m: _nanmean([_val(x.get(m)) for x in rows]) for m in METRICS}
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
        logdir = study.folder / "runs" / r["run_id"] / "tb" / "version_0"
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


# ============================================================================ verdicts
def _cond(arm: str, target: str) -> str:
    return f"{arm}@{target}"


def mechanisms(study: Study) -> list[dict[str, Any]]:
    """The four mechanism questions as lists of (a, b) comparisons (only conditions the study has)."""
    lm = "log_magnitude"
    have = set(study.conditions)
    fixed = ["gray_rgb", "rgb_turbo", "rgb_viridis", "rgb_jet"]
    specs = [
        (
            "a",
            "Hidden preprocessing: magnitude vs log_magnitude vs grayscale (target log_magnitude)",
            [
                (_cond("magnitude", lm), _cond("log_magnitude", lm)),
                (_cond("grayscale", lm), _cond("log_magnitude", lm)),
                (_cond("magnitude", lm), _cond("grayscale", lm)),
            ],
        ),
        (
            "b",
            "Fixed 1->3 expansion vs learned 1x1 (target log_magnitude)",
            [(_cond(f, lm), _cond("grayscale", lm)) for f in fixed]
            + [(_cond("grayscale_learned_expansion", lm), _cond("grayscale", lm))]
            + [(_cond(f, lm), _cond("grayscale_learned_expansion", lm)) for f in fixed]
            + [(_cond(f, lm), _cond("gray_rgb", lm)) for f in fixed[1:]],
        ),
        (
            "c",
            "RGB output (target same): long-arc colormaps (jet, turbo) vs gray / viridis",
            [
                (_cond(x, "same"), _cond(y, "same"))
                for x in ("rgb_jet", "rgb_turbo")
                for y in ("gray_rgb", "rgb_viridis")
            ]
            + [(_cond(x, "same"), _cond(x, lm)) for x in fixed],
        ),
        (
            "d",
            "Lossy saving: JPEG q75 and 128x128 resize vs lossless turbo",
            [
                (_cond(x, t), _cond("rgb_turbo", t))
                for t in (lm, "same")
                for x in ("rgb_turbo_jpeg", "rgb_turbo_resized")
            ],
        ),
    ]
    out = []
    for key, title, pairs in specs:
        kept = [(a, b) for a, b in pairs if a in have and b in have]
        out.append(
            {
                "key": key,
                "title": title,
                "pairs": kept,
                "missing": [(a, b) for a, b in pairs if (a, b) not in kept],
            }
        )
    return out


def _describe(comps: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(outcome word, sentence) for one pair's comparisons over the primary metrics."""
    better = [c for c in comps if c["beyond_noise"] and c["delta"] > 0]
    worse = [c for c in comps if c["beyond_noise"] and c["delta"] < 0]
    unknown = all(c["beyond_noise"] is None for c in comps)
    a, b = comps[0]["a"], comps[0]["b"]
    if unknown:
        return "unknown", f"`{a}` vs `{b}`: seed noise unknown (fewer than 2 seeds)"
    parts = []
    if better:
        parts.append(
            "better on "
            + ", ".join(f"{LABELS[c['metric']]} ({_sgn(c['delta'], c['metric'])})" for c in better)
        )
    if worse:
        parts.append(
            "worse on "
            + ", ".join(f"{LABELS[c['metric']]} ({_sgn(c['delta'], c['metric'])})" for c in worse)
        )
    if not parts:
        return "none", f"`{a}` vs `{b}`: no difference beyond seed noise"
    word = "better" if better and not worse else "worse" if worse and not better else "mixed"
    return word, f"`{a}` is {' and '.join(parts)} than `{b}` beyond seed noise"


def rgb_conditions(study: Study) -> list[str]:
    """Conditions whose input is a colour image (colormap, or an image codec on a colormap)."""
    arms = study.meta.get("arms", {})
    out = []
    for c in study.conditions:
        spec = arms.get(c.split("@")[0], {})
        rep, kw = spec.get("representation"), spec.get("representation_kwargs") or {}
        if rep == "colormap" or (rep == "image_codec" and kw.get("base") == "colormap"):
            out.append(c)
    return out


def _deltas(comps: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{LABELS[c['metric']]} {_sgn(c['delta'], c['metric'])}" for c in comps)


def answer(study: Study, eval_set: str, n_boot: int = 2000) -> list[str]:
    """The title question in numbers: which colour-image conditions beat the raw magnitude and
    the reference beyond seed noise (any primary metric), and which are worse."""
    lines = []
    rgb = rgb_conditions(study)
    for base, label in (
        ("magnitude@log_magnitude", "the raw magnitude array"),
        (study.reference, "the reference"),
    ):
        if base not in study.conditions or not rgb:
            continue
        better, worse, tied = [], [], []
        for c in rgb:
            comps = [compare(study, eval_set, c, base, m, n_boot=n_boot) for m in PRIMARY]
            comps = [x for x in comps if x is not None]
            up = [x for x in comps if x["beyond_noise"] and x["delta"] > 0]
            down = [x for x in comps if x["beyond_noise"] and x["delta"] < 0]
            if up:
                better.append(f"`{c}` ({_deltas(up)})")
            if down:
                worse.append(f"`{c}` ({_deltas(down)})")
            if not up and not down:
                tied.append(f"`{c}`")
        lines.append(
            f"- vs `{base}` ({label}): {len(better)} of {len(rgb)} colour-image conditions better beyond seed "
            f"noise on at least one of {', '.join(LABELS[m] for m in PRIMARY)}"
            + (f": {'; '.join(better)}" if better else "")
            + f"; {len(worse)} worse"
            + (f": {'; '.join(worse)}" if worse else "")
            + f"; {len(tied)} within noise"
            + (f": {', '.join(tied)}" if tied else "")
            + "."
        )
    return lines


def verdicts(study: Study, eval_set: str, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Per mechanism: its comparisons (primary metrics), one sentence per pair and a headline."""
    out = []
    for mech in mechanisms(study):
        pairs = []
        for a, b in mech["pairs"]:
            comps = [compare(study, eval_set, a, b, m, n_boot=n_boot) for m in PRIMARY]
            comps = [c for c in comps if c is not None]
            if not comps:
                continue
            word, sentence = _describe(comps)
            pairs.append(
                {"a": a, "b": b, "comparisons": comps, "outcome": word, "sentence": sentence}
            )
        beyond = [p for p in pairs if p["outcome"] in ("better", "worse", "mixed")]
        if not pairs:
            headline = "not tested: the conditions it needs have no finished runs"
        elif all(p["outcome"] == "unknown" for p in pairs):
            headline = "undecided: fewer than 2 seeds, so seed noise is unknown"
        elif not beyond:
            headline = (
                f"no effect detected: none of the {len(pairs)} comparisons differs beyond seed noise "
                f"on {', '.join(LABELS[m] for m in PRIMARY)}"
            )
        else:
            headline = (
                f"{len(beyond)} of {len(pairs)} comparisons differ beyond seed noise: "
                + "; ".join(p["sentence"] for p in beyond)
            )
        out.append({**mech, "eval_set": eval_set, "results": pairs, "headline": headline})
    return out


# ============================================================================ formatting
def _fmt(v: Any, metric: str) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{DIGITS[metric]}f}"


def _sgn(v: Any, metric: str) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):+.{DIGITS[metric]}f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
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
                f"{_fmt(r[m], m)} [{_fmt(r[m + '_lo'], m)}, {_fmt(r[m + '_hi'], m)}]"
                for m in METRICS
            ]
        )
    for name, means in baseline_means(study, eval_set).items():
        rows.append([f"({name})", "-"] + [_fmt(means[m], m) for m in METRICS])
    return _md_table(["condition", "seeds", *(LABELS[m] for m in METRICS)], rows)


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


def diffs_markdown(study: Study, eval_set: str, n_boot: int) -> str:
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
            mark = "**" if comp["beyond_noise"] else ""
            cells.append(
                f"{mark}{_sgn(comp['delta'], m)}{mark} [{_sgn(comp['lo'], m)}, {_sgn(comp['hi'], m)}] "
                f"(thr {_fmt(comp['noise_threshold'], m)})"
            )
            flags.append(comp["beyond_noise"])
        cells.append(
            "yes" if any(f for f in flags) else "unknown" if all(f is None for f in flags) else "no"
        )
        rows.append(cells)
    return _md_table(
        ["condition", *(f"Δ {LABELS[m]} [95% CI]" for m in PRIMARY), "beyond seed noise"], rows
    )


def verdict_markdown(vs: Sequence[Mapping[str, Any]]) -> str:
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
                    else f"{_sgn(c['delta'], m)} [{_sgn(c['lo'], m)}, {_sgn(c['hi'], m)}], thr {_fmt(c['noise_threshold'], m)}"
                )
            cells.append(p["outcome"])
            rows.append(cells)
        if rows:
            parts.append(
                _md_table(
                    ["comparison", *(f"Δ {LABELS[m]}" for m in PRIMARY), "beyond noise"], rows
                )
                + "\n"
            )
        if v["missing"]:
            parts.append(
                "Not compared (no finished runs): "
                + ", ".join(f"`{a}` − `{b}`" for a, b in v["missing"])
                + ".\n"
            )
    return "\n".join(parts)


def bands_markdown(study: Study, eval_set: str, metric: str) -> str:
    rows = band_table(study, eval_set, metric)
    bands = [b for b in BANDS if any(r.get(f"n_{b}", 0) for r in rows)]
    if not rows or not bands:
        return "(no items with a known T60)"
    n = {b: max(r.get(f"n_{b}", 0) for r in rows) for b in bands}
    body = [
        [f"`{r['name']}`" if not r["name"].startswith("(") else r["name"]]
        + [_fmt(r[b], metric) for b in bands]
        for r in rows
    ]
    return _md_table(["condition", *(f"T60 {b} s (n={n[b]})" for b in bands)], body)


def spread_markdown(study: Study, eval_set: str) -> str:
    rows = []
    for r in summary_table(study, eval_set):
        seeds = seed_means(study, eval_set, "pesq").get(r["condition"], {})
        rows.append(
            [f"`{r['condition']}`", str(r["n_seeds"])]
            + [_fmt(r[m + "_sd"], m) for m in PRIMARY]
            + [", ".join(f"{seeds[s]:.3f}" for s in sorted(seeds))]
        )
    return _md_table(
        ["condition", "seeds", *(f"σ {LABELS[m]}" for m in PRIMARY), "per-seed PESQ"], rows
    )


# ============================================================================ figures
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


# ============================================================================ the report
def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text)


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=100)


def _runtime(study: Study) -> dict[str, Any]:
    sessions = study.meta.get("sessions", [])
    res = study.results
    return {
        "sessions": len(sessions),
        "wall_seconds": float(sum(s.get("wall_seconds", 0.0) for s in sessions)),
        "run_seconds": float(sum(r["train_seconds"] + r["eval_seconds"] for r in res)),
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in res]))
        if res
        else math.nan,
        "eval_seconds_mean": float(np.mean([r["eval_seconds"] for r in res])) if res else math.nan,
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in res)),
    }


def _setup_markdown(study: Study) -> str:
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
    return _md_table(
        ["condition", "representation", "input expansion", "target", "U-Net parameters", "steps"],
        rows,
    )


def _load_note(session: Mapping[str, Any]) -> str:
    la = (session.get("machine") or {}).get("load_average")
    return f", load average {la[0]:.1f} at its start" if la else ""


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return (
        f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"
    )


def build_report(
    study: Study, report_command: str = "", n_boot: int | None = None
) -> tuple[str, dict[str, Any]]:
    """``(REPORT.md text, report.json dict)``; figures are referenced by their file names."""
    n_boot = int(n_boot or study.meta.get("evaluation", {}).get("n_boot", 2000))
    meta = study.meta
    sessions = meta.get("sessions", [])
    rt = _runtime(study)
    machine = next((s.get("machine") for s in reversed(sessions) if s.get("machine")), {}) or {}
    train = meta.get("train", {})
    data, model, trainer = train.get("data", {}), train.get("model", {}), train.get("trainer", {})
    ev = meta.get("evaluation", {})
    missing = study.missing()
    failed = {k: v for s in sessions for k, v in (s.get("failed") or {}).items() if k in missing}
    sets = study.eval_sets
    n_items = {s: len(study.results[0]["rows"].get(s, [])) for s in sets} if study.results else {}
    gpu = machine.get("gpu") or "no GPU"
    lines = [
        "# Representation study: can an RGB spectrogram beat the raw one?",
        "",
        f"Generated by `dereverb.experiment.report` from `{study.folder}` (profile **{meta.get('profile')}**, config "
        f"`{meta.get('config_path')}`). Every number below is computed from the runs' `result.json` files; "
        "re-running the report command regenerates this file and the figures.",
        "",
        "## How it was run",
        "",
    ]
    for s in sessions:
        if s.get("command"):
            lines.append(
                f"- `{s['command']}` — {s.get('id')}, {_hms(s.get('wall_seconds', 0.0))} wall, "
                f"{len(s.get('trained', []))} runs trained, {len(s.get('skipped', []))} reused, "
                f"{len(s.get('failed') or {})} failed"
                + _load_note(s)
                + (" (interrupted)" if s.get("interrupted") else "")
                + "".join(f"; {n}" for n in s.get("notes") or [])
            )
    if report_command:
        lines.append(f"- report: `{report_command}`")
    lines += [
        f"- machine: {machine.get('cpu_count')}-core CPU ({machine.get('cpu') or 'unknown model'}), {gpu}; "
        f"torch {machine.get('torch')}, Python {machine.get('python')}; shared with other jobs (load "
        f"averages above), {meta.get('jobs')} run(s) in parallel x {meta.get('threads')} torch thread(s)",
        f"- runtime: {_hms(rt['wall_seconds'])} wall over {rt['sessions']} session(s); per run "
        f"{rt['train_seconds_mean']:.0f} s training + {rt['eval_seconds_mean']:.0f} s evaluation on average "
        f"({rt['cpu_seconds'] / 60:.0f} CPU-min in total)",
        f"- runs: {len(study.results)} finished of {len(study.planned())} planned "
        f"({len(study.conditions)} conditions x seeds {meta.get('seeds')})",
    ]
    if missing:
        lines.append(
            f"- **missing runs ({len(missing)})**: "
            + ", ".join(f"`{m}`" for m in missing)
            + (
                f"; failed: {', '.join(failed)}"
                if failed
                else "; not run yet (the study was cut short)"
            )
        )
    lines += [
        "",
        "## Setup",
        "",
        f"- data: speech `{data.get('speech')}` (speaker-disjoint train/val/test splits), simulated shoebox rooms "
        f"T60 {data.get('room', {}).get('t60_range', '(default)')} s with disjoint train/val/test RIR banks "
        f"{data.get('rir_bank_sizes')}, {data.get('segment_seconds')}-s segments, batch {data.get('batch_size')}, "
        f"data seed {data.get('seed', 0)} (same items, same order for every run)",
        f"- model: U-Net base {model.get('base_channels')} channels, depth {model.get('depth')}, "
        f"residual={model.get('residual', True)}, {model.get('loss', 'l1')} loss in the target domain, AdamW lr "
        f"{model.get('lr')}, {model.get('scheduler', 'cosine')} schedule, {trainer.get('max_steps')} steps; phase "
        f"{model.get('phase', 'griffinlim-warm')} ({model.get('griffin_lim_iters', 32)} iterations)",
        "- residual: every arm uses the same setting. With `residual: true` the U-Net predicts a correction to "
        "its input expressed in the output domain; for target `log_magnitude` the skip is the input *decoded by "
        "its own representation*, so a lossy representation (8-bit, JPEG, resize, 80-dB clip) only passes on "
        "what it kept; for target `same` the skip is the input image itself (before the output activation).",
        "- seeds: `seed_everything` = network initialisation; the data seed is fixed, so the seed spread is "
        "initialisation noise only.",
        "- evaluation: the weights after the last step (`final.ckpt`), full inverse path, on "
        + ", ".join(f"{n_items.get(s, 0)} {SET_TITLES[s]} items" for s in sets)
        + f" ({ev.get('segment_seconds') or data.get('segment_seconds')} s each; measured = test-split speakers x "
        f"`{ev.get('measured_rirs')}`, rooms in turn). Baselines: {ev.get('baselines')}.",
        f"- statistics: mean over seeds of the per-seed means with a 95% Student-t interval over seeds; "
        f"differences: per-item scores averaged over seeds, paired by item, percentile bootstrap "
        f"({n_boot} resamples) — pooled over seeds; *beyond seed noise* = the bootstrap CI excludes 0 and "
        "|Δ| > thr = t(0.975, Welch df)·se_seed, se_seed = sqrt(σ_a²/n + σ_b²/n) from the σ of "
        "per-seed means (a Welch t-test on the per-seed means at 5%; `thr` in the tables).",
        "",
        _setup_markdown(study),
        "",
    ]
    if sets:
        lines += [f"## The question in numbers ({SET_TITLES[sets[0]]})", ""]
        lines += answer(study, sets[0], n_boot) or [
            "(the conditions needed for this summary have no finished runs)"
        ]
        lines += [
            "",
            "Per-mechanism comparisons follow; the measured-room section repeats everything on real rooms.",
            "",
        ]
    report_json: dict[str, Any] = {
        "folder": str(study.folder),
        "runtime": rt,
        "missing": missing,
        "sets": {},
    }
    for s in sets:
        vs = verdicts(study, s, n_boot=n_boot)
        report_json["sets"][s] = {
            "summary": summary_table(study, s),
            "baselines": baseline_means(study, s),
            "diffs": [
                compare(study, s, c, study.reference, m, n_boot=n_boot)
                for c in study.conditions
                if c != study.reference
                for m in PRIMARY
            ],
            "verdicts": [
                {k: v[k] for k in ("key", "title", "headline")}
                | {
                    "pairs": [
                        {
                            "a": p["a"],
                            "b": p["b"],
                            "outcome": p["outcome"],
                            "sentence": p["sentence"],
                        }
                        for p in v["results"]
                    ]
                }
                for v in vs
            ],
            "bands": {m: band_table(study, s, m) for m in PRIMARY},
        }
        title = SET_TITLES[s]
        lines += [
            f"## Results: {title}",
            "",
            f"Mean over seeds [95% t interval over seeds]; baselines in parentheses. Figure: `summary_{s}.png`.",
            "",
            summary_markdown(study, s),
            "",
            f"![summary {s}](summary_{s}.png)",
            "",
            f"### Differences to `{study.reference}` ({title})",
            "",
            "Δ = condition − reference, paired by item (seed-averaged scores), 95% bootstrap CI; thr = the "
            "seed-noise threshold (Welch t x se from the seed spread); **bold** = beyond seed noise.",
            "",
            diffs_markdown(study, s, n_boot),
            "",
            f"![differences {s}](diffs_{s}.png)",
            "",
            f"### Verdicts ({title})",
            "",
            verdict_markdown(vs),
        ]
    if "sim" in sets:
        lines += ["## Per T60 band (simulated test rooms)", ""]
        for m in PRIMARY:
            lines += [f"{LABELS[m]}:", "", bands_markdown(study, "sim", m), ""]
        lines += ["![bands](bands.png)", ""]
    if "measured" in sets:
        lines += [
            "Measured rooms by T60 band (PESQ-WB):",
            "",
            bands_markdown(study, "measured", "pesq"),
            "",
        ]
    lines += [
        "## Training curves",
        "",
        "Mean over seeds, read from each run's TensorBoard events. Losses are comparable only between conditions "
        "with target `log_magnitude` (same output domain); validation STOI/PESQ are comparable for all.",
        "",
        "![curves](curves.png)",
        "",
        "## Seed-to-seed spread (simulated test rooms)"
        if "sim" in sets
        else "## Seed-to-seed spread",
        "",
        "σ = standard deviation over seeds of the per-seed mean score.",
        "",
        spread_markdown(study, sets[0]) if sets else "(no runs)",
        "",
        "![seed spread](seed_spread.png)",
        "",
    ]
    return "\n".join(lines), report_json


def write_report(
    folder: str | os.PathLike,
    report_dir: str | os.PathLike | None = None,
    report_command: str = "",
    n_boot: int | None = None,
) -> Path:
    """Write ``REPORT.md``, ``report.json`` and the PNG figures into ``report_dir``
    (default ``<folder>/report``); returns the REPORT.md path."""
    study = load_study(folder)
    out = Path(report_dir) if report_dir is not None else Path(folder) / "report"
    out.mkdir(parents=True, exist_ok=True)
    text, data = build_report(study, report_command, n_boot)
    if study.results:
        for s in study.eval_sets:
            _save(fig_summary(study, s), out / f"summary_{s}.png")
            _save(fig_diffs(study, s, n_boot=int(n_boot or 2000)), out / f"diffs_{s}.png")
        if "sim" in study.eval_sets:
            _save(fig_bands(study, "sim"), out / "bands.png")
        _save(fig_curves(study), out / "curves.png")
        _save(fig_seed_spread(study, study.eval_sets[0]), out / "seed_spread.png")
    _write_text(
        out / "report.json",
        json.dumps(data, indent=1, default=_json_default, allow_nan=True) + "\n",
    )
    path = out / "REPORT.md"
    _write_text(path, text)
    return path


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return str(v)
