"""Paired bootstrap confidence intervals for the difference of two systems on the same items.

Both systems are scored on the same items, so the per-item differences ``a_i - b_i`` carry the
comparison; resampling *items* (with replacement) and recomputing the mean difference gives its
sampling distribution, and the 2.5 / 97.5 percentiles give a 95 % interval (the percentile
bootstrap, Efron & Tibshirani 1993). Items where either score is NaN (e.g. a PESQ failure) are
dropped from both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Resampled index matrices are built this many resamples at a time to bound memory.
_CHUNK_ELEMENTS = 4_000_000


def paired_differences(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> np.ndarray:
    """``a - b`` for the items where both are finite. ``(n,)``, ``(n,)`` -> ``(m,)``, m <= n."""
    a_np = np.asarray(a, dtype=np.float64).reshape(-1)
    b_np = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_np.shape != b_np.shape:
        raise ValueError(
            f"paired bootstrap needs scores of the same items: got {a_np.size} and {b_np.size} values"
        )
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
        seed: seed of the resampling (same seed, same interval).
        confidence: interval coverage (0.95: the 2.5 and 97.5 percentiles).

    Returns ``(mean, lo, hi)``; all NaN when no item has both scores. With one item the
    interval collapses to the point.
    """
    if n < 1:
        raise ValueError(f"bootstrap_diff: n must be >= 1 resamples, got {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bootstrap_diff: confidence must be in (0, 1), got {confidence}")
    d = paired_differences(a, b)
    m = d.size
    if m == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(n, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, n, step):
        k = min(step, n - start)
        idx = rng.integers(0, m, size=(k, m))
        means[start : start + k] = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(lo), float(hi)
