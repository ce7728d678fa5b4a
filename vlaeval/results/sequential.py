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

``vlaeval run --until decided`` runs one of these tests as episodes finish: :class:`StoppingRule`
is the test's part of the run's config, :class:`SequentialRun` its state during the run, and
:func:`reference_outcomes` the checked episode-by-episode outcomes of the run it is paired with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

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


@dataclass(frozen=True)
class StoppingRule:
    """``vlaeval run --until decided``: the sequential test that ends a run once it decides.

    Exactly one of ``against`` (a run directory on identical episodes: :class:`PairedTest` of this
    run, B, against that one, A, episode by episode) and ``threshold`` (:class:`ThresholdTest` of
    this run's success rate); ``delta`` is the paired test's no-worse margin.  Outcomes are episode
    successes (whole chains for chained suites), the report's ``success_rate``.  The rule is part
    of the run's saved config and of its config hash: a resumed run continues the same test, and
    a rule edited in the manifest is refused like any other edited config field.
    """

    alpha: float = 0.05
    against: str | None = None
    threshold: float | None = None
    delta: float | None = None

    def __post_init__(self) -> None:
        if self.against is not None:  # absolute, so a resume from another directory finds the same run
            object.__setattr__(self, "against", str(Path(self.against).resolve()))
        if (self.against is None) == (self.threshold is None):
            raise VlaevalError("--until decided needs either --against RUN (a paired test) or --threshold RATE, not "
                               + ("both" if self.against is not None else "neither"))
        if self.delta is not None and self.against is None:
            raise VlaevalError("--delta is the margin of the paired test: pass it with --against RUN")
        self.test()  # the tests check alpha, threshold and delta

    def test(self) -> PairedTest | ThresholdTest:
        if self.against is not None:
            return PairedTest(self.alpha, self.delta)
        assert self.threshold is not None
        return ThresholdTest(self.threshold, self.alpha)

    def describe(self) -> str:
        """E.g. ``paired test against runs/base at alpha 0.05`` (for the CLI and the report)."""
        if self.against is not None:
            margin = f", no-worse margin {self.delta:g}" if self.delta is not None else ""
            return f"paired test against {self.against} at alpha {self.alpha:g}{margin}"
        return f"threshold test against {self.threshold:g} at alpha {self.alpha:g}"

    @classmethod
    def from_config(cls, value: Mapping[str, Any], where: str) -> StoppingRule:
        """The rule saved in a manifest (a file people edit): a one-line error when it is not one."""
        try:
            return cls(**value)
        except TypeError as exc:
            raise VlaevalError(f"{where}: config.until is not a stopping rule ({exc}); restore it to resume the run") from None


class SequentialRun:
    """A run's sequential test while its episodes finish, in any order.

    Only the contiguous prefix of finished episodes in seeded order is tested
    (:func:`seeded_prefix`), so the decision and its ``n`` are the same for any number of
    workers, and the first decision stands: the episodes that finish after it change nothing.
    """

    def __init__(self, rule: StoppingRule, outcomes: Mapping[int, float], reference: Mapping[int, float] | None = None) -> None:
        if (reference is None) != (rule.against is None):
            raise ValueError("a paired rule needs the reference run's outcomes, a threshold rule none")
        self.rule, self.reference = rule, reference
        self._test = rule.test()
        self._outcomes = dict(outcomes)
        self.decision = self._decide()

    def add(self, episode: int, outcome: float) -> Decision:
        """Count one finished episode and return the decision so far."""
        self._outcomes[episode] = outcome
        if not self.decision.decided:
            self.decision = self._decide()
        return self.decision

    def record(self) -> dict[str, Any]:
        """The decision as the run's manifest keeps it; for a paired test also a hash of the
        reference outcomes it pairs with, which a resumed run checks (:func:`outcomes_hash`)."""
        out: dict[str, Any] = {"test": self.rule.describe(), **dataclasses.asdict(self.decision)}
        if self.reference is not None:
            n = len(self.reference)
            out["reference"] = {"run_dir": self.rule.against, "episodes": n, "sha256": outcomes_hash(self.reference, n)}
        return out

    def _decide(self) -> Decision:
        if self.reference is None:
            return self._test.decide(seeded_prefix(self._outcomes))
        return self._test.decide(paired_prefix(self.reference, self._outcomes))


def reference_outcomes(run_dir: str | os.PathLike[str], *, suite: str, version: str, setting: str,
                       episodes: Sequence[tuple[int, int, Sequence[str]]]) -> dict[int, float]:
    """Success (0/1) of each planned episode in the reference run, checked to be the same episodes.

    ``episodes`` are the planned ``(index, seed, tasks)``.  Pairing is only meaningful on identical
    episodes, so the check is :func:`vlaeval.results.compare.check_same_episodes` (suite and
    version, setting, seeds, tasks), and every planned episode must be in the reference: the test
    pairs each episode of this run with the reference's, and cannot wait for one that never comes.
    """
    import pandas as pd

    from vlaeval.results.compare import check_same_episodes
    from vlaeval.results.store import load_results

    rows = load_results(run_dir)
    planned = {index for index, _, _ in episodes}
    missing = sorted(planned - set(rows["episode"]))
    if missing:
        raise VlaevalError(f"--against {run_dir} has no result for {len(missing)} of the {len(planned)} episodes this run plans "
                           f"(the first is episode {missing[0]}); pass --episodes {reference_size(run_dir) or 'N'} or less, or finish that run")
    rows = rows[rows["episode"].isin(planned)]
    plan = pd.DataFrame([{"suite": suite, "suite_version": version, "setting": setting, "episode": index, "position": position,
                          "seed": seed, "task": task} for index, seed, tasks in episodes for position, task in enumerate(tasks, 1)])
    check_same_episodes(rows, plan, (f"--against {run_dir}", "this run"))
    return {int(i): float(ok) for i, ok in rows.groupby("episode")["success"].all().items()}


def reference_size(run_dir: str | os.PathLike[str]) -> int:
    """How many episodes ``0..n-1`` a run has finished: what a run paired with it can plan."""
    from vlaeval.results.store import load_results

    finished = set(load_results(run_dir)["episode"])
    n = 0
    while n in finished:
        n += 1
    return n


def outcomes_hash(outcomes: Mapping[int, float], n: int) -> str:
    """SHA-256 of the outcomes of episodes ``0..n-1``: a resumed paired test checks with it that
    its reference run still has the results the test began with."""
    return hashlib.sha256(",".join(f"{i}:{outcomes[i]:g}" for i in range(n)).encode()).hexdigest()


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
