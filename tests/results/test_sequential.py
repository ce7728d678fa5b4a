"""Anytime-valid sequential tests: hand-computed e-values, stopping, purity of the prefix, error rates."""

from __future__ import annotations

import numpy as np
import pytest

from vlaeval.errors import VlaevalError
from vlaeval.results.sequential import PairedTest, ThresholdTest, paired_prefix, seeded_prefix


def test_e_values_match_hand_computed_mixtures() -> None:
    # all successes against 0.5: each bet c = j/21 (j = 1..20) multiplies its wealth by 1 + c, and E_n is their mean
    test = ThresholdTest(0.5)
    assert test.decide([1]).statistic == pytest.approx(1.5)  # 1 + mean(c) = 1 + 10/20
    assert test.decide([1, 1]).statistic == pytest.approx(2 + 143.5 / 441)  # 1 + 2 mean(c) + mean(j^2)/441
    assert test.decide([1, 1, 1]).statistic == pytest.approx(26 / 7)
    # E_7 = 30.3 < 2/alpha = 40 <= E_8 = 53.4: the verdict comes at the 8th success
    decision = test.decide([1] * 12)
    assert (decision.verdict, decision.n, decision.decided) == ("above", 8, True)
    assert decision.statistic == pytest.approx(np.mean([(1 + j / 21) ** 8 for j in range(1, 21)]))
    assert decision.reason.startswith("above 0.5: e-value 53.4 >= 2/alpha = 40 after 8 episodes")
    # against 0.8 a success multiplies by 1 + (c/0.8) * 0.2, a failure by 1 - c; the "below" side bets on failures
    mixed = ThresholdTest(0.8).decide([1, 0])
    below = np.mean([(1 + (j / 21) / 0.2 * -0.2) * (1 + (j / 21) / 0.2 * 0.8) for j in range(1, 21)])
    above = np.mean([(1 + (j / 21) / 0.8 * 0.2) * (1 - j / 21) for j in range(1, 21)])
    assert mixed.verdict == "continue" and mixed.statistic == pytest.approx(max(below, above))


def test_paired_test_is_decided_by_discordant_pairs_alone() -> None:
    # a pair B wins is, against "no difference", exactly a success against 0.5
    wins = PairedTest().decide([(0, 1)] * 10)
    assert (wins.verdict, wins.n) == ("better", 8) and wins.statistic == pytest.approx(ThresholdTest(0.5).decide([1] * 8).statistic)
    losses = PairedTest().decide([(1, 0)] * 10)
    assert (losses.verdict, losses.n) == ("worse", 8)
    # concordant pairs (both solve, both fail) multiply every bet by exactly 1
    padded = PairedTest().decide([(1, 1), (0, 0), (1, 0), (1, 1), (1, 0), (0, 0), (0, 1)])
    plain = PairedTest().decide([(1, 0), (1, 0), (0, 1)])
    assert padded.verdict == plain.verdict == "continue" and padded.statistic == pytest.approx(plain.statistic)
    assert padded.reason.startswith("undecided after 7 pairs (B better on 1, A better on 2, mean B - A -0.143)")
    # with a margin, concordant pairs are evidence that B is not worse by delta: 52 ties decide it at delta 0.1
    tied = PairedTest(delta=0.1).decide([(1, 1)] * 80)
    assert (tied.verdict, tied.n) == ("no_worse", 52) and tied.reason.startswith("B is less than 0.1 worse than A")
    assert PairedTest().decide([(1, 1)] * 80).verdict == "continue"  # ...but never that it is better or worse


def test_clear_cases_stop_early_and_in_the_right_direction() -> None:
    rng = np.random.default_rng(7)
    good = rng.random(400) < 0.95
    decision = ThresholdTest(0.8).decide(good)
    assert decision.verdict == "above" and decision.n < 150
    assert ThresholdTest(0.8).decide(rng.random(400) < 0.5).verdict == "below"
    a, b = rng.random(600) < 0.8, rng.random(600) < 0.5
    decision = PairedTest().decide(list(zip(a, b)))
    assert decision.verdict == "worse" and decision.n < 200


def test_the_decision_is_a_pure_function_of_the_prefix_and_resuming_continues_it() -> None:
    rng = np.random.default_rng(3)
    pairs = [(float(x), float(y)) for x, y in zip(rng.random(300) < 0.7, rng.random(300) < 0.55)]
    test = PairedTest(delta=0.05)
    final = test.decide(pairs)
    assert final.decided and final == test.decide(list(pairs))  # deterministic
    # a runner asking after every episode stops at final.n and nowhere earlier
    asked = [test.decide(pairs[:k]) for k in range(len(pairs) + 1)]
    first = next(k for k, d in enumerate(asked) if d.decided)
    assert first == final.n and all(d == final for d in asked[first:])
    # interrupted mid-test, a resumed run recomputes the same state from the stored outcomes and goes on to the same verdict
    stored = dict(enumerate(pairs[: first // 2]))
    assert test.decide(list(stored.values())) == asked[first // 2]
    resumed = next(d for d in (test.decide(pairs[:k]) for k in range(len(stored), len(pairs) + 1)) if d.decided)
    assert resumed == final


def test_outcomes_are_taken_in_seeded_order() -> None:
    finished = {2: 1.0, 0: 0.0, 1: 1.0, 4: 1.0}  # episode 3 still running on another worker
    assert seeded_prefix(finished) == [0.0, 1.0, 1.0]
    assert paired_prefix({0: 1.0, 1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0}, finished) == [(1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    with pytest.raises(VlaevalError, match="the reference run has no episode 2"):
        paired_prefix({0: 1.0, 1: 1.0}, finished)


@pytest.mark.parametrize("test, outcomes, message", [
    (ThresholdTest(0.8), [0.5, 1.5], r"outcome 1.5 is not in \[0, 1\]"),
    (ThresholdTest(0.8), [[1, 0]], "outcomes must be numbers in"),
    (PairedTest(), [(1, 0, 1)], r"paired outcomes must be \(a, b\) pairs"),
    (PairedTest(), [(1, float("nan"))], r"paired outcome nan is not in \[0, 1\]"),
])
def test_bad_outcomes_are_one_line_errors(test: ThresholdTest | PairedTest, outcomes: list[object], message: str) -> None:
    with pytest.raises(VlaevalError, match=message):
        test.decide(outcomes)  # type: ignore[arg-type]


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(VlaevalError, match="--threshold must be strictly between 0 and 1, not 1"):
        ThresholdTest(1.0)
    with pytest.raises(VlaevalError, match="--alpha must be between 0 and 1, not 0"):
        PairedTest(alpha=0)
    with pytest.raises(VlaevalError, match="--delta must be strictly between 0 and 1, not 0"):
        PairedTest(delta=0)


def test_error_rates_on_null_sequences_stay_below_alpha() -> None:
    """A few hundred seeded null sequences of 300 episodes: wrong verdicts at most alpha, up to Monte-Carlo slack."""
    rng = np.random.default_rng(2024)
    runs, n, alpha = 300, 300, 0.05
    slack = 3 * np.sqrt(alpha * (1 - alpha) / runs)
    on_threshold = sum(ThresholdTest(0.7).decide(rng.random(n) < 0.7).decided for _ in range(runs))
    same_agent = sum(PairedTest().decide(list(zip(rng.random(n) < 0.6, rng.random(n) < 0.6))).decided for _ in range(runs))
    # B exactly delta worse: "no worse" and "better" are both wrong
    at_margin = sum(PairedTest(delta=0.1).decide(list(zip(rng.random(n) < 0.6, rng.random(n) < 0.5))).verdict in ("no_worse", "better")
                    for _ in range(runs))
    assert max(on_threshold, same_agent, at_margin) / runs <= alpha + slack
