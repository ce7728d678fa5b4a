"""Episode budgets: how many episodes must a run have for the gate to catch a given drop?

A gate that passes says "not significantly worse", which means little when the run was too small
to see the drop that matters.  This module computes the power of the gate's own test
(:func:`vlaeval.results.stats.worse_p_value`, one-sided, Holm-adjusted across metrics) from a
baseline's results, and from it the episodes a run needs, and, for a run already made, the
smallest drop it could have detected.

* **Success rates** (the suite's success rate and each task's): exact.  The gate's Fisher test
  p-value is the hypergeometric tail ``P(X <= x_run)`` of the 2x2 table, so the power is the sum
  of the binomial probabilities of every outcome the test rejects.  *Against this baseline* keeps
  the baseline's observed counts fixed (the gate compares with that very run) and draws the new
  run at the baseline's rate minus the drop; *fresh* draws both runs, each with n episodes (a
  baseline to be recorded too).
* **Average chain length**: simulated.  New chains are baseline chains resampled and thinned (each
  success kept with probability ``1 - drop / p``, ``p`` the baseline's per-subtask success rate, so
  every subtask succeeds ``drop`` less often and a chain stops at its first failure).  The gate's
  bootstrap test of the difference of means is replaced by the normal test with the same
  standard error, which it approaches; 2000 simulated runs per n, fixed seed.
* **Multiple comparisons**: with Holm's correction over ``m`` metrics, the first metric rejected
  must have ``p < alpha / m``; that level is used.  It gives a lower bound on the chance of
  failing the gate, tight when only the planned metric drops (then it misses only the rare case
  of another metric's false alarm lowering the bar) and conservative when others drop with it.

Per-task budgets count attempts and convert them to episodes with the baseline's attempts per
episode (in chains, later tasks are attempted only after earlier ones succeed).  Exact-test power
is slightly saw-toothed in n; the smallest n is found by bisection, so an n a little above it
can fall marginally short.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from vlaeval.errors import VlaevalError
from vlaeval.results.report import Report, build_report, counted_results

#: Simulated runs per power estimate of the average chain length.
SIMULATIONS = 2000
SIMULATION_SEED = 0
#: Binomial tail mass left out of the exact sums (on each side; keeps the tables small).
TAIL = 1e-12


@dataclass(frozen=True)
class PlanRow:
    """Episodes needed to detect a drop in one metric.

    Attributes:
        setting, metric, task: which metric (``task == "*"``: the whole setting).
        baseline: its baseline value (a rate, or the mean chain length).
        baseline_n: units in the baseline (episodes, or a task's attempts).
        per_episode: units per episode in the baseline (1 for episode-level metrics).
        drop: the drop to detect, in the metric's units (for ``avg_len``, what a per-subtask drop
            of ``detect`` does to the mean chain length).
        against_baseline: episodes a new run needs against this baseline as it is, or None when no
            run up to ``limit`` episodes gets there (the baseline itself is too small).
        fresh: episodes for each of a new baseline and a new run, or None beyond ``limit``.
    """

    setting: str
    metric: str
    task: str
    baseline: float
    baseline_n: int
    per_episode: float
    drop: float
    against_baseline: int | None
    fresh: int | None


@dataclass(frozen=True)
class Plan:
    """The planner's answer for one baseline."""

    suite: str
    baseline: str
    detect: float
    alpha: float
    power: float
    comparisons: int
    limit: int
    rows: tuple[PlanRow, ...]

    @property
    def level(self) -> float:
        """The one-sided level each metric is tested at (Holm's first step)."""
        return self.alpha / self.comparisons

    def table(self) -> str:
        from tabulate import tabulate

        def episodes(n: int | None) -> str:
            return f"> {self.limit} (all)" if n is None else str(n)

        header = (f"{self.suite}: episodes needed to detect a {self.detect:g} drop with power {self.power:g}, one-sided "
                  f"alpha {self.alpha:g}" + (f" Holm-adjusted over {self.comparisons} metrics (first step: p < {self.level:.3g})"
                                             if self.comparisons > 1 else "") + f"; baseline {self.baseline}")
        body = tabulate(
            [[r.setting, r.metric, r.task, f"{r.baseline:.3f}", r.baseline_n, f"-{r.drop:.3f}", episodes(r.against_baseline), episodes(r.fresh)]
             for r in self.rows],
            headers=["setting", "metric", "task", "baseline", "n", "drop", "vs this baseline", "fresh (both runs)"],
            tablefmt="plain", disable_numparse=True,
        )
        notes = ("vs this baseline: episodes for a new run gated against the baseline as it is; fresh: episodes for each of "
                 f"a new baseline and the run; > {self.limit} (all): not even every episode of the setting gets there (against "
                 "this baseline: the baseline is too small).\ntasks: attempts needed, converted to episodes with the baseline's "
                 "attempts per episode; avg_len: every subtask succeeding `detect` less often lowers it by `drop`.")
        return f"{header}\n{body}\n{notes}\n"


@dataclass(frozen=True)
class Detectable:
    """The smallest drop a run of this size detects with the requested power (None: not even a
    drop to zero), against a baseline of the same size."""

    setting: str
    metric: str
    task: str
    value: float
    n: int
    difference: float | None


def fisher_power(rate: float, drop: float, n: int, level: float, *, baseline_n: int, baseline_successes: int | None = None) -> float:
    """Power of the gate's one-sided Fisher test at ``level`` for a run of ``n`` at ``rate - drop``.

    With ``baseline_successes`` the baseline's counts are fixed (``rate`` should then be
    ``baseline_successes / baseline_n``); without, the baseline is drawn too, ``baseline_n`` at ``rate``.
    """
    from scipy.stats import binom, hypergeom

    current = min(max(rate - drop, 0.0), 1.0)
    xc = _support(n, current)
    if baseline_successes is None:
        xb = _support(baseline_n, rate)
        weights_b = binom.pmf(xb, baseline_n, rate)
    else:
        xb, weights_b = np.array([baseline_successes]), np.array([1.0])
    grid_c, grid_b = np.meshgrid(xc, xb, indexing="ij")
    p_values = hypergeom.cdf(grid_c, n + baseline_n, grid_c + grid_b, n)
    return float(binom.pmf(xc, n, current) @ (p_values < level) @ weights_b)


def length_power(lengths: Sequence[float], subtask_rate: float, drop: float, n: int, level: float, *, fresh: bool,
                 simulations: int = SIMULATIONS) -> float:
    """Power of the gate's average-chain-length test for a run of ``n`` chains whose every subtask
    succeeds ``drop`` less often than the baseline's (chains resampled from ``lengths``).

    ``fresh=False`` keeps the baseline's chains as they are; ``True`` draws a new baseline of ``n`` too.
    """
    from scipy.stats import norm

    rng = np.random.default_rng(SIMULATION_SEED)
    base = np.asarray(lengths, dtype=float)
    current = _thinned(base[rng.integers(0, len(base), (simulations, n))], subtask_rate, drop, rng)
    if fresh:
        reference = base[rng.integers(0, len(base), (simulations, n))]
        mean_b, var_b, n_b = reference.mean(axis=1), reference.var(axis=1, ddof=1) if n > 1 else 0.0, n
    else:
        mean_b, var_b, n_b = base.mean(), base.var(ddof=1) if len(base) > 1 else 0.0, len(base)
    diff = current.mean(axis=1) - mean_b
    se = np.sqrt((current.var(axis=1, ddof=1) if n > 1 else 0.0) / n + var_b / n_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_values = np.where(se > 0, norm.cdf(diff / np.where(se > 0, se, 1.0)), np.where(diff < 0, 0.0, 1.0))
    return float(np.mean(p_values < level))


def expected_length_drop(lengths: Sequence[float], subtask_rate: float, drop: float) -> float:
    """How much a per-subtask drop lowers the mean chain length (exact: thinned length
    ``min(L, G)`` with ``P(G >= k) = r^k`` has mean ``sum_{k<=L} r^k``)."""
    keep = _keep(subtask_rate, drop)
    base = np.asarray(lengths, dtype=float)
    kept = base if keep >= 1 else (np.zeros_like(base) if keep <= 0 else keep * (1 - keep**base) / (1 - keep))
    return float(base.mean() - kept.mean())


def episodes_needed(power_at: Callable[[int], float], target: float, limit: int) -> int | None:
    """The smallest n in 1..limit with ``power_at(n) >= target`` (bisection), or None."""
    if limit < 1 or power_at(limit) < target:
        return None
    low, high = 0, 1  # power_at(low) < target (by convention for 0) <= power_at(high) once found
    while high < limit and power_at(high) < target:
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if power_at(mid) >= target else (mid, high)
    return high


def plan_budget(suite: str, baseline: str | os.PathLike[str], detect: float, *, alpha: float = 0.05, power: float = 0.8,
                correction: str = "holm") -> Plan:
    """Episodes needed to detect a ``detect`` drop in every setting of a baseline run, per metric."""
    from vlaeval.plugins.manager import load_suite, suite_spec
    from vlaeval.results.store import load_results

    _check_levels(detect, alpha, power)
    if correction not in ("holm", "none"):
        raise VlaevalError(f"--correction must be holm or none, not {correction!r}")
    spec = suite_spec(suite)
    rows = load_results(baseline)
    if rows.empty:
        raise VlaevalError(f"{baseline} holds no finished episodes to plan from")
    suites = sorted(set(rows["suite"]))
    if suites != [spec.name]:
        raise VlaevalError(f"{baseline} is a run of suite {', '.join(suites)}, not {spec.name!r}")
    metrics = build_report([baseline]).metrics
    out: list[PlanRow] = []
    limits = []
    comparisons = 1
    for setting, frame in rows.groupby("setting", sort=False):
        limit = len(load_suite(spec).episodes(str(setting), spec.protocol.seed))
        limits.append(limit)
        m = sum(1 for x in metrics if x.setting == setting) if correction == "holm" else 1
        comparisons = max(comparisons, m)
        out += _plan_setting(str(setting), frame, detect, alpha / max(m, 1), power, limit)
    return Plan(spec.name, str(baseline), detect, alpha, power, comparisons, max(limits), tuple(out))


def minimum_detectable_difference(rows: Any, alpha: float = 0.05, power: float = 0.8, comparisons: int = 1, *,
                                  tasks: bool = True) -> tuple[Detectable, ...]:
    """Per setting, the smallest drop in the success rate, the average chain length (chained
    suites) and each task's success rate that a run of this size detects with ``power``, if a
    baseline of the same size at these rates were gated against it (Fisher at ``alpha /
    comparisons``; the chain length by simulation).  ``rows`` is a results table (:func:`vlaeval.load_results`).

    ``tasks=False`` leaves out the per-task rows: ``vlaeval report`` prints one line per setting,
    and 34 calvin tasks would triple its time for numbers it does not show."""
    _check_levels(0.5, alpha, power)
    level = alpha / comparisons
    out: list[Detectable] = []
    for setting, frame in rows.groupby("setting", sort=False):
        success = frame.groupby("episode")["success"].all()
        n, rate = len(success), float(success.mean())
        out.append(Detectable(str(setting), "success_rate", "*", rate, n,
                              _smallest_drop(lambda d: fisher_power(rate, d, n, level, baseline_n=n), rate, power)))
        if frame["position"].max() > 1:
            lengths, subtask_rate = _chain_lengths(frame)
            d = _smallest_drop(lambda d: length_power(lengths, subtask_rate, d, n, level, fresh=True), subtask_rate, power)
            out.append(Detectable(str(setting), "avg_len", "*", float(np.mean(lengths)), n,
                                  None if d is None else expected_length_drop(lengths, subtask_rate, d)))
        for task, attempts in frame.groupby("task", sort=True) if tasks else ():
            k, r = len(attempts), float(attempts["success"].mean())
            out.append(Detectable(str(setting), "task_success", str(task), r, k,
                                  _smallest_drop(lambda d, k=k, r=r: fisher_power(r, d, k, level, baseline_n=k), r, power)))
    return tuple(out)


def _plan_setting(setting: str, frame: Any, detect: float, level: float, power: float, limit: int) -> list[PlanRow]:
    success = frame.groupby("episode")["success"].all()
    n, x = len(success), int(success.sum())
    rate = x / n
    rows = [PlanRow(setting, "success_rate", "*", rate, n, 1.0, min(detect, rate),
                    episodes_needed(lambda k: fisher_power(rate, detect, k, level, baseline_n=n, baseline_successes=x), power, limit),
                    episodes_needed(lambda k: fisher_power(rate, detect, k, level, baseline_n=k), power, limit))]
    if frame["position"].max() > 1:
        lengths, subtask_rate = _chain_lengths(frame)
        rows.append(PlanRow(
            setting, "avg_len", "*", float(np.mean(lengths)), n, 1.0, expected_length_drop(lengths, subtask_rate, detect),
            episodes_needed(lambda k: length_power(lengths, subtask_rate, detect, k, level, fresh=False), power, limit),
            episodes_needed(lambda k: length_power(lengths, subtask_rate, detect, k, level, fresh=True), power, limit)))
    for task, attempts in frame.groupby("task", sort=True):
        k, xt = len(attempts), int(attempts["success"].sum())
        r, per_episode = xt / k, k / n
        most = int(limit * per_episode)

        def to_episodes(units: int | None, per_episode: float = per_episode) -> int | None:
            return None if units is None else min(limit, math.ceil(units / per_episode))

        rows.append(PlanRow(
            setting, "task_success", str(task), r, k, per_episode, min(detect, r),
            to_episodes(episodes_needed(lambda u, r=r, k=k, xt=xt: fisher_power(r, detect, u, level, baseline_n=k, baseline_successes=xt),
                                        power, most)),
            to_episodes(episodes_needed(lambda u, r=r: fisher_power(r, detect, u, level, baseline_n=u), power, most))))
    return rows


def _chain_lengths(frame: Any) -> tuple[np.ndarray, float]:
    """(consecutive successes of each chain, per-subtask success rate over all attempts)."""
    from vlaeval.results.metrics import chain_lengths

    return chain_lengths(frame).to_numpy(dtype=float), float(frame["success"].mean())


def _thinned(lengths: np.ndarray, subtask_rate: float, drop: float, rng: np.random.Generator) -> np.ndarray:
    """Chains whose every success survives with probability ``1 - drop / subtask_rate``."""
    keep = _keep(subtask_rate, drop)
    if keep >= 1:
        return lengths
    if keep <= 0:
        return np.zeros_like(lengths)
    survived = np.floor(np.log1p(-rng.random(lengths.shape)) / math.log(keep))  # geometric: P(G >= k) = keep^k
    return np.minimum(lengths, survived)


def _keep(subtask_rate: float, drop: float) -> float:
    return 0.0 if subtask_rate <= 0 else 1.0 - drop / subtask_rate


def _smallest_drop(power_at: Callable[[float], float], rate: float, target: float, tolerance: float = 1e-3) -> float | None:
    """The smallest drop in (0, rate] with ``power_at(drop) >= target`` (bisection), or None."""
    if rate <= 0 or power_at(rate) < target:
        return None
    low, high = 0.0, rate
    while high - low > tolerance:
        mid = (low + high) / 2
        low, high = (low, mid) if power_at(mid) >= target else (mid, high)
    return high


def _support(n: int, p: float) -> np.ndarray:
    """Binomial outcomes outside of which at most :data:`TAIL` mass lies on each side."""
    from scipy.stats import binom

    if p <= 0:
        return np.array([0])
    if p >= 1:
        return np.array([n])
    return np.arange(int(binom.ppf(TAIL, n, p)), int(binom.isf(TAIL, n, p)) + 1)


def _check_levels(detect: float, alpha: float, power: float) -> None:
    for name, value in (("--detect", detect), ("--alpha", alpha), ("--power", power)):
        if not 0 < value < 1:
            raise VlaevalError(f"{name} must be between 0 and 1, not {value}")


#: The power and level at which reports state the smallest drop a run could have detected.
DETECTABLE_POWER = 0.8
DETECTABLE_ALPHA = 0.05


def detectable(report: Report, alpha: float = DETECTABLE_ALPHA, power: float = DETECTABLE_POWER) -> list[dict[str, Any]]:
    """Per run and setting, the smallest drop in success rate (and average chain length) that a
    one-sided test at ``alpha`` detects with ``power`` against a baseline of the run's size
    (:func:`minimum_detectable_difference`); None: not even a drop to zero.

    Computed on demand (about half a second for 1000 chains), not by :func:`build_report`,
    which the gate and the planner call for the metrics alone.
    """
    frames: dict[str, Any] = {}
    out = []
    for r in report.runs:
        rows = frames.setdefault(r.run_dir, counted_results(r.run_dir))
        rows = rows[(rows["suite"] == r.suite) & (rows["setting"] == r.setting)]
        drops = {d.metric: d.difference for d in minimum_detectable_difference(rows, alpha, power, tasks=False)}
        out.append({"run": r.label, "suite": r.suite, "setting": r.setting, "episodes": r.episodes, "chained": r.chain_length > 1,
                    "alpha": alpha, "power": power, "success_rate": drops["success_rate"], "avg_len": drops.get("avg_len")})
    return out

def detectable_lines(report: Report) -> list[str]:
    """:func:`detectable` as one sentence per run and setting."""
    lines = []
    several = len(report.runs) > 1
    for d in detectable(report):
        unit = "chains" if d["chained"] else "episodes"
        if d["success_rate"] is None:
            drop = "no drop in success_rate"
        else:
            drop = f"a drop of {100 * d['success_rate']:.1f} points in success_rate"
            if d["avg_len"] is not None:
                drop += f" (or of {d['avg_len']:.2f} in avg_len)"
        where = f"{d['run']} · {d['setting']}: " if several else ""
        lines.append(f"{where}with {d['episodes']} {unit}, {drop} would be detected with {d['power']:.0%} power at one-sided "
                     f"alpha {d['alpha']:g} against a baseline of the same size")
    return lines
