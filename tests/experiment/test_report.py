"""The study report: its numbers equal the result files', the answer counts a comparison only on
the primary metric after Holm's correction, and the report stays short."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from dereverb.experiment import analysis, report
from dereverb.experiment.analysis import load_study
from tests.experiment.studies import eval_sets, fake_study

REF = "log_magnitude@log_magnitude"
LM = "log_magnitude"


def _expected_mean(out: Path, condition: str, eval_set: str, metric: str, capacity: str, step: int) -> float:
    """Mean over seeds of the per-seed item means, straight from the result files."""
    per_seed = []
    for p in (out / "runs").glob("*/result.json"):
        res = json.loads(p.read_text())
        if res["condition"] == condition and res["capacity"] == capacity:
            rows = next(s["rows"] for s in res["steps"] if s["step"] == step)[eval_set]
            per_seed.append(np.mean([r[metric] for r in rows if r[metric] is not None]))
    return float(np.mean(per_seed))


@pytest.mark.slow
def test_report_numbers_match_result_files(micro):
    _, out = micro
    text = (out / "report" / "REPORT.md").read_text()
    data = json.loads((out / "report" / "report.json").read_text())
    assert (out / "report" / report.HEADLINE).is_file()
    for eval_set in eval_sets():
        sets = data["sets"][eval_set]
        for cap, conds in (("tiny", [REF, "rgb_turbo@same"]), ("large", [REF])):
            for step in (1, 3):
                rows = sets["summary"][cap][str(step)]
                assert [r["condition"] for r in rows] == conds
                for r in rows:
                    expected = _expected_mean(out, r["condition"], eval_set, "pesq", cap, step)
                    assert r["pesq"]["mean"] == pytest.approx(expected), (eval_set, cap, step)
        # The paired difference (seed-averaged per item) equals the difference of the means.
        for step in (1, 3):
            d = next(d for d in sets["differences"] if d["metric"] == "pesq" and d["step"] == step)
            assert d["a"] == "rgb_turbo@same" and d["b"] == REF and d["capacity"] == "tiny"
            expected = _expected_mean(out, d["a"], eval_set, "pesq", "tiny", step) - _expected_mean(
                out, REF, eval_set, "pesq", "tiny", step
            )
            assert d["delta"] == pytest.approx(expected, abs=1e-9)
            assert d["lo"] <= d["delta"] <= d["hi"] or math.isnan(d["lo"])
        assert [(c["a"], c["b"], c["step"]) for c in sets["family"]] == [("rgb_turbo@same", REF, 3)]
    assert text.startswith(report.TITLE + "\n")
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads == ["## The answer", *(f"## {analysis.SET_TITLES[s].capitalize()}" for s in eval_sets()), "## Method"]
    assert "python -m dereverb.study --config" in text and "-core CPU" in text and "pre-roll" in text
    assert data["answer"] in text and data["primary_metric"] == "pesq"


def _families(tmp_path: Path, offsets: dict, **kw) -> tuple[analysis.Study, list[dict]]:
    s = load_study(fake_study(tmp_path / "s", offsets, seed_noise=0.002, item_noise=0.01, **kw))
    return s, analysis.answer_family(s, "sim")


def test_the_answer_counts_only_the_primary_metric_after_holm(tmp_path):
    """A colour image 0.1 above the log magnitude is better; one that never got a PESQ-WB is
    undecided however far its STOI is; the corrected p-values are Holm's over the family."""
    offsets = {REF: 0.0, f"grayscale@{LM}": 0.0, f"rgb_turbo@{LM}": 0.1, f"rgb_jet@{LM}": 0.3}
    s, family = _families(tmp_path, offsets, missing_metric={f"rgb_jet@{LM}": "pesq"})
    assert len(family) == 4 and {c["metric"] for c in family} == {"pesq"}  # 2 colour x 2 plain inputs
    assert [c["p_holm"] for c in family] == analysis.holm([c["p"] for c in family])
    by = {(c["a"], c["b"]): c for c in family}
    assert by[(f"rgb_turbo@{LM}", REF)]["outcome"] == "better" and by[(f"rgb_turbo@{LM}", REF)]["p_holm"] < 0.05
    jet = by[(f"rgb_jet@{LM}", REF)]
    assert jet["outcome"] == "undecided" and math.isnan(jet["delta"])
    assert jet["secondary"]["stoi"]["delta"] == pytest.approx(0.3 * 0.3, abs=0.01)  # secondary: shown, decides nothing
    text = report.answer(s, {"sim": family})
    assert text.startswith("**Yes, but only against the log magnitude and the grayscale image**")
    assert "simulated rooms: 2 better, 0 worse of 4" in text


def test_holm_can_undecide_what_one_test_alone_would_decide(tmp_path):
    """A small gain, significant alone (p < 0.01), is undecided among 13 comparisons: Holm
    multiplies the smallest p by the family's size."""
    offsets = {REF: 0.0, f"rgb_turbo@{LM}": 0.008, **{f"rgb_c{k}@{LM}": 0.0 for k in range(12)}}
    s, family = _families(tmp_path, offsets)
    turbo = next(c for c in family if c["a"] == f"rgb_turbo@{LM}")
    assert len(family) == 13 and turbo["delta"] > 0 and turbo["p"] < 0.01
    assert turbo["p_holm"] == pytest.approx(13 * turbo["p"]) and turbo["p_holm"] > 0.05
    assert all(c["outcome"] == "undecided" for c in family)
    text = report.answer(s, {"sim": family})
    assert text.startswith("**No: no colour-image input beat the log magnitude")
    assert "1 gain(s) reached p < 0.05 only before the correction, the largest `rgb_turbo@log_magnitude`" in text


def test_the_report_is_short_and_the_answer_at_most_five_sentences(tmp_path):
    offsets = {REF: 0.0, f"grayscale@{LM}": 0.01, f"magnitude@{LM}": -0.2, f"rgb_turbo@{LM}": -0.1,
               "rgb_turbo@same": -0.3, f"gray_rgb@{LM}": 0.0, f"rgb_viridis@{LM}": 0.05}
    s = load_study(fake_study(tmp_path / "s", offsets, seed_noise=0.01, item_noise=0.05))
    text, data = report.build_report(s, "python -m dereverb.study --report-only")
    assert len(text.splitlines()) <= 300
    assert 2 <= len(re.findall(r"\.(?:\*\*)?(?:\s+|$)", data["answer"])) <= 5  # sentences
    assert len(data["sets"]["sim"]["family"]) == 4 * 3
    assert "| `rgb_turbo@same` − `log_magnitude@log_magnitude` | tiny |" in text
    assert "**worse**" in text and data["answer"].startswith("**Yes, but only against the raw magnitude**")
