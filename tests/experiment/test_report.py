"""The study report: its numbers equal the result files', and the statistics and verdicts on
constructed results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dereverb.evaluation.intervals import t_interval
from dereverb.experiment import analysis, tables, verdicts
from dereverb.experiment.analysis import SET_TITLES, compare, load_study
from dereverb.experiment.report import write_report
from dereverb.signals.metrics import DIGITS, METRICS
from tests.experiment.studies import eval_sets, fake_study

REF = "log_magnitude@log_magnitude"


def _expected_mean(out: Path, condition: str, eval_set: str, metric: str) -> float:
    """Mean over seeds of the per-seed item means, straight from the result files."""
    per_seed = []
    for p in (out / "runs").glob("*/result.json"):
        res = json.loads(p.read_text())
        if res["condition"] == condition:
            vals = [r[metric] for r in res["rows"][eval_set] if r[metric] is not None]
            per_seed.append(np.mean(vals))
    return float(np.mean(per_seed))


def test_report_numbers_match_result_files(micro):
    _, out = micro
    text = (out / "report" / "REPORT.md").read_text()
    data = json.loads((out / "report" / "report.json").read_text())
    for eval_set in eval_sets():
        title = SET_TITLES[eval_set]
        section = text.split(f"## Results: {title}")[1].split("###")[0]
        table = tables.parse_summary_markdown(section)
        assert set(table) == {REF, "rgb_turbo@same"}
        for cond, values in table.items():
            for m in METRICS:
                expected = _expected_mean(out, cond, eval_set, m)
                assert values[m] == pytest.approx(expected, abs=0.51 * 10 ** -DIGITS[m]), (
                    eval_set,
                    cond,
                    m,
                )
        # The paired difference (seed-averaged per item) equals the difference of the means.
        # Every item has a STOI here, so the difference is finite and always checked (the
        # non-finite case: test_a_difference_without_finite_scores_is_nan_and_undecided).
        diff = next(
            d
            for d in data["sets"][eval_set]["diffs"]
            if d["a"] == "rgb_turbo@same" and d["metric"] == "stoi"
        )
        expected = _expected_mean(out, "rgb_turbo@same", eval_set, "stoi") - _expected_mean(
            out, REF, eval_set, "stoi"
        )
        assert math.isfinite(expected), eval_set
        assert diff["delta"] == pytest.approx(expected, abs=1e-9)
        assert diff["lo"] <= diff["delta"] <= diff["hi"]
    assert "python -m dereverb.study --config" in text and "-core CPU" in text and "no GPU" in text
    assert "U-Net base 4 channels, depth 2" in text  # the network's arguments under model.net


def test_a_difference_without_finite_scores_is_nan_and_undecided(tmp_path):
    """The non-finite case: a condition that never got a STOI has no difference, no interval,
    no verdict; the tables print n/a."""
    s = load_study(
        fake_study(
            tmp_path / "a",
            {REF: 0.0, "grayscale@log_magnitude": 0.1},
            seed_noise=0.002,
            missing_metric={"grayscale@log_magnitude": "stoi"},
        )
    )
    c = compare(s, "sim", "grayscale@log_magnitude", REF, "stoi", n_boot=200)
    assert math.isnan(c["delta"]) and math.isnan(c["lo"]) and math.isnan(c["hi"])
    assert c["n_items"] == 0 and c["ci_excludes_zero"] is False and c["beyond_noise"] is None
    assert math.isnan(c["noise_threshold"]) and math.isnan(c["sd_a"])
    pesq = compare(s, "sim", "grayscale@log_magnitude", REF, "pesq", n_boot=200)
    assert pesq["delta"] == pytest.approx(0.1) and pesq["beyond_noise"] is True
    row = next(r for r in analysis.summary_table(s, "sim") if r["condition"] != REF)
    assert math.isnan(row["stoi"]) and row["pesq"] == pytest.approx(
        analysis.summary_table(s, "sim")[0]["pesq"] + 0.1
    )
    parsed = tables.parse_summary_markdown(tables.summary_markdown(s, "sim"))
    assert math.isnan(parsed["grayscale@log_magnitude"]["stoi"])
    diffs = tables.diffs_markdown(s, "sim", 200)
    line = next(x for x in diffs.splitlines() if "`grayscale@log_magnitude`" in x)
    assert "n/a [n/a, n/a]" in line and line.endswith("| yes |")  # PESQ decides


def test_statistics_on_constructed_results(tmp_path):
    s = load_study(
        fake_study(tmp_path / "a", {REF: 0.0, "grayscale@log_magnitude": 0.1}, seed_noise=0.002)
    )
    c = compare(s, "sim", "grayscale@log_magnitude", REF, "pesq", n_boot=500)
    assert c["delta"] == pytest.approx(0.1) and c["n_items"] == 30 and c["seeds"] == [0, 1, 2]
    assert c["lo"] <= 0.1 <= c["hi"] and c["ci_excludes_zero"] and c["beyond_noise"] is True
    assert c["sd_a"] == pytest.approx(0.002) and c["se_seed"] == pytest.approx(
        math.sqrt(2 * 0.002**2 / 3)
    )
    # Welch: equal spreads, 3 seeds each -> df 4, threshold t(0.975, 4) * se.
    assert c["welch_df"] == pytest.approx(4.0)
    assert c["noise_threshold"] == pytest.approx(2.776445 * c["se_seed"], rel=1e-5)
    row = next(r for r in analysis.summary_table(s, "sim") if r["condition"] == "grayscale@log_magnitude")
    mean, lo, hi, sd = t_interval([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0) and hi - mean == pytest.approx(
        4.302653 / math.sqrt(3), rel=1e-5
    )
    assert row["pesq_sd"] == pytest.approx(0.002) and row["pesq_lo"] < row["pesq"] < row["pesq_hi"]
    # The same mean difference drowned in seed noise is not "beyond noise".
    noisy = load_study(
        fake_study(tmp_path / "b", {REF: 0.0, "grayscale@log_magnitude": 0.1}, seed_noise=0.2)
    )
    c2 = compare(noisy, "sim", "grayscale@log_magnitude", REF, "pesq", n_boot=500)
    assert c2["delta"] == pytest.approx(0.1) and c2["beyond_noise"] is False
    bands = {r["name"]: r for r in analysis.band_table(s, "sim", "pesq")}
    assert bands["grayscale@log_magnitude"]["n_<=0.4"] == 15 and math.isnan(
        bands["grayscale@log_magnitude"][">1.0"]
    )
    odd = [2 * i + 1 for i in range(15)]  # the items of the <=0.4 band (T60 0.3 s)
    per_seed = [
        np.mean([x["pesq"] for x in r["rows"]["sim"] if int(x["id"][5:]) in odd])
        for r in s.runs("grayscale@log_magnitude")
    ]
    assert bands["grayscale@log_magnitude"]["<=0.4"] == pytest.approx(np.mean(per_seed))


def test_verdicts_are_computed_from_the_numbers(tmp_path):
    conds = {
        REF: 0.0,
        "gray_rgb@same": 0.0,
        "rgb_viridis@same": 0.0,
        "rgb_jet@same": 0.3,
        "rgb_turbo@same": 0.0,
    }
    s = load_study(fake_study(tmp_path / "a", conds, seed_noise=0.01))
    c = next(v for v in verdicts.verdicts(s, "sim", n_boot=300) if v["key"] == "c")
    outcomes = {(p["a"], p["b"]): p["outcome"] for p in c["results"]}
    assert outcomes[("rgb_jet@same", "gray_rgb@same")] == "better"
    assert outcomes[("rgb_turbo@same", "gray_rgb@same")] == "none"
    assert "rgb_jet@same" in c["headline"] and "2 of 4" in c["headline"]
    flat = load_study(fake_study(tmp_path / "b", {**conds, "rgb_jet@same": 0.0}, seed_noise=0.01))
    c_flat = next(v for v in verdicts.verdicts(flat, "sim", n_boot=300) if v["key"] == "c")
    assert c_flat["headline"].startswith("no effect detected")
    a = next(v for v in verdicts.verdicts(flat, "sim") if v["key"] == "a")
    assert a["headline"].startswith("not tested")
    path = write_report(tmp_path / "a", tmp_path / "report")
    text = path.read_text()
    assert c["headline"] in text and (tmp_path / "report" / "summary_sim.png").stat().st_size > 1000
    assert "missing runs" not in text
