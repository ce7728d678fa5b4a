"""Interval and test functions against values computed by hand or from first principles."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from vlaeval.results.stats import (
    Proportion,
    Values,
    bootstrap_interval,
    estimate,
    holm_adjust,
    paired_change,
    wilson_interval,
    worse_p_value,
)


@pytest.mark.parametrize(
    "k, n, low, high",
    [(475, 500, 0.9273, 0.9659), (12, 24, 0.3143, 0.6857), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 2, 0.0945, 0.9055)],
)
def test_wilson_interval_matches_hand_computed_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible() -> None:
    values = np.array([5, 5, 4, 0, 5, 3, 5, 2, 5, 5] * 20, dtype=float)
    lo, hi = bootstrap_interval(values)
    assert lo < values.mean() < hi
    assert (lo, hi) == bootstrap_interval(values)
    # the normal approximation agrees for n = 200
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert lo == pytest.approx(values.mean() - 1.96 * se, abs=0.05) and hi == pytest.approx(values.mean() + 1.96 * se, abs=0.05)
    assert bootstrap_interval(np.full(30, 4.0)) == (4.0, 4.0)


def test_estimate_picks_the_interval_by_sample_kind() -> None:
    assert estimate(Proportion(3, 4)).method == "wilson" and estimate(Proportion(3, 4)).value == 0.75
    est = estimate(Values((1.0, 2.0, 3.0)))
    assert (est.method, est.value, est.n) == ("bootstrap", 2.0, 3)


def _fisher_less(a: int, b: int, c: int, d: int) -> float:
    """P(X <= a) for the hypergeometric law of the table's top-left cell, by direct summation."""
    row1, col1, n = a + b, a + c, a + b + c + d
    return sum(comb(col1, x) * comb(n - col1, row1 - x) for x in range(0, a + 1)) / comb(n, row1)


def test_fisher_one_sided_p_value_matches_direct_summation() -> None:
    cur, base = Proportion(70, 100), Proportion(95, 100)
    assert worse_p_value(cur, base) == pytest.approx(_fisher_less(70, 30, 95, 5), rel=1e-9)
    assert worse_p_value(Proportion(19, 20), Proportion(19, 20)) == pytest.approx(_fisher_less(19, 1, 19, 1))
    assert worse_p_value(Proportion(20, 20), Proportion(10, 20)) > 0.99  # better is never "worse"


def test_bootstrap_test_of_means() -> None:
    base = Values(tuple([5.0] * 45 + [3.0] * 5))
    assert worse_p_value(Values(tuple([2.0] * 25 + [5.0] * 25)), base) < 0.001
    assert worse_p_value(base, base) > 0.3
    assert worse_p_value(Values((1.0,) * 10), Values((2.0,) * 10), higher_is_better=False) > 0.99


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5]) == [0.5]
    assert holm_adjust([0.4, 0.5]) == pytest.approx([0.8, 0.8])


def test_paired_change_is_the_exact_mcnemar_test() -> None:
    # 8 fixed, 1 broken, 3 unchanged: p = 2 * P(X <= 1 | n=9, 1/2) = 2 * (1 + 9) / 512
    before = [False] * 8 + [True] + [True, True, False]
    after = [True] * 8 + [False] + [True, True, False]
    change = paired_change(before, after)
    assert change["fixed"] == 8 and change["broken"] == 1
    assert change["p_value"] == pytest.approx(20 / 512)
    assert paired_change([True, False], [True, False])["p_value"] == 1.0  # nothing discordant
    assert paired_change([False] * 3 + [True] * 3, [True] * 3 + [False] * 3)["p_value"] == 1.0  # balanced: capped at 1
    with pytest.raises(ValueError, match="same episodes"):
        paired_change([True], [True, False])
