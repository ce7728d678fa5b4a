"""Error rates of the regression gate, of the paired compare and of the sequential tests, by simulation.

    python benchmarks/bench_gate_stats.py [--reps 300] [--episodes 200] [--seq-reps 1000] [--budgets 1000 2000] [--seed 0]

The simulated agent plays a CALVIN-like suite: chains of 5 distinct tasks drawn uniformly from
34, each task solved with a known probability (evenly spread over 0.78..0.98), a chain stopping
at its first failure.  Every replicate draws a fresh episode list (the seeded episodes are a
random sample of the suite's), and both runs of a pair play that same list, independently.
"A 10-point drop" scales every task's success probability by one factor so that the expected
whole-chain success rate (``success_rate``, = ``success@5``) falls by exactly 0.10 (its value
and the induced per-subtask and chain-length drops are printed).

(1) The gate: each replicate writes two real run directories (``episodes.jsonl`` through the
    store's ``EpisodeRecord`` and a finished ``manifest.json``) into a temporary directory and
    runs ``vlaeval.results.gate.run_gate(B, baseline=A)`` at alpha = 0.05 with its default (Holm)
    correction: the false-alarm rate is the share of failing gates when B is the same policy,
    the power the share failing when B is 10 points worse.
(2) The paired compare: the same directories through ``vlaeval.results.compare.compare_runs(A, B)``:
    the share of exact McNemar p < alpha on ``success_rate``, of sign-flip p < alpha on
    ``avg_len``, and of any row significant after Holm (the verdict line).
(3) The sequential tests (``vlaeval.results.sequential``) on whole-chain success, one outcome per
    chain in seeded order, stopped at a budget of episodes: ``PairedTest`` (B against A) and
    ``ThresholdTest`` (the agent against a threshold at, 10 points above and 10 below its
    success rate).  Against each, the fixed-size test of the same question at the same alpha
    (exact two-sided McNemar and binomial tests, twice the smaller tail as in
    ``stats.paired_change``: alpha/2 per side, like the sequential verdicts), whose power is
    computed exactly: "fixed n" is the fewest episodes at which it has the sequential test's
    power (at the point estimate, and at the lower end of its Monte-Carlo interval, which favours
    the fixed test); "mean n" counts a sequence still undecided at the budget as the budget.

Every rate has a 95 % Wilson interval over the replicates.  Goals (issue 13): false-alarm rates
at most alpha within their Monte-Carlo interval; the sequential test needing at most 50 % of the
fixed-size episodes at equal power.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.stats import binom

from vlaeval.results.stats import wilson_interval

TASKS = 34
CHAIN = 5
ALPHA = 0.05
DROP = 0.10
TASK_SUCCESS = np.linspace(0.78, 0.98, TASKS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=300, help="run pairs per gate/compare scenario (each writes two run directories)")
    parser.add_argument("--episodes", type=int, default=200, help="chains per run for the gate and compare")
    parser.add_argument("--seq-reps", type=int, default=1000, help="sequences per sequential scenario")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 2000], help="episode budgets of the sequential tests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scale = drop_factor(TASK_SUCCESS, DROP)
    success, sq = chain_moments(TASK_SUCCESS)
    print(f"simulated agent: {TASKS} tasks, chains of {CHAIN}, task success {TASK_SUCCESS.min():.2f}..{TASK_SUCCESS.max():.2f}; "
          f"success_rate {success:.3f}, avg_len {expected_length(TASK_SUCCESS):.3f}")
    print(f"10-point drop: task success x {scale:.4f} (mean {TASK_SUCCESS.mean():.3f} -> {(scale * TASK_SUCCESS).mean():.3f}); "
          f"success_rate {success:.3f} -> {chain_moments(scale * TASK_SUCCESS)[0]:.3f}, "
          f"avg_len {expected_length(TASK_SUCCESS):.3f} -> {expected_length(scale * TASK_SUCCESS):.3f}\n")

    start = time.perf_counter()
    gate_and_compare(args.reps, args.episodes, scale, np.random.default_rng(args.seed))
    print(f"({time.perf_counter() - start:.0f} s)\n")
    start = time.perf_counter()
    sequential(args.seq_reps, sorted(args.budgets), scale, np.random.default_rng(args.seed + 1))
    print(f"({time.perf_counter() - start:.0f} s)")


def gate_and_compare(reps: int, episodes: int, scale: float, rng: np.random.Generator) -> None:
    from vlaeval.results.compare import compare_runs
    from vlaeval.results.gate import run_gate

    print(f"(1) gate and (2) compare: {reps} run pairs per row, {episodes} chains each, run directories in a temporary directory; "
          f"alpha = {ALPHA}, gate correction holm (its default)")
    header = f"{'B':<26} {'gate fails':<24} {'McNemar success_rate':<24} {'sign-flip avg_len':<24} {'compare, any (Holm)':<24}"
    print(header)
    root = Path(tempfile.mkdtemp(prefix="vlaeval-bench-gate-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        for label, factor in (("same policy (false alarm)", 1.0), ("10 points worse (power)", scale)):
            counts = np.zeros(4, dtype=int)
            for r in range(reps):
                chains = draw_chains(episodes, rng)
                a = write_run(root / f"a{r}", chains, simulate(chains, TASK_SUCCESS, rng))
                b = write_run(root / f"b{r}", chains, simulate(chains, factor * TASK_SUCCESS, rng))
                gate = run_gate(b, a, alpha=ALPHA)
                compared = compare_runs(a, b, alpha=ALPHA)
                rows = {d.metric: d for d in compared.differences if d.task == "*"}
                counts += [not gate.passed, rows["success_rate"].p_value < ALPHA, rows["avg_len"].p_value < ALPHA, bool(compared.significant())]
                shutil.rmtree(a)
                shutil.rmtree(b)
            print(f"{label:<26} " + " ".join(f"{rate(k, reps):<24}" for k in counts))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sequential(reps: int, budgets: list[int], scale: float, rng: np.random.Generator) -> None:
    from vlaeval.results.sequential import PairedTest, ThresholdTest

    success, sq = chain_moments(TASK_SUCCESS)
    dropped = scale**CHAIN
    # P(A solves the chain, B does not) and the reverse, over random chains: E[pi (1 - s pi)], E[(1 - pi) s pi]
    a_only, b_only = success - dropped * sq, dropped * (success - sq)
    horizon = budgets[-1]
    print(f"(3) sequential tests on whole-chain success, alpha = {ALPHA}: {reps} sequences per scenario, budgets {budgets}")
    print(f"{'scenario':<34} {'budget':>6}  {'right verdict (power)':<22} {'wrong verdict':<22} {'mean n':>7} "
          f"{'fixed n':>8} {'ratio':>6}  {'fixed n, low':>12} {'ratio':>6}")

    def paired(factor: float) -> Callable[[], Any]:
        def run() -> Any:
            chains = draw_chains(horizon, rng)
            a = chain_success(simulate(chains, TASK_SUCCESS, rng))
            b = chain_success(simulate(chains, factor * TASK_SUCCESS, rng))
            return PairedTest(ALPHA).decide(list(zip(a, b)))
        return run

    def threshold(level: float) -> Callable[[], Any]:
        def run() -> Any:
            chains = draw_chains(horizon, rng)
            return ThresholdTest(level, ALPHA).decide(chain_success(simulate(chains, TASK_SUCCESS, rng)))
        return run

    scenarios = [
        ("paired, same policy", paired(1.0), None, None),
        ("paired, B 10 points worse", paired(scale), "worse", lambda n: mcnemar_power(n, a_only, b_only)),
        (f"threshold {success:.3f}, agent at it", threshold(success), None, None),
        (f"threshold {success + DROP:.3f}, agent 10 below", threshold(success + DROP), "below", lambda n: binomial_power(n, success, success + DROP)),
        (f"threshold {success - DROP:.3f}, agent 10 above", threshold(success - DROP), "above", lambda n: binomial_power(n, success, success - DROP)),
    ]
    for name, run, right, fixed_power in scenarios:
        decisions = [run() for _ in range(reps)]
        for budget in budgets:
            within = [d for d in decisions if d.decided and d.n <= budget]
            hits = sum(d.verdict == right for d in within)
            wrong = len(within) - hits
            mean_n = np.mean([d.n if d.decided and d.n <= budget else budget for d in decisions])
            line = f"{name:<34} {budget:>6}  {rate(hits, reps) if right else '-':<22} {rate(wrong, reps):<22} {mean_n:>7.0f}"
            if fixed_power is not None:
                power = min(hits / reps, 1 - 0.5 / reps)  # all hits: read as 1 - 1/(2 reps), not as certainty
                low = wilson_interval(hits, reps)[0]
                n_point, n_low = fewest_episodes(fixed_power, power), fewest_episodes(fixed_power, low)
                line += f" {n_point:>8} {mean_n / n_point:>6.2f}  {n_low:>12} {mean_n / n_low:>6.2f}"
            print(line)


def draw_chains(episodes: int, rng: np.random.Generator) -> np.ndarray:
    """Task indices, one row of CHAIN distinct tasks per episode."""
    return np.argsort(rng.random((episodes, TASKS)), axis=1)[:, :CHAIN]


def simulate(chains: np.ndarray, task_success: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-position outcomes of each chain as if it ran on after a failure (rows stop at the first failure)."""
    return rng.random(chains.shape) < task_success[chains]


def chain_success(outcomes: np.ndarray) -> np.ndarray:
    return outcomes.all(axis=1).astype(float)


def write_run(run_dir: Path, chains: np.ndarray, outcomes: np.ndarray) -> Path:
    """A finished run directory as the runner leaves it: one JSONL line per chain and a manifest."""
    from vlaeval.results.store import EPISODES_FILE, EpisodeRecord, write_manifest

    lines = []
    for episode, (tasks, oks) in enumerate(zip(chains, outcomes)):
        rows = []
        for position, (task, ok) in enumerate(zip(tasks, oks), 1):
            rows.append({"run_id": run_dir.name, "agent": "simulated", "suite": "calvin-like", "suite_version": "1", "setting": "D->D",
                         "task": f"task_{task:02d}", "episode": episode, "position": position, "seed": episode, "success": bool(ok),
                         "steps": 100, "wall_time": 0.1, "error": None, "instruction": ""})
            if not ok:
                break
        lines.append(EpisodeRecord(episode, episode, tuple(rows)).to_json())
    run_dir.mkdir(parents=True)
    (run_dir / EPISODES_FILE).write_text("\n".join(lines) + "\n")
    write_manifest(run_dir, {"run_id": run_dir.name, "status": "finished", "config": {"episodes": len(chains)},
                             "suite": {"name": "calvin-like", "version": "1", "protocol": {"chain_length": CHAIN}}})
    return run_dir


def elementary_symmetric(values: np.ndarray, k: int) -> float:
    """e_k(values): the sum over k-subsets of their products."""
    e = np.zeros(k + 1)
    e[0] = 1.0
    for v in values:
        e[1:] = e[1:] + v * e[:-1]
    return float(e[k])


def chain_moments(task_success: np.ndarray) -> tuple[float, float]:
    """E[pi] and E[pi^2] over random chains, pi being a chain's success probability."""
    subsets = math.comb(TASKS, CHAIN)
    return elementary_symmetric(task_success, CHAIN) / subsets, elementary_symmetric(task_success**2, CHAIN) / subsets


def expected_length(task_success: np.ndarray) -> float:
    """E[consecutive successes] = sum over k of P(the first k tasks succeed)."""
    return sum(elementary_symmetric(task_success, k) / math.comb(TASKS, k) for k in range(1, CHAIN + 1))


def drop_factor(task_success: np.ndarray, drop: float) -> float:
    """The factor on every task's success that lowers the expected whole-chain success by ``drop``."""
    success = chain_moments(task_success)[0]
    return float(((success - drop) / success) ** (1 / CHAIN))


def mcnemar_power(n: int, a_only: float, b_only: float) -> float:
    """Exact power of the two-sided exact McNemar test to find B worse, with n pairs."""
    d = np.arange(1, n + 1)
    # the largest number of B-only pairs k with 2 P(Bin(d, 1/2) <= k) <= alpha; B is called worse iff b_only <= k
    k = binom.ppf(ALPHA / 2, d, 0.5)
    k = np.where(binom.cdf(k, d, 0.5) <= ALPHA / 2, k, k - 1)
    share_a = a_only / (a_only + b_only)
    found = np.where(k >= 0, binom.cdf(k, d, 1 - share_a), 0.0)
    return float(np.sum(binom.pmf(d, n, a_only + b_only) * found))


def binomial_power(n: int, true: float, threshold: float) -> float:
    """Exact power of the two-sided exact binomial test against ``threshold`` to find the true side, with n episodes."""
    x = np.arange(n + 1)
    if true < threshold:
        rejects = binom.cdf(x, n, threshold) <= ALPHA / 2
    else:
        rejects = binom.sf(x - 1, n, threshold) <= ALPHA / 2
    return float(binom.pmf(x, n, true)[rejects].sum())


def fewest_episodes(power: Callable[[int], float], target: float, limit: int = 100_000) -> int:
    """The smallest n from which the fixed-size test has at least ``target`` power (bisection; power rises with n up to sawteeth)."""
    low, high = 1, 2
    while power(high) < target:
        low, high = high, 2 * high
        if high > limit:
            return limit
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if power(mid) < target else (low, mid)
    return low


def rate(k: int, n: int) -> str:
    low, high = wilson_interval(k, n)
    return f"{k / n:.3f} [{low:.3f}, {high:.3f}]"


if __name__ == "__main__":
    main()
