"""Anytime-valid sequential tests: stop an evaluation as soon as its question is decided.

An evaluation is expensive and most comparisons are decided long before the last episode, but
looking at a fixed-size test after every episode and stopping when it first says "significant"
inflates its error rate far above alpha.  The tests here keep their error rate however often
they are looked at and whenever the evaluation stops, because they are built on e-processes.

Method: a betting test martingale for the mean of outcomes in [0, 1] (Waudby-Smith & Ramdas 2023,
"Estimating means of bounded random variables by betting", JRSS-B), averaged over a fixed grid of
constant bets (a mixture of test martingales is one).  Against "mean <= m0", a bettor who stakes the
fraction ``c`` of its wealth multiplies it by ``1 + (c / m0) (y - m0)`` per outcome ``y``; under
the null that is a nonnegative supermartingale starting at 1, and so is the average ``E_n`` over
the grid.  Ville's inequality then gives ``P(E_n >= 1/a for some n) <= a``: stopping at the first
n with ``E_n >= 1/a`` is a level-``a`` test at any stopping time.  For 0/1 outcomes each bet is the
likelihood ratio of a Bernoulli alternative, so the grid average is Robbins' (1970) mixture
sequential probability ratio test with a uniform prior on the alternative.

Why this one for evaluations:

* outcomes arrive one at a time in seeded episode order and the run may stop after any of them;
  the guarantee holds at every n, not at one planned size;
* it needs neither an effect size nor a variance guess (Wald's SPRT needs the alternative), and
  takes any outcome in [0, 1]: success, a chain length divided by the chain length, and the
  paired difference of two agents on one episode, whose three values (-1, 0, +1) a
  discordant-pair SPRT cannot use for "no worse than delta";
* with a fixed grid, ``E_n`` is an average of products over the outcomes: a pure function of the
  outcomes so far, with no hidden state, so a resumed run recomputes exactly the test it interrupted.  The verdict
  is taken at the *first* n that crosses, so episodes finished after it (parallel workers, a
  resume) cannot change it.

In the paired test with margin 0, a pair both agents solve or both fail multiplies every bet by
exactly 1: like McNemar's test, it is decided by the discordant pairs alone.  Each verdict
(better, worse, no worse; above, below) is a one-sided test at alpha / 2; for any true difference
at most two of them can be wrong, so the chance of any wrong verdict is at most alpha.

The price of validity at every n: against a fixed-size test of equal power it saves little when
moderate power is asked for and much when high power is (or when the effect is larger than the
one planned for); benchmarks/bench_gate_stats.py measures both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from vlaeval.errors import VlaevalError

#: Betting fractions ``c`` of the grid (a uniform prior on the alternative for 0/1 outcomes).
#: Below 1, so one bad outcome never takes the whole wealth.
BETS = tuple(j / 21 for j in range(1, 21))
CONTINUE = "continue"


@dataclass(frozen=True)
class Decision:
    """What a sequential test says after ``n`` outcomes.

    ``verdict`` is ``"continue"`` until a test crosses its boundary, then the first crossing's
    verdict and ``n`` its sample size; ``statistic`` is that test's e-value (while undecided, the
    largest current e-value).  ``reason`` is one line for a log or a run's manifest.
    """

    verdict: str
    n: int
    statistic: float
    reason: str

    @property
    def decided(self) -> bool:
        return self.verdict != CONTINUE


@dataclass(frozen=True)
class ThresholdTest:
    """Is an agent's mean outcome (e.g. its success rate) above or below ``threshold``?

    Verdicts: ``"above"``, ``"below"`` or ``"continue"`` (at exactly the threshold it may never
    stop: give the run a budget of episodes).
    """

    threshold: float
    alpha: float = 0.05

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if not 0 < self.threshold < 1:
            raise VlaevalError(f"--threshold must be strictly between 0 and 1, not {self.threshold}")

    def decide(self, outcomes: Sequence[float]) -> Decision:
        """The decision after these outcomes, in seeded episode order (0/1 or values in [0, 1])."""
        y = _unit_values(outcomes, "outcome", 1)
        tests = (("above", log_e_values(y, self.threshold)), ("below", log_e_values(1 - y, 1 - self.threshold)))
        verdict, n, log_e = _first_crossing(tests, self.alpha, len(y))
        facts = f"{n} episodes" + (f", mean {y[:n].mean():.3f}" if n else "")
        if verdict == "above":
            return Decision(verdict, n, math.exp(log_e), f"above {self.threshold:g}: {_evidence(log_e, self.alpha)} after {facts}")
        if verdict == "below":
            return Decision(verdict, n, math.exp(log_e), f"below {self.threshold:g}: {_evidence(log_e, self.alpha)} after {facts}")
        return Decision(verdict, n, math.exp(log_e), f"undecided against {self.threshold:g} after {facts}: {_shortfall(log_e, self.alpha)}")


@dataclass(frozen=True)
class PairedTest:
    """Is agent B better or worse than agent A on the same seeded episodes, or no worse than ``delta``?

    Outcomes are pairs ``(a, b)`` in [0, 1], one per episode, in seeded episode order.  Verdicts:
    ``"better"`` (mean b - a > 0), ``"worse"`` (< 0), ``"no_worse"`` (> -delta; only with a
    ``delta``), or ``"continue"``.  When several cross at once, ``better`` wins over ``no_worse``.
    """

    alpha: float = 0.05
    delta: float | None = None

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.delta is not None and not 0 < self.delta < 1:
            raise VlaevalError(f"--delta must be strictly between 0 and 1, not {self.delta}")

    def decide(self, pairs: Sequence[tuple[float, float]]) -> Decision:
        """The decision after these pairs ``(a, b)``, in seeded episode order."""
        values = _unit_values(pairs, "paired outcome", 2) if len(pairs) else np.zeros((0, 2))
        a, b = values[:, 0], values[:, 1]
        y = (b - a + 1) / 2  # in [0, 1]; "no difference" is 1/2, "B worse by delta" is (1 - delta) / 2
        tests = [("better", log_e_values(y, 0.5)), ("worse", log_e_values(1 - y, 0.5))]
        if self.delta is not None:
            tests.append(("no_worse", log_e_values(y, (1 - self.delta) / 2)))
        verdict, n, log_e = _first_crossing(tests, self.alpha, len(y))
        diff = b[:n] - a[:n]
        facts = f"{n} pairs (B better on {int((diff > 0).sum())}, A better on {int((diff < 0).sum())}, mean B - A {diff.mean() if n else 0.0:+.3f})"
        if verdict == CONTINUE:
            return Decision(verdict, n, math.exp(log_e), f"undecided after {facts}: {_shortfall(log_e, self.alpha)}")
        claim = {"better": "B is better than A", "worse": "B is worse than A"}.get(verdict) or f"B is less than {self.delta:g} worse than A"
        return Decision(verdict, n, math.exp(log_e), f"{claim}: {_evidence(log_e, self.alpha)} after {facts}")


def log_e_values(values: np.ndarray, null_mean: float) -> np.ndarray:
    """Log e-value against "mean <= null_mean" after each of ``values`` (in [0, 1]), grid-averaged."""
    bets = np.asarray(BETS) / null_mean
    log_wealth = np.cumsum(np.log1p(np.outer(values - null_mean, bets)), axis=0)
    return np.logaddexp.reduce(log_wealth, axis=1) - math.log(len(BETS)) if len(values) else np.zeros(0)


def seeded_prefix(outcomes: Mapping[int, float]) -> list[float]:
    """Outcomes of episodes 0, 1, 2, ... up to the first one not finished yet.

    Parallel workers finish episodes out of order; the test must see them in seeded order, or
    which episodes it saw would depend on their outcomes' timing.
    """
    prefix = []
    while len(prefix) in outcomes:
        prefix.append(outcomes[len(prefix)])
    return prefix


def paired_prefix(reference: Mapping[int, float], outcomes: Mapping[int, float]) -> list[tuple[float, float]]:
    """``(reference, this run)`` pairs over the seeded prefix of this run's finished episodes."""
    prefix = seeded_prefix(outcomes)
    missing = next((i for i in range(len(prefix)) if i not in reference), None)
    if missing is not None:
        raise VlaevalError(f"the reference run has no episode {missing}: it must have run every episode this run plays")
    return [(reference[i], value) for i, value in enumerate(prefix)]


def _first_crossing(tests: Sequence[tuple[str, np.ndarray]], alpha: float, n_so_far: int) -> tuple[str, int, float]:
    """(verdict, n, log e-value) of the earliest boundary crossing; else continue with the largest e-value now."""
    boundary = math.log(2 / alpha)
    first: tuple[int, str, float] | None = None
    for verdict, log_e in tests:
        crossed = np.flatnonzero(log_e >= boundary)
        if len(crossed) and (first is None or crossed[0] < first[0]):
            first = (int(crossed[0]), verdict, float(log_e[crossed[0]]))
    if first is not None:
        return first[1], first[0] + 1, first[2]
    return CONTINUE, n_so_far, max((float(log_e[-1]) for _, log_e in tests), default=0.0) if n_so_far else 0.0


def _unit_values(values: Sequence[object], what: str, ndim: int) -> np.ndarray:
    """Outcomes as floats in [0, 1]: one per episode (``ndim`` 1) or one (a, b) pair per episode (2)."""
    hint = "a success as 0/1, a chain length divided by the chain length"
    shape = "numbers" if ndim == 1 else "(a, b) pairs of numbers"
    try:
        y = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise VlaevalError(f"{what}s must be {shape} in [0, 1], one per episode ({hint})") from None
    if y.ndim != ndim or (ndim == 2 and y.shape[1] != 2):
        raise VlaevalError(f"{what}s must be {shape} in [0, 1], one per episode ({hint})")
    bad = np.flatnonzero(~((y >= 0) & (y <= 1)).reshape(-1))
    if len(bad):
        raise VlaevalError(f"{what} {y.reshape(-1)[bad[0]]} is not in [0, 1] ({hint})")
    return y


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise VlaevalError(f"--alpha must be between 0 and 1, not {alpha}")


def _evidence(log_e: float, alpha: float) -> str:
    return f"e-value {math.exp(log_e):.1f} >= 2/alpha = {2 / alpha:g}"


def _shortfall(log_e: float, alpha: float) -> str:
    return f"largest e-value {math.exp(log_e):.2f}, a verdict needs 2/alpha = {2 / alpha:g}"
