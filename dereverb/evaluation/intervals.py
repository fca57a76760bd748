"""Confidence intervals and tests, all through :mod:`scipy.stats`.

- :func:`bootstrap_diff`: the mean of per-item differences ``a_i - b_i`` of two systems scored on
  the same items, with a paired percentile-bootstrap interval (``scipy.stats.bootstrap`` on the
  differences: resampling *items* with replacement keeps the pairing; Efron & Tibshirani 1993).
  Items where either score is NaN (e.g. a PESQ failure) are dropped from both. Seeded: the same
  ``seed`` gives the same interval (it draws exactly the resamples the project's earlier
  hand-written version drew, so existing tables keep their numbers).
- :func:`t_interval`: a mean with its Student-t interval (``scipy.stats.t``).
- :func:`welch_test`: Welch's unequal-variance t-test of two samples
  (``scipy.stats.ttest_ind(equal_var=False)``) with the interval of the difference of means.
- :func:`tost_paired`, :func:`tost_welch`: equivalence within ``±margin`` by two one-sided
  tests (TOST, Schuirmann 1987) on paired items (``scipy.stats.ttest_1samp``) or on two
  independent samples (Welch, ``scipy.stats.ttest_ind(equal_var=False)``). At level ``alpha``
  TOST declares equivalence exactly when the ``1 - 2 alpha`` interval of the difference lies
  inside ``(-margin, +margin)``; both are returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Equivalence",
    "Welch",
    "bootstrap_diff",
    "paired_differences",
    "t_interval",
    "tost_paired",
    "tost_welch",
    "welch_test",
]

#: Resamples are drawn this many elements (resamples x items) at a time to bound memory.
_CHUNK_ELEMENTS = 4_000_000


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def _check_confidence(confidence: float, fn: str) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"{fn}: confidence must be in (0, 1), got {confidence}")


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
        seed: seed of the resampling (``numpy.random.default_rng(seed)``).
        confidence: interval coverage (0.95: the 2.5 and 97.5 percentiles).

    Returns ``(mean, lo, hi)``; all NaN when no item has both scores. With one item, or when
    every item differs by the same amount, the interval collapses to the point.

    >>> bootstrap_diff([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    (0.5, 0.5, 0.5)
    """
    if n < 1:
        raise ValueError(f"bootstrap_diff: n must be >= 1 resamples, got {n}")
    _check_confidence(confidence, "bootstrap_diff")
    d = paired_differences(a, b)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    if d.size == 1:  # scipy needs two observations; one item has no spread to resample
        return mean, mean, mean
    res = stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=n,
        batch=max(1, _CHUNK_ELEMENTS // d.size),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.ptp(d) == 0:  # constant differences: every resample mean is the mean (up to round-off)
        lo = hi = mean
    return mean, lo, hi


def t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, sd)`` of the finite ``values``: the Student-t interval of the mean and
    the sample standard deviation (ddof 1); lo/hi/sd NaN for fewer than 2 values.

    >>> [round(v, 3) for v in t_interval([1.0, 2.0, 3.0])]
    [2.0, -0.484, 4.484, 1.0]
    """
    _check_confidence(confidence, "t_interval")
    a = _finite(values)
    if a.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(a.mean())
    if a.size < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(a.std(ddof=1))
    if sd == 0:
        return mean, mean, mean, 0.0
    lo, hi = stats.t.interval(confidence, a.size - 1, loc=mean, scale=sd / math.sqrt(a.size))
    return mean, float(lo), float(hi), sd


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of ``mean(a) - mean(b)``: the difference ``delta``, its standard error
    ``se``, the Welch-Satterthwaite ``df``, ``statistic`` and two-sided ``pvalue``, and the
    ``confidence`` interval ``[lo, hi]`` of ``delta``."""

    delta: float
    se: float
    df: float
    statistic: float
    pvalue: float
    lo: float
    hi: float

    @property
    def threshold(self) -> float:
        """Half-width of the interval: the ``|delta|`` a difference must exceed to be significant."""
        return (self.hi - self.lo) / 2.0


def welch_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Welch:
    """Welch's unequal-variance t-test of the finite values of ``a`` against those of ``b``.

    All fields NaN (``delta`` too when a sample is empty) with fewer than 2 values in either
    sample. Two samples without any spread have ``se`` 0, a zero-width interval and
    ``df = n_a + n_b - 2``.
    """
    _check_confidence(confidence, "welch_test")
    x, y = _finite(a), _finite(b)
    nan = math.nan
    delta = float(x.mean() - y.mean()) if x.size and y.size else nan
    if x.size < 2 or y.size < 2:
        return Welch(delta, nan, nan, nan, nan, nan, nan)
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    if se == 0:
        return Welch(delta, 0.0, float(x.size + y.size - 2), nan, nan, delta, delta)
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(confidence_level=confidence)
    return Welch(
        delta,
        se,
        float(res.df),
        float(res.statistic),
        float(res.pvalue),
        float(ci.low),
        float(ci.high),
    )


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests of ``|delta| < margin`` (TOST): ``delta`` (the mean difference),
    ``lo, hi`` its ``1 - 2 alpha`` interval, ``p_lower`` (H0: ``delta <= -margin``),
    ``p_upper`` (H0: ``delta >= +margin``), ``df`` of the t distribution used."""

    delta: float
    lo: float
    hi: float
    margin: float
    alpha: float
    p_lower: float
    p_upper: float
    df: float

    @property
    def pvalue(self) -> float:
        """The TOST p-value: the larger one-sided p (NaN when undefined)."""
        return max(self.p_lower, self.p_upper) if not math.isnan(self.p_lower + self.p_upper) else math.nan

    @property
    def equivalent(self) -> bool:
        """Both one-sided nulls rejected at ``alpha`` (False when undefined)."""
        p = self.pvalue
        return bool(math.isfinite(p) and p < self.alpha)


def _check_margin(margin: float, alpha: float, fn: str) -> None:
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"{fn}: margin must be a positive number, got {margin}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"{fn}: alpha must be in (0, 0.5), got {alpha}")


def _degenerate(delta: float, margin: float, alpha: float, df: float) -> Equivalence:
    """No spread at all: the interval is the point, each one-sided test is certain."""
    return Equivalence(
        delta, delta, delta, margin, alpha,
        0.0 if delta > -margin else 1.0, 0.0 if delta < margin else 1.0, df,
    )


def tost_paired(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    margin: float,
    alpha: float = 0.05,
) -> Equivalence:
    """TOST on paired items: is the mean of ``a_i - b_i`` within ``±margin``?

    One-sample t-tests of the differences (items where both are finite) against ``-margin``
    (alternative "greater") and ``+margin`` (alternative "less"); the interval is the
    ``1 - 2 alpha`` t interval of the mean difference. NaN fields (not equivalent) with fewer
    than 2 pairs.

    >>> e = tost_paired([1.0, 2.0, 3.0, 4.0], [1.01, 1.99, 3.02, 3.98], margin=0.1)
    >>> e.equivalent, round(e.delta, 3)
    (True, 0.0)
    """
    _check_margin(margin, alpha, "tost_paired")
    d = paired_differences(a, b)
    nan = math.nan
    if d.size < 2:
        delta = float(d.mean()) if d.size else nan
        return Equivalence(delta, nan, nan, margin, alpha, nan, nan, nan)
    delta, df = float(d.mean()), float(d.size - 1)
    if np.ptp(d) == 0:
        return _degenerate(delta, margin, alpha, df)
    lower = stats.ttest_1samp(d, -margin, alternative="greater")
    upper = stats.ttest_1samp(d, margin, alternative="less")
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=1.0 - 2.0 * alpha)
    return Equivalence(
        delta, float(ci.low), float(ci.high), margin, alpha,
        float(lower.pvalue), float(upper.pvalue), df,
    )


def tost_welch(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    margin: float,
    alpha: float = 0.05,
) -> Equivalence:
    """TOST on two independent samples (Welch): is ``mean(a) - mean(b)`` within ``±margin``?

    Welch t-tests of ``a + margin`` against ``b`` (alternative "greater") and ``a - margin``
    against ``b`` (alternative "less"); the interval is Welch's ``1 - 2 alpha`` interval of the
    difference (as :func:`welch_test`). NaN fields (not equivalent) with fewer than 2 finite
    values in either sample.
    """
    _check_margin(margin, alpha, "tost_welch")
    x, y = _finite(a), _finite(b)
    nan = math.nan
    delta = float(x.mean() - y.mean()) if x.size and y.size else nan
    if x.size < 2 or y.size < 2:
        return Equivalence(delta, nan, nan, margin, alpha, nan, nan, nan)
    if x.var(ddof=1) + y.var(ddof=1) == 0:
        return _degenerate(delta, margin, alpha, float(x.size + y.size - 2))
    lower = stats.ttest_ind(x + margin, y, equal_var=False, alternative="greater")
    upper = stats.ttest_ind(x - margin, y, equal_var=False, alternative="less")
    both = stats.ttest_ind(x, y, equal_var=False)
    ci = both.confidence_interval(confidence_level=1.0 - 2.0 * alpha)
    return Equivalence(
        delta, float(ci.low), float(ci.high), margin, alpha,
        float(lower.pvalue), float(upper.pvalue), float(both.df),
    )
