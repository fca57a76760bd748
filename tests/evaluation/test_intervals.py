"""Intervals and tests through scipy.stats: the paired bootstrap, t intervals, Welch's test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dereverb.evaluation.intervals import bootstrap_diff


def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_items() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 40, 400):
        b = rng.normal(2.0, 0.5, n)
        a = b + rng.normal(0.1, 0.3, n)  # a is better by 0.1 on average, with item noise
        mean, lo, hi = bootstrap_diff(a, b, n=2000, seed=0)
        assert mean == pytest.approx(float(np.mean(a - b)))
        assert lo < mean < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.1  # 400 items pin a 0.1 difference down: the interval excludes 0
    assert bootstrap_diff(a, b, n=500, seed=3) == bootstrap_diff(a, b, n=500, seed=3)
    assert bootstrap_diff(a, b, n=500, seed=3) != bootstrap_diff(a, b, n=500, seed=4)


def test_bootstrap_drops_nan_pairs_and_handles_degenerate_input() -> None:
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.0, 1.0, 5.0, np.nan])
    assert bootstrap_diff(a, b, n=100) == (1.0, 1.0, 1.0)  # two usable pairs, both differ by 1
    assert bootstrap_diff([3.0], [1.0]) == (2.0, 2.0, 2.0)  # one item: the point
    assert all(math.isnan(v) for v in bootstrap_diff([np.nan], [1.0]))
    with pytest.raises(ValueError, match="same items"):
        bootstrap_diff([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="n must be >= 1"):
        bootstrap_diff([1.0, 2.0], [1.0, 2.0], n=0)


def test_constant_difference_gives_a_degenerate_interval_at_that_value() -> None:
    b = np.random.default_rng(0).normal(size=50)
    assert bootstrap_diff(b + 0.1, b, n=300) == pytest.approx((0.1, 0.1, 0.1), abs=1e-12)
    b = np.random.default_rng(0).integers(0, 5, size=50).astype(float)
    assert bootstrap_diff(b + 0.25, b, n=300) == (0.25, 0.25, 0.25)  # exactly, no round-off


def test_symmetric_differences_give_an_interval_around_zero() -> None:
    d = np.array([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0] * 5)
    mean, lo, hi = bootstrap_diff(d, np.zeros_like(d), n=2000, seed=0)
    assert mean == 0.0 and lo < 0.0 < hi
    assert lo == pytest.approx(-hi, abs=0.1)


def test_bootstrap_is_scipys_percentile_bootstrap_on_the_differences() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=30), rng.normal(size=30)
    res = stats.bootstrap(
        (a - b,), np.mean, n_resamples=400, method="percentile", rng=np.random.default_rng(9)
    )
    _, lo, hi = bootstrap_diff(a, b, n=400, seed=9)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high))
