"""The study report: its numbers equal the result files', and the statistics, verdicts and the
report itself on constructed results (one capacity or several, one training length or several,
result files of study version 1 or 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dereverb.evaluation.intervals import t_interval
from dereverb.experiment import analysis, report, tables, verdicts
from dereverb.experiment.analysis import SET_TITLES, compare, load_study
from dereverb.experiment.figures import FIGURES
from dereverb.experiment.report import write_report
from dereverb.signals.metrics import DIGITS, METRICS
from tests.experiment.studies import eval_sets, fake_study

REF = "log_magnitude@log_magnitude"


def _expected_mean(
    out: Path, condition: str, eval_set: str, metric: str, capacity: str = "tiny", step: int | None = None
) -> float:
    """Mean over seeds of the per-seed item means, straight from the result files."""
    per_seed = []
    for p in (out / "runs").glob("*/result.json"):
        res = json.loads(p.read_text())
        if res["condition"] == condition and res["capacity"] == capacity:
            rows = res["rows"] if step is None else next(s["rows"] for s in res["steps"] if s["step"] == step)
            vals = [r[metric] for r in rows[eval_set] if r[metric] is not None]
            per_seed.append(np.mean(vals))
    return float(np.mean(per_seed))


def test_report_numbers_match_result_files(micro):
    _, out = micro
    text = (out / "report" / "REPORT.md").read_text()
    data = json.loads((out / "report" / "report.json").read_text())
    for eval_set in eval_sets():
        title = SET_TITLES[eval_set]
        for cap, conds in (("tiny", {REF, "rgb_turbo@same"}), ("large", {REF})):
            section = text.split(f"### {title}, {cap} (step 3)")[1].split("###")[0]
            table = tables.parse_summary_markdown(section.split("Differences to")[0])
            assert set(table) == conds
            for cond, values in table.items():
                for m in METRICS:
                    expected = _expected_mean(out, cond, eval_set, m, cap)
                    assert values[m] == pytest.approx(expected, abs=0.51 * 10 ** -DIGITS[m]), (
                        eval_set,
                        cond,
                        m,
                    )
        # The paired difference (seed-averaged per item) equals the difference of the means,
        # at every evaluated step. Every item has a STOI here, so the difference is finite and
        # always checked (the non-finite case: test_a_difference_without_finite_scores_...).
        for step in (1, 3):
            diff = next(
                d
                for d in data["sets"][eval_set]["diffs"]
                if d["a"] == "rgb_turbo@same" and d["metric"] == "stoi" and d["step"] == step
            )
            expected = _expected_mean(out, "rgb_turbo@same", eval_set, "stoi", step=step) - _expected_mean(
                out, REF, eval_set, "stoi", step=step
            )
            assert math.isfinite(expected), eval_set
            assert diff["delta"] == pytest.approx(expected, abs=1e-9) and diff["capacity"] == "tiny"
            assert diff["lo"] <= diff["delta"] <= diff["hi"]
            assert diff["outcome"] in analysis.OUTCOMES
            if diff["n_items"] >= 2:  # (micro items are short: some have no STOI)
                assert diff["lo95"] <= diff["delta"] <= diff["hi95"]
            else:
                assert math.isnan(diff["lo95"]) and diff["outcome"] == "inconclusive"
        curve = data["sets"][eval_set]["curves"]["tiny"]["pesq"]
        assert sorted({r["step"] for r in curve}) == [1, 3]
        point = next(r for r in curve if r["condition"] == REF and r["step"] == 1)
        assert point["mean"] == pytest.approx(_expected_mean(out, REF, eval_set, "pesq", step=1))
    assert text.startswith(report.TITLE + "\n") and text.index("## The answer") < text.index("## Mechanisms")
    assert "python -m dereverb.study --config" in text and "-core CPU" in text and "no GPU" in text
    assert "| tiny | base_channels 4, depth 2 |" in text and "| large | base_channels 6, depth 2 |" in text
    assert "ImageNet" in text.split("## Limits")[1]


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
    assert c["outcome"] == "inconclusive" and not c["equivalent"] and math.isnan(c["lo95"])
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
    assert "n/a [n/a, n/a] ?" in line and line.endswith("| better |")  # PESQ and ESTOI decide


def test_statistics_on_constructed_results(tmp_path):
    s = load_study(
        fake_study(tmp_path / "a", {REF: 0.0, "grayscale@log_magnitude": 0.1}, seed_noise=0.002)
    )
    assert s.capacities == [analysis.DEFAULT_CAPACITY] and s.steps() == [5]  # version-1 files
    c = compare(s, "sim", "grayscale@log_magnitude", REF, "pesq", n_boot=500)
    assert c["delta"] == pytest.approx(0.1) and c["n_items"] == 30 and c["seeds"] == [0, 1, 2]
    assert c["outcome"] == "better" and c["lo95"] > 0 and c["detected"] and not c["equivalent"]
    # the seed-level interval is Welch's, the item-level one collapses (every item differs by 0.1)
    assert c["item_lo"] == pytest.approx(0.1) and c["seed_lo"] < c["item_lo"] and c["lo95"] == c["seed_lo"]
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
    assert c2["outcome"] == "inconclusive" and c2["lo95"] < 0 < c2["hi95"]
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
    """Mechanism (c): the claims follow the constructed differences, with their wording."""
    conds = {
        REF: 0.0,
        "gray_rgb@log_magnitude": 0.0,
        "rgb_turbo@log_magnitude": 0.0,
        "gray_rgb@same": 0.0,
        "rgb_turbo@same": -0.3,
    }
    s = load_study(fake_study(tmp_path / "a", conds, seed_noise=0.001, item_noise=0.002))
    vs = verdicts.verdicts(s, "sim", n_boot=300)
    assert [v["key"] for v in vs] == ["a", "b", "c", "d", "e"]  # every mechanism, in order
    c = next(v for v in vs if v["key"] == "c")
    status = {j["claim"]: j["status"] for j in c["claims"]}
    assert status == {
        "turbo as the output costs": "holds",
        "gray_rgb as the output costs": "contradicted",  # equivalent within the margins
        "the long-arc turbo output is worse than the gray one": "holds",
    }
    assert c["verdict"] == "mixed"
    turbo = next(j for j in c["claims"] if j["claim"] == "turbo as the output costs")
    assert {x["outcome"] for x in turbo["comparisons"]} == {"worse"}
    text = verdicts.claim_sentence(turbo)
    assert text.startswith("turbo as the output costs (default, step 5): **holds** — PESQ-WB -0.300 (95 % CI -0.30")
    gray = next(j for j in c["claims"] if j["claim"] == "gray_rgb as the output costs")
    assert "equivalent within ±0.05" in verdicts.claim_sentence(gray)
    a = next(v for v in vs if v["key"] == "a")
    assert a["verdict"] == "untested" and "Untested" in verdicts.verdict_markdown([a])
    flat = load_study(fake_study(tmp_path / "b", {**conds, "rgb_turbo@same": 0.0}, seed_noise=0.001, item_noise=0.002))
    c_flat = next(v for v in verdicts.verdicts(flat, "sim", n_boot=300) if v["key"] == "c")
    assert c_flat["verdict"] == "contradicted"
    path = write_report(tmp_path / "a", tmp_path / "report")
    text = path.read_text()
    assert "### (c) RGB output" in text and "**Verdict (simulated test rooms): mixed.**" in text
    assert (tmp_path / "report" / "summary_sim.png").stat().st_size > 1000
    assert "missing runs" not in text


def _trends(cap: str, step: int) -> dict[str, float]:
    """Offsets of a constructed two-capacity, three-length study: colour helps the tiny net
    early and the help fades with training and capacity; JPEG costs more with training."""
    k = {60: 0, 240: 1, 960: 2}[step]
    tiny = cap == "tiny"
    return {
        REF: 0.1 * k,
        "grayscale@log_magnitude": 0.1 * k,
        "gray_rgb@log_magnitude": 0.1 * k,
        "rgb_turbo@log_magnitude": 0.1 * k + (0.2 if tiny else 0.05) * (1 - k / 2),
        "rgb_turbo_jpeg@log_magnitude": 0.1 * k + (0.2 if tiny else 0.05) * (1 - k / 2) - 0.1 * (1 + k),
        "magnitude@log_magnitude": 0.1 * k - 0.1 * (1 + k),
    }


def test_report_renders_around_the_question_from_fake_results(tmp_path):
    """Two capacities x three training lengths of constructed results: the mechanisms' claims,
    the answer paragraph, every section and figure."""
    offsets = {c: (lambda cap, st, c=c: _trends(cap, st)[c]) for c in _trends("tiny", 60)}
    folder = fake_study(
        tmp_path / "s", offsets, seed_noise=0.004, item_noise=0.01, n_items=24,
        steps=(60, 240, 960), capacities=("tiny", "large"), seeds=(0, 1, 2, 3, 4),
    )
    s = load_study(folder)
    assert s.capacities == ["tiny", "large"] and s.steps("large") == [60, 240, 960]
    with pytest.raises(ValueError, match="several capacities"):
        analysis.item_scores(s, "sim", "pesq")
    vs = {v["key"]: v for v in verdicts.verdicts(s, "sim", n_boot=200)}
    colour = {j["claim"]: j for j in vs["b"]["claims"]}
    assert colour["turbo beats grayscale for the tiny net after the fewest steps"]["status"] == "holds"
    shrink = colour["the difference shrinks with training (tiny net)"]
    assert shrink["status"] == "holds" and shrink["where"] == "tiny, step 60 -> 960"
    assert shrink["comparisons"][0]["delta"] == pytest.approx(-0.2, abs=0.02)  # (+0.0) - (+0.2)
    assert colour["the difference is smaller for the large net (fewest steps)"]["status"] == "holds"
    assert vs["b"]["verdict"] == "supported"
    jpeg = {j["claim"]: j["status"] for j in vs["d"]["claims"]}
    assert jpeg == {"JPEG costs after the most steps": "holds", "the cost does not shrink with training": "holds"}
    assert vs["a"]["claims"][0]["status"] == "holds"  # magnitude worse than log_magnitude
    assert vs["e"]["verdict"] == "untested"
    # the same run at two steps is paired with itself
    ch = analysis.change_with_steps(s, "sim", "magnitude@log_magnitude", REF, "pesq", "tiny", (60, 960))
    assert ch["delta"] == pytest.approx(-0.2, abs=0.02) and ch["outcome"] == "worse"
    cap = analysis.compare_capacities(s, "sim", "rgb_turbo@log_magnitude", "pesq", ("tiny", "large"))
    # each at its last step, where the help has faded at both capacities
    assert cap["delta"] == pytest.approx(0.0, abs=0.02) and cap["outcome"] == "equivalent"
    text = verdicts.answer(s, "sim", n_boot=200, vs=list(vs.values()))
    # colour beats the log magnitude and grayscale early only, the raw magnitude throughout
    assert text.startswith(
        "**Simulated test rooms: yes, after the most training (tiny 960 steps, large 960 steps), a colour "
        "image beat the raw magnitude (4 of 6 comparisons), but never the log magnitude or the grayscale "
        "image (0 of 12 comparisons better, 4 worse, 8 equivalent); at any length 24 of 54 comparisons "
        "were better. What the image has over the raw array is the dB scale it is drawn in, which the log "
        "magnitude has too (mechanism a).** Against the log magnitude "
        "(`log_magnitude@log_magnitude`), after the most training: 0 better, 2 worse, 4 equivalent; "
        "at any length: 4 better, 5 worse, 9 equivalent. Against "
    )
    assert "Better: `gray_rgb@log_magnitude` vs `magnitude@log_magnitude` (tiny, 960 steps, PESQ-WB +0.29" in text
    assert "(b) colormap: supported" in text
    path = write_report(folder, tmp_path / "report", n_boot=200)
    md = path.read_text()
    order = ["## The answer", "## Mechanisms", "### (a)", "### (e)", "## How it was run", "## Setup",
             "## Training-length curves", "## Differences to the reference at every length", "## Capacity",
             "## Results at the last step", "## Per T60 band", "## Seed-to-seed spread", "## Limits"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    assert md.split("## The answer\n\n")[1].startswith("**Simulated test rooms: ")
    assert "| `rgb_turbo@log_magnitude` | tiny | 5 |" in md  # the curve table: 5 seeds
    assert "Only some conditions ran at `large`" not in md
    # the budget behind "the most training", and the reference still rising at its end (0.1 per step index)
    assert "- Training budget: the most training is 960 steps of batch 2 x 0.5-s segments, 16 minutes" in md
    assert "the reference's PESQ-WB still rose from" in md
    for name in FIGURES:
        if "measured" not in name:
            assert (tmp_path / "report" / name).stat().st_size > 1000, name
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["steps"] == {"tiny": [60, 240, 960], "large": [60, 240, 960]}
    assert len(data["sets"]["sim"]["capacity_effects"]) == 6 * 3


def test_the_answer_says_not_decided_while_every_comparison_is_inconclusive(tmp_path):
    """One seed (a study stopped early): no interval over seeds, so nothing is decided, and the
    answer says so instead of 'no colour-image input beat ...'."""
    conds = {REF: 0.0, "grayscale@log_magnitude": 0.0, "rgb_turbo@log_magnitude": 0.3}
    s = load_study(fake_study(tmp_path / "one", conds, seed_noise=0.001, item_noise=0.002, seeds=(0,)))
    text = verdicts.answer(s, "sim", n_boot=200, brief=True)
    assert text.startswith("**Simulated test rooms: not decided yet: none of the 2 comparisons")
    assert "after the most training: 0 better, 0 equivalent, 1 inconclusive; at any length:" in text


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        (["holds", "holds"], "supported"),
        (["mixed", "mixed", "mixed"], "mixed"),  # every claim has evidence both ways
        (["holds", "contradicted"], "mixed"),
        (["holds", "open"], "partly supported"),
        (["mixed", "open"], "mixed"),
        (["contradicted", "open"], "contradicted"),
        (["open", "open", "untested"], "inconclusive"),
        (["untested"], "untested"),
    ],
)
def test_a_mechanism_verdict_weighs_mixed_claims_both_ways(statuses, verdict):
    """A claim that holds on one metric and is contradicted on another is evidence for and
    against: three such claims make a mixed mechanism, not a contradicted one."""
    assert verdicts.mechanism_verdict([{"status": s} for s in statuses]) == verdict
