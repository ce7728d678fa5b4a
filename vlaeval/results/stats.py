"""Interval estimates and one-sided tests for the two kinds of metric samples.

A metric yields either a :class:`Proportion` (successes out of trials: Wilson interval, Fisher's
exact test) or :class:`Values` (one number per unit, e.g. a chain's length: percentile bootstrap
interval and a bootstrap test of the mean difference).  Bootstraps use a fixed seed, so a report
or a gate decision is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``trials``."""

    successes: int
    trials: int

    @property
    def estimate(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")


@dataclass(frozen=True)
class Values:
    """One value per independent unit (e.g. per chain); the metric is their mean."""

    values: tuple[float, ...]

    @property
    def estimate(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")


Sample = Proportion | Values


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % interval and sample size."""

    value: float
    low: float
    high: float
    n: int
    method: str


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval: well-behaved at 0 % and 100 %, unlike the normal approximation."""
    if trials == 0:
        return float("nan"), float("nan")
    z = _z(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_change(before: Sequence[bool], after: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of two success vectors over the same episodes (same seeds, same order).

    Only discordant episodes carry information about a change: ``fixed`` (failed before,
    succeeded after) and ``broken``.  Under "no change" each discordant episode is a fair coin,
    so the two-sided p-value is the binomial tail of the rarer side, doubled.  This is far more
    sensitive than comparing two independent intervals, which ignores the pairing.
    """
    if len(before) != len(after):
        raise ValueError(f"paired outcomes need the same episodes: {len(before)} before, {len(after)} after")
    fixed = sum(1 for b, a in zip(before, after) if a and not b)
    broken = sum(1 for b, a in zip(before, after) if b and not a)
    n = fixed + broken
    tail = sum(math.comb(n, k) for k in range(min(fixed, broken) + 1)) / 2**n if n else 1.0
    return {"fixed": fixed, "broken": broken, "p_value": min(1.0, 2 * tail)}


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    if len(values) == 0:
        return float("nan"), float("nan")
    means = _bootstrap_means(np.asarray(values, dtype=float), samples, np.random.default_rng(BOOTSTRAP_SEED))
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def estimate(sample: Sample) -> Estimate:
    if isinstance(sample, Proportion):
        low, high = wilson_interval(sample.successes, sample.trials)
        return Estimate(sample.estimate, low, high, sample.trials, "wilson")
    arr = np.asarray(sample.values, dtype=float)
    low, high = bootstrap_interval(arr)
    return Estimate(sample.estimate, low, high, len(arr), "bootstrap")


def worse_p_value(current: Sample, baseline: Sample, *, higher_is_better: bool = True) -> float:
    """One-sided p-value for "current is worse than baseline".

    Proportions: Fisher's exact test (exact at the small sample sizes robot evaluations have, and
    valid at 0 % / 100 % where a z-test breaks down).  Values: bootstrap of the difference of
    means, p = share of resampled differences that are not worse.
    """
    if isinstance(current, Proportion) and isinstance(baseline, Proportion):
        from scipy.stats import fisher_exact

        if current.trials == 0 or baseline.trials == 0:
            return 1.0
        table = [
            [current.successes, current.trials - current.successes],
            [baseline.successes, baseline.trials - baseline.successes],
        ]
        _, p = fisher_exact(table, alternative="less" if higher_is_better else "greater")
        return float(p)
    if isinstance(current, Values) and isinstance(baseline, Values):
        cur, base = np.asarray(current.values, float), np.asarray(baseline.values, float)
        if len(cur) == 0 or len(base) == 0:
            return 1.0
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        diff = _bootstrap_means(cur, BOOTSTRAP_SAMPLES, rng) - _bootstrap_means(base, BOOTSTRAP_SAMPLES, rng)
        not_worse = diff >= 0 if higher_is_better else diff <= 0
        return float((np.count_nonzero(not_worse) + 1) / (len(diff) + 1))
    raise TypeError(f"cannot compare {type(current).__name__} with {type(baseline).__name__}")


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: a gate testing many tasks must not cry wolf."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _bootstrap_means(values: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    return values[idx].mean(axis=1)


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)
