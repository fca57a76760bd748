"""Paired confidence intervals of a difference between two systems, through :mod:`scipy.stats`.

:func:`bootstrap_diff`: the mean of per-item differences ``a_i - b_i`` of two systems scored on
the same items, with a paired percentile-bootstrap interval (``scipy.stats.bootstrap`` on the
differences: resampling *items* with replacement keeps the pairing; Efron & Tibshirani 1993).
Items where either score is NaN (e.g. a PESQ failure) are dropped from both. Seeded: the same
``seed`` gives the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

#: Resamples are drawn this many elements (resamples x items) at a time to bound memory.
_CHUNK_ELEMENTS = 4_000_000


def paired_differences(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    """``a - b`` for the items where both are finite. ``(n,)``, ``(n,)`` -> ``(m,)``, m <= n."""
    a_np = np.asarray(a, dtype=np.float64).reshape(-1)
    b_np = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_np.shape != b_np.shape:
        raise ValueError(f"paired bootstrap needs scores of the same items: got {a_np.size} and {b_np.size} values")
    keep = np.isfinite(a_np) & np.isfinite(b_np)
    return a_np[keep] - b_np[keep]


def bootstrap_diff(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired items and its percentile-bootstrap interval.

    Args:
        a, b: per-item scores of two systems on the same items, ``(n_items,)`` each.
        n: bootstrap resamples.
        seed: seed of the resampling (``numpy.random.default_rng(seed)``).
        confidence: interval coverage (0.95: the 2.5 and 97.5 percentiles).

    Returns ``(mean, lo, hi)``; all NaN when no item has both scores. With one item, or when
    every item differs by the same amount, the interval collapses to the point.

    >>> bootstrap_diff([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    (0.5, 0.5, 0.5)
    """
    if n < 1:
        raise ValueError(f"bootstrap_diff: n must be >= 1 resamples, got {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bootstrap_diff: confidence must be in (0, 1), got {confidence}")
    d = paired_differences(a, b)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    if d.size == 1:  # scipy needs two observations; one item has no spread to resample
        return mean, mean, mean
    res = stats.bootstrap((d,), np.mean, n_resamples=n, batch=max(1, _CHUNK_ELEMENTS // d.size), vectorized=True,
                          confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.ptp(d) == 0:  # constant differences: every resample mean is the mean (up to round-off)
        lo = hi = mean
    return mean, lo, hi

