"""The episode-budget planner against hand-computed binomial power and the gate's own tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli_process
from vlaeval.results.plan import (
    episodes_needed,
    expected_length_drop,
    fisher_power,
    length_power,
    minimum_detectable_difference,
    plan_budget,
)
from vlaeval.results.stats import Proportion, Values, worse_p_value

BASELINE_50 = Path(__file__).parents[2] / "results" / "calvin-expert-50"


def _binomial(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def test_power_against_a_fixed_baseline_by_hand() -> None:
    # Baseline 20/20; the run has 10 episodes at 80 %.  Fisher's one-sided p for x of 10 is
    # P(X <= x), X ~ Hypergeom(30 balls, x + 20 successes, 10 drawn), and X >= x (20 of the 30 are
    # the baseline's, all successes):  x = 7: P(X = 7) = C(27,7) C(3,3) / C(30,10) = 720/24360 = 0.0296
    # < 0.05;  x = 8: 1 - P(X=9) - P(X=10) = 1 - 400/870 - 380/870 = 0.103 >= 0.05.  So the test
    # rejects exactly x <= 7, and the power is P(Bin(10, 0.8) <= 7).
    assert math.comb(27, 7) / math.comb(30, 10) == pytest.approx(720 / 24360)
    assert 1 - (2 * math.comb(28, 9) + math.comb(28, 10)) / math.comb(30, 10) == pytest.approx(90 / 870)
    by_hand = 1 - sum(_binomial(k, 10, 0.8) for k in (8, 9, 10))
    assert by_hand == pytest.approx(0.3222004736)
    assert fisher_power(1.0, 0.2, 10, 0.05, baseline_n=20, baseline_successes=20) == pytest.approx(by_hand, abs=1e-12)


@pytest.mark.parametrize("rate, drop, n, n_base, level", [(0.7, 0.3, 6, 6, 0.1), (0.5, 0.25, 9, 5, 0.05), (0.95, 0.1, 12, 8, 0.2)])
def test_power_with_both_runs_drawn_enumerates_the_gates_own_test(rate: float, drop: float, n: int, n_base: int, level: float) -> None:
    """Every outcome pair, weighted by its binomial probability, judged by the gate's worse_p_value."""
    enumerated = sum(
        _binomial(xc, n, rate - drop) * _binomial(xb, n_base, rate)
        for xc in range(n + 1) for xb in range(n_base + 1)
        if worse_p_value(Proportion(xc, n), Proportion(xb, n_base)) < level
    )
    assert fisher_power(rate, drop, n, level, baseline_n=n_base) == pytest.approx(enumerated, abs=1e-10)


def test_episodes_needed_is_the_smallest_sufficient_size() -> None:
    def power(n: int) -> float:
        return fisher_power(0.9, 0.2, n, 0.05, baseline_n=n)

    n = episodes_needed(power, 0.8, 1000)
    assert n is not None and power(n) >= 0.8 > power(n - 1)
    assert episodes_needed(power, 0.8, n - 1) is None  # the suite has too few episodes
    # a 49/50 baseline cannot show a 5-point drop at one-sided 5 %, whatever the run's size:
    # even a run that pins 93 % exactly faces P(Bin(50, 0.93) >= 49) = 0.127 for the baseline
    assert 0.93**50 + 50 * 0.07 * 0.93**49 == pytest.approx(0.127, abs=1e-3)
    assert episodes_needed(lambda k: fisher_power(0.98, 0.05, k, 0.05, baseline_n=50, baseline_successes=49), 0.8, 1000) is None
    assert episodes_needed(lambda k: fisher_power(0.98, 0.05, k, 0.05, baseline_n=k), 0.8, 1000) is not None


def test_chain_length_drop_is_exact_and_the_simulated_test_follows_the_gates_bootstrap() -> None:
    lengths = np.array([5, 5, 4, 3, 5, 2, 0, 5, 1, 4] * 10, dtype=float)
    rate = 0.8
    # mean of min(L, G) with P(G >= k) = r^k, against a direct simulation of the thinning
    rng = np.random.default_rng(1)
    keep = 1 - 0.1 / rate
    kept = rng.random((200_000, 5)) < keep
    survived = np.where(kept.all(axis=1), 5, kept.argmin(axis=1))  # successes before the first thinned one
    simulated = np.minimum(np.resize(lengths, 200_000), survived).mean()
    assert lengths.mean() - expected_length_drop(lengths, rate, 0.1) == pytest.approx(simulated, abs=0.01)
    # the planner's normal test against the gate's bootstrap on the same data
    from scipy.stats import norm

    for seed in range(5):
        draw = np.random.default_rng(seed)
        current = np.minimum(lengths[draw.integers(0, 100, 100)], draw.geometric(1 - keep, 100) - 1)
        normal = norm.cdf((current.mean() - lengths.mean()) / math.sqrt(current.var(ddof=1) / 100 + lengths.var(ddof=1) / 100))
        assert normal == pytest.approx(worse_p_value(Values(tuple(current)), Values(tuple(lengths))), abs=0.01)
    assert length_power(lengths, rate, 0.0, 100, 0.05, fresh=True) <= 0.1  # no drop: about the level
    assert length_power(lengths, rate, 0.3, 100, 0.05, fresh=False) > 0.95


def test_minimum_detectable_difference_of_a_run() -> None:
    rows = pd.DataFrame({"setting": "s", "episode": range(100), "position": 1, "task": ["a", "b"] * 50,
                         "success": [True] * 80 + [False] * 20})
    detected = {(d.metric, d.task): d for d in minimum_detectable_difference(rows, alpha=0.05, power=0.8)}
    overall = detected[("success_rate", "*")]
    assert (overall.value, overall.n) == (0.8, 100)
    assert fisher_power(0.8, overall.difference, 100, 0.05, baseline_n=100) >= 0.8
    assert fisher_power(0.8, overall.difference - 0.002, 100, 0.05, baseline_n=100) < 0.8
    assert 0.1 < overall.difference < 0.25
    assert detected[("task_success", "a")].n == 50 and detected[("task_success", "a")].difference > overall.difference
    tiny = minimum_detectable_difference(rows.head(2), alpha=0.05, power=0.8)
    assert tiny[0].difference is None  # 2 episodes: not even a drop to 0 % is detectable


def test_plan_for_the_committed_calvin_baseline() -> None:
    plan = plan_budget("calvin", BASELINE_50, 0.1, alpha=0.05, power=0.8)
    assert plan.comparisons == 40 and plan.level == pytest.approx(0.05 / 40) and plan.limit == 1000
    rows = {(r.metric, r.task): r for r in plan.rows}
    success = rows[("success_rate", "*")]
    assert (success.baseline, success.baseline_n) == (0.96, 50)
    assert success.fresh is not None and fisher_power(0.96, 0.1, success.fresh, plan.level, baseline_n=success.fresh) >= 0.8
    assert rows[("avg_len", "*")].drop > 0.1  # every subtask 10 points worse shortens chains by more
    assert all(r.per_episode <= 1 for r in plan.rows if r.metric == "task_success")
    assert plan_budget("calvin", BASELINE_50, 0.1, correction="none").comparisons == 1


def test_plan_command_and_its_errors() -> None:
    done = run_cli_process("plan", "--suite", "calvin", "--baseline", str(BASELINE_50), "--detect", "0.1")
    assert done.returncode == 0, done.stderr
    assert "Holm-adjusted over 40 metrics" in done.stdout and "success_rate" in done.stdout
    for argv, message in ((["--detect", "1.5"], "--detect must be between 0 and 1"),
                          (["--detect", "0.1", "--suite", "simpler"], "is a run of suite calvin, not 'simpler'")):
        args = ["plan", "--suite", "calvin", "--baseline", str(BASELINE_50), *argv]
        bad = run_cli_process(*args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
