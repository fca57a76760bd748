"""The study's equivalence statistics: TOST (:mod:`dereverb.evaluation.intervals`, on
scipy.stats) against hand-computed numbers, the outcome of a comparison (better / worse /
equivalent within ±margin / inconclusive) and its wording."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dereverb.evaluation.intervals import tost_paired, tost_welch
from dereverb.experiment import analysis, verdicts
from dereverb.experiment.analysis import contrast, outcome


def _t3_cdf(t: float) -> float:
    """Student t CDF with 3 degrees of freedom, closed form (no scipy):
    1/2 + (1/pi) * (x / (1 + x**2) + atan(x)), x = t / sqrt(3)."""
    x = t / math.sqrt(3.0)
    return 0.5 + (x / (1.0 + x * x) + math.atan(x)) / math.pi


def test_tost_paired_matches_a_hand_computed_case():
    # differences d = [0.01, -0.02, 0.03, 0.00]: mean 0.005, sd sqrt(0.0013 / 3), n 4, df 3
    b = np.array([2.0, 1.5, 3.0, 2.5])
    a = b + np.array([0.01, -0.02, 0.03, 0.00])
    se = math.sqrt(0.0013 / 3.0) / 2.0
    e = tost_paired(a, b, margin=0.05)
    assert e.delta == pytest.approx(0.005) and e.df == 3
    t975 = 2.3533634  # t(0.95, df 3), from a table: the 90 % interval of TOST at alpha 5 %
    assert (e.lo, e.hi) == pytest.approx((0.005 - t975 * se, 0.005 + t975 * se), rel=1e-6)
    assert e.p_lower == pytest.approx(1.0 - _t3_cdf((0.005 + 0.05) / se), rel=1e-9)
    assert e.p_upper == pytest.approx(_t3_cdf((0.005 - 0.05) / se), rel=1e-9)
    assert e.pvalue == pytest.approx(max(e.p_lower, e.p_upper)) and e.pvalue < 0.05 and e.equivalent
    # shifted by 0.1: far outside ±0.05, not equivalent; with a margin of 0.2 it is again
    shifted = tost_paired(a + 0.1, b, margin=0.05)
    assert not shifted.equivalent and shifted.p_upper > 0.5 and shifted.lo > 0.05
    assert tost_paired(a + 0.1, b, margin=0.2).equivalent
    # a tight margin the 90 % interval does not fit in: not equivalent, and TOST agrees
    tight = tost_paired(a, b, margin=0.02)
    assert tight.hi > 0.02 and not tight.equivalent


def test_tost_welch_matches_a_hand_computed_case():
    x, y = [1.0, 2.0, 3.0], [1.5, 2.0, 2.5]
    e = tost_welch(x, y, margin=1.0)
    # var 1 and 0.25, n 3: se^2 = 1/3 + 1/12, Welch-Satterthwaite df = se^4 / (...)
    se2 = 1 / 3 + 0.25 / 3
    df = se2**2 / ((1 / 3) ** 2 / 2 + (0.25 / 3) ** 2 / 2)
    assert e.delta == 0.0 and e.df == pytest.approx(df) and df == pytest.approx(2.941176, rel=1e-6)
    from scipy import stats

    assert e.p_lower == pytest.approx(stats.t.sf(1.0 / math.sqrt(se2), df))
    assert e.p_upper == pytest.approx(stats.t.cdf(-1.0 / math.sqrt(se2), df))
    assert (e.lo, e.hi) == pytest.approx(
        (-stats.t.ppf(0.95, df) * math.sqrt(se2), stats.t.ppf(0.95, df) * math.sqrt(se2))
    )
    assert not e.equivalent  # 3 noisy values each: the 90 % interval is wider than ±1
    assert tost_welch(x, y, margin=2.0).equivalent


def test_tost_is_the_ninety_percent_interval_inside_the_margin():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.normal(0, 1, 12), rng.normal(0, 1, 12)
        m = float(rng.uniform(0.1, 2.0))
        for e in (tost_paired(a, b, m), tost_welch(a, b, m)):
            assert e.equivalent == (-m < e.lo and e.hi < m)


def test_tost_edge_cases():
    e = tost_paired([1.0], [0.9], margin=0.5)
    assert math.isnan(e.lo) and not e.equivalent and e.delta == pytest.approx(0.1)
    same = tost_paired([1.0, 2.0, 3.0], [0.75, 1.75, 2.75], margin=0.5)  # every pair differs by 0.25
    assert same.lo == same.hi == 0.25 and same.p_lower == same.p_upper == 0.0 and same.equivalent
    assert not tost_paired([1.0, 2.0], [0.0, 1.0], margin=0.5).equivalent  # constant 1.0 > margin
    with pytest.raises(ValueError, match="margin must be a positive number"):
        tost_welch([1, 2], [1, 2], margin=0.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        tost_paired([1, 2], [1, 2], margin=1.0, alpha=0.5)


def _scores(n_seeds: int, n_items: int, shift: float, seed_sd: float, item_sd: float, rng) -> dict:
    base = np.linspace(1.5, 2.5, n_items)
    return {
        s: {f"i{i}": float(base[i] + shift + z + e) for i, e in enumerate(rng.normal(0, item_sd, n_items))}
        for s, z in enumerate(rng.normal(0, seed_sd, n_seeds))
    }


def test_comparison_outcomes():
    """Identical-ish conditions: equivalent within the margin; shifted by twice the margin:
    better / worse; a shift drowned in seed noise: inconclusive."""
    rng = np.random.default_rng(0)
    ref = _scores(5, 40, 0.0, 0.005, 0.01, rng)
    same = _scores(5, 40, 0.0, 0.005, 0.01, rng)
    up = _scores(5, 40, 0.1, 0.005, 0.01, rng)
    noisy = _scores(5, 40, 0.03, 0.2, 0.01, rng)
    eq = contrast(same, ref, "pesq", margin=0.05, n_boot=200)
    assert eq["outcome"] == "equivalent" and eq["equivalent"] and -0.05 < eq["lo90"] < eq["hi90"] < 0.05
    better = contrast(up, ref, "pesq", margin=0.05, n_boot=200)
    assert better["outcome"] == "better" and better["lo95"] > 0 and not better["equivalent"]
    assert contrast(ref, up, "pesq", margin=0.05, n_boot=200)["outcome"] == "worse"
    unsure = contrast(noisy, ref, "pesq", margin=0.05, n_boot=200)
    assert unsure["outcome"] == "inconclusive" and unsure["lo95"] < 0 < unsure["hi95"]
    # the verdict interval is the hull of the item-level and seed-level intervals
    assert unsure["lo95"] == min(unsure["item_lo"], unsure["seed_lo"])
    assert unsure["hi95"] == max(unsure["item_hi"], unsure["seed_hi"])
    # one seed: no seed-level interval, so no verdict
    one = contrast({0: up[0]}, {0: ref[0]}, "pesq", margin=0.05, n_boot=200)
    assert one["outcome"] == "inconclusive" and math.isnan(one["lo95"])
    assert outcome(0.1, 0.2, False) == "better" and outcome(-0.2, -0.1, False, higher_is_better=False) == "better"
    assert outcome(-0.1, 0.1, True) == "equivalent" and outcome(math.nan, 1.0, False) == "inconclusive"
    assert analysis.combine(["better", "equivalent"]) == "better"
    assert analysis.combine(["better", "worse"]) == "mixed"
    assert analysis.combine(["equivalent"] * 3) == "equivalent"
    assert analysis.combine(["equivalent", "inconclusive"]) == "inconclusive"


def test_verdict_wording_cites_the_interval():
    rng = np.random.default_rng(0)
    ref = _scores(5, 40, 0.0, 0.005, 0.01, rng)
    eq = {**contrast(_scores(5, 40, 0.0, 0.005, 0.01, rng), ref, "pesq", margin=0.05, n_boot=200)}
    text = verdicts.cite(eq)
    assert text.startswith("PESQ-WB ") and "(90 % CI " in text and "inside ±0.05; TOST p " in text
    assert text.endswith("): equivalent within ±0.05")
    up = contrast(_scores(5, 40, 0.1, 0.005, 0.01, rng), ref, "stoi", margin=0.01, n_boot=200)
    text = verdicts.cite(up)
    assert text.startswith("STOI +0.") and "(95 % CI +0.0" in text and text.endswith("): better")
    noisy = contrast(_scores(5, 40, 0.03, 0.2, 0.01, rng), ref, "pesq", margin=0.05, n_boot=200)
    text = verdicts.cite(noisy)
    assert "(95 % CI -" in text and "; 90 % CI " in text and "not inside ±0.05): inconclusive" in text
    one = contrast({0: ref[0]}, {0: ref[1]}, "pesq", margin=0.05, n_boot=200)
    assert verdicts.cite(one).endswith("(no interval: fewer than 2 seeds or items): inconclusive")
