"""Statistics: TOST (:mod:`dereverb.evaluation.intervals`) against hand-computed numbers, Holm's
correction and the study's paired comparison (items and seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dereverb.evaluation.intervals import tost_paired, tost_welch
from dereverb.experiment import analysis
from dereverb.experiment.analysis import load_study
from tests.experiment.studies import fake_study


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


def test_holm_matches_a_hand_computed_case():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.06
    assert analysis.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert analysis.holm([0.5, math.nan]) == [1.0, 1.0] and analysis.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert analysis.holm([]) == []


def test_a_comparison_needs_both_the_items_and_the_seeds(tmp_path):
    """A shift far beyond both noises: tiny p from the items and the seeds; the same shift drowned
    in seed noise: the items alone would say yes, the seeds do not, so the comparison does not."""
    ref = "log_magnitude@log_magnitude"
    s = load_study(fake_study(tmp_path / "a", {ref: 0.0, "gray@x": 0.1, "noisy@x": 0.1}, seed_noise=0.002,
                              item_noise=0.01, noisy_seeds={"noisy@x": 0.3}))
    c = analysis.compare(s, "sim", "gray@x", ref, "pesq", "tiny", 5)
    assert c["delta"] == pytest.approx(0.1, abs=0.01) and c["lo"] < c["delta"] < c["hi"] and c["lo"] > 0
    assert c["p"] == max(c["p_items"], c["p_seeds"]) < 1e-3 and c["seeds"] == [0, 1, 2] and c["n_items"] == 30
    n = analysis.compare(s, "sim", "noisy@x", ref, "pesq", "tiny", 5)
    assert n["p_items"] < 1e-3 and n["p_seeds"] > 0.05 and n["p"] == n["p_seeds"] and n["lo"] < 0 < n["hi"]
    assert analysis.compare(s, "sim", "gray@x", ref, "pesq", "tiny", 99) is None  # no such step
