"""Statistics: Holm's correction and the study's paired comparison (items and seeds)."""

from __future__ import annotations

import math

import pytest

from dereverb.experiment import analysis
from dereverb.experiment.analysis import load_study
from tests.experiment.studies import fake_study


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
