"""Runtime parity: does an agent score the same on torch, ONNX Runtime and TensorRT?

An exported graph can change a score without any error: a fused kernel, a different reduction
order, FP16, an op exported with other semantics.  Two measurements answer two questions, and
neither can stand in for the other:

* **Closed loop** (what a user gets): every runtime evaluates the same episodes (same indices and
  seeds) through :func:`vlaeval.evaluate`, each into its own run directory with its own manifest.
  Success is compared pair by pair on identical episodes with
  :func:`vlaeval.results.compare.compare_runs` (exact McNemar and Newcombe's paired interval; for
  chains also the average length), and the rows (success and steps of every subtask) are checked
  for equality.
* **Open loop** (why they differ): per-step action differences must be measured on the *same*
  observations.  In closed loop the first tiny difference moves the arm elsewhere, and from then
  on the runtimes see different frames, so a per-step comparison would measure how far the
  trajectories drifted apart, not the runtimes.  So one environment is driven by the reference
  runtime (the first one) through the runner's own episode loop
  (:func:`~vlaeval.evaluators.episode.run_episode`), and at every step every other runtime is
  asked for its action on that same observation; each keeps its own state (history window,
  action queue) computed by its own kernels, as it would in deployment.  The replay must
  reproduce the reference's closed-loop rows, which also checks that the agent and the suite are
  deterministic.

The open-loop pass builds the agents in this process (the runner plays named agents in
supervised workers; a parity check is a diagnostic run on a trusted agent).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.guards import DEFAULT_STEP_TIMEOUT

PARITY_FILE = "parity.json"


@dataclass(frozen=True)
class ActionDifference:
    """Per-step ``|action - reference action|`` of one runtime on the reference's observations."""

    runtime: str
    steps: int
    max_abs: float
    mean_abs: float
    max_abs_per_dim: tuple[float, ...]
    differing_steps: int  # steps whose actions are not bit-identical


@dataclass(frozen=True)
class ClosedLoop:
    """One runtime's own evaluation and how it compares with the reference runtime's."""

    runtime: str
    run_dir: str
    episodes: int
    success_rate: float
    avg_len: float | None
    same_rows: int  # episodes whose (success, steps) of every subtask equal the reference's
    difference: float | None  # success rate minus the reference's (None for the reference)
    low: float | None
    high: float | None
    p_value: float | None  # exact McNemar, two-sided
    avg_len_difference: float | None = None
    avg_len_low: float | None = None
    avg_len_high: float | None = None


@dataclass(frozen=True)
class ParityResult:
    """Both measurements for every runtime; the first runtime is the reference."""

    agent: str
    suite: str
    setting: str
    reference: str
    closed_loop: tuple[ClosedLoop, ...]
    open_loop: tuple[ActionDifference, ...]
    replay_matches: int  # episodes whose open-loop replay reproduced the reference's closed-loop rows
    out: str

    def table(self) -> str:
        from tabulate import tabulate

        n = self.closed_loop[0].episodes
        chains = self.closed_loop[0].avg_len is not None
        closed = tabulate(
            [[c.runtime, c.run_dir, f"{c.success_rate:.3f}", *([f"{c.avg_len:.3f}"] if chains else []),
              "-" if c.difference is None else f"{c.same_rows}/{c.episodes}",
              "-" if c.difference is None else f"{c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}]",
              *(["-" if c.avg_len_difference is None else f"{c.avg_len_difference:+.3f} [{c.avg_len_low:+.3f}, {c.avg_len_high:+.3f}]"]
                if chains else []),
              "-" if c.p_value is None else f"{c.p_value:.4f}"] for c in self.closed_loop],
            headers=["runtime", "run", "success", *(["avg_len"] if chains else []), f"rows = {self.reference}",
                     f"success - {self.reference} [95% CI]", *([f"avg_len - {self.reference} [95% CI]"] if chains else []), "McNemar p"],
            tablefmt="plain", disable_numparse=True,
        )
        steps = self.open_loop[0].steps if self.open_loop else 0
        opened = tabulate(
            [[a.runtime, f"{a.max_abs:.3g}", f"{a.mean_abs:.3g}", " ".join(f"{v:.2g}" for v in a.max_abs_per_dim),
              f"{a.differing_steps}/{a.steps}"] for a in self.open_loop],
            headers=["runtime", "max |diff|", "mean |diff|", "max |diff| per action dim", "steps not bit-identical"],
            tablefmt="plain", disable_numparse=True,
        )
        replay = (f"the replay reproduced {self.reference}'s closed-loop rows in {self.replay_matches}/{n} episodes"
                  + ("" if self.replay_matches == n else ": the agent or the suite is not deterministic, so closed-loop "
                     "differences are not only the runtimes'"))
        return (f"parity of {self.agent} on {self.suite} {self.setting}, {n} episodes, reference runtime {self.reference}\n\n"
                f"closed loop (each runtime its own run; paired on identical episodes: Newcombe interval, exact McNemar):\n{closed}\n\n"
                f"open loop ({self.reference}'s trajectories, every runtime asked on the same observations, {steps} steps):\n"
                f"{opened}\n\n{replay}\n")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_parity(agent: str, runtimes: Sequence[str], suite: str, *, out: str | os.PathLike[str], setting: str | None = None,
               episodes: int = 5, seed: int | None = None, agent_options: Mapping[str, Any] | None = None, workers: int = 1,
               step_timeout: float = DEFAULT_STEP_TIMEOUT, progress: bool = False) -> ParityResult:
    """Evaluate ``agent`` on each runtime (closed loop) and replay the first runtime's episodes
    asking every runtime on the same observations (open loop); write ``OUT/parity.json``."""
    from vlaeval.evaluators.runner import evaluate
    from vlaeval.plugins.manager import load_suite, suite_spec

    runtimes = list(runtimes)
    if len(runtimes) < 2 or len(set(runtimes)) != len(runtimes):
        raise VlaevalError(f"--runtimes needs at least two different runtimes, not {','.join(runtimes) or 'none'}")
    options = dict(agent_options or {})
    if "runtime" in options:
        raise VlaevalError("the runtimes come from --runtimes; drop --agent-opt runtime=")
    spec = suite_spec(suite)
    setting = spec.setting(setting).name
    seed = spec.protocol.seed if seed is None else seed
    out = Path(out)
    agents = _build_agents(agent, runtimes, options)  # a runtime that cannot run here fails now, not after the others' runs
    try:
        runs = {r: evaluate(agent, suite, setting=setting, episodes=episodes, seed=seed, workers=workers, out=out,
                            agent_options={**options, "runtime": r}, run_id=r, progress=progress, step_timeout=step_timeout)
                for r in runtimes}
        played = list(load_suite(spec).episodes(setting, seed))[:episodes]
        differences, replayed = _open_loop(agents, agent, spec, setting, played, options, step_timeout)
    finally:
        _close(agents)
    reference = runtimes[0]
    closed = tuple(_closed_loop(r, runs[r], runs[reference]) for r in runtimes)
    ref_rows = _rows_by_episode(runs[reference].results)
    matches = sum(1 for e, row in replayed.items() if ref_rows.get(e) == row)
    result = ParityResult(agent, spec.name, setting, reference, closed, differences, matches, str(out))
    (out / PARITY_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _closed_loop(runtime: str, run: Any, reference: Any) -> ClosedLoop:
    """One runtime's run summarised, and paired with the reference runtime's run."""
    from vlaeval.results.compare import compare_runs
    from vlaeval.results.metrics import chain_lengths

    frame = run.results
    success = frame.groupby("episode")["success"].all()
    paired: dict[str, Any] = {"difference": None, "low": None, "high": None, "p_value": None}
    if run.run_dir != reference.run_dir:
        compared = {d.metric: d for d in compare_runs(reference.run_dir, run.run_dir).differences if d.task == "*"}
        rate = compared["success_rate"]
        paired = {"difference": rate.difference, "low": rate.low, "high": rate.high, "p_value": rate.p_value}
        if "avg_len" in compared:
            length = compared["avg_len"]
            paired |= {"avg_len_difference": length.difference, "avg_len_low": length.low, "avg_len_high": length.high}
    ref_rows, rows = _rows_by_episode(reference.results), _rows_by_episode(frame)
    return ClosedLoop(runtime=runtime, run_dir=str(run.run_dir), episodes=len(success), success_rate=float(success.mean()),
                      avg_len=float(chain_lengths(frame).mean()) if run.chain_length > 1 else None,
                      same_rows=sum(1 for e, row in rows.items() if ref_rows.get(e) == row), **paired)


class _Lockstep:
    """Plays the reference agent; asks every other agent the same question and records the answers' distance.

    All agents see every call (seed, reset, act) with the same arguments, so each one's internal
    state evolves on the reference's observations exactly as it would if it were in control.
    """

    def __init__(self, agents: Mapping[str, Any]) -> None:
        from vlaeval.agents.resolve import agent_spec_of

        self.agents = dict(agents)
        self.reference = next(iter(self.agents.values()))
        self.spec = agent_spec_of(self.reference)
        self.differences: dict[str, list[np.ndarray]] = {name: [] for name in list(self.agents)[1:]}

    def seed(self, seed: int) -> None:
        for agent in self.agents.values():
            if callable(getattr(agent, "seed", None)):
                agent.seed(seed)

    def reset(self) -> None:
        for agent in self.agents.values():
            agent.reset()

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        action = np.asarray(self.reference.act(observation, instruction), dtype=np.float64)
        for name in self.differences:
            other = np.asarray(self.agents[name].act(observation, instruction), dtype=np.float64)
            self.differences[name].append(np.abs(other - action))
        return action


def _build_agents(agent: str, runtimes: Sequence[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """One instance per runtime, in this process, for the open-loop replay."""
    from vlaeval.agents.resolve import make_agent

    agents: dict[str, Any] = {}
    try:
        for r in runtimes:
            agents[r] = make_agent(agent, {**options, "runtime": r})
    except BaseException:
        _close(agents)
        raise
    return agents


def _close(agents: Mapping[str, Any]) -> None:
    for instance in agents.values():
        if callable(getattr(instance, "close", None)):
            instance.close()


def _open_loop(agents: Mapping[str, Any], agent: str, spec: SuiteSpec, setting: str, episodes: Sequence[EpisodeSpec],
               options: Mapping[str, Any], step_timeout: float) -> tuple[tuple[ActionDifference, ...], dict[int, tuple]]:
    """Replay the reference runtime's episodes with every runtime queried in lock-step.

    Returns the per-runtime action differences and the replay's rows per episode."""
    from vlaeval.agents.base import AgentContext
    from vlaeval.evaluators.episode import EpisodeContext, run_episode
    from vlaeval.evaluators.executors import negotiated_action_type
    from vlaeval.plugins.manager import load_suite

    lockstep = _Lockstep(agents)
    action_type = negotiated_action_type(lockstep.spec, spec, agent)
    env = load_suite(spec).make_env(setting, lockstep.spec, action_type)
    try:
        context = AgentContext(spec.name, setting, action_type, env.action_space, env.observation_space, env.unwrapped, dict(options))
        for instance in agents.values():
            if callable(getattr(instance, "bind", None)):
                instance.bind(context)
        ctx = EpisodeContext("parity-open-loop", agent, spec.name, spec.version, setting, spec.protocol.max_steps, step_timeout)
        replayed = {episode.index: _row_key(run_episode(env, lockstep, episode, ctx).rows) for episode in episodes}
    finally:
        env.close()
    differences = []
    for name, steps in lockstep.differences.items():
        diff = np.stack(steps) if steps else np.zeros((0, 1))
        differences.append(ActionDifference(
            runtime=name, steps=len(steps), max_abs=float(diff.max(initial=0.0)), mean_abs=float(diff.mean()) if steps else 0.0,
            max_abs_per_dim=tuple(float(v) for v in diff.max(axis=0, initial=0.0)), differing_steps=int(np.any(diff > 0, axis=1).sum()),
        ))
    return tuple(differences), replayed


def _rows_by_episode(frame: Any) -> dict[int, tuple]:
    """Episode -> its (position, success, steps, error) rows: what equal runs must share."""
    return {int(e): _row_key(rows.to_dict("records")) for e, rows in frame.sort_values(["episode", "position"]).groupby("episode")}


def _row_key(rows: Sequence[Mapping[str, Any]]) -> tuple:
    import pandas as pd

    return tuple((int(r["position"]), bool(r["success"]), int(r["steps"]), None if pd.isna(r["error"]) else str(r["error"]))
                 for r in rows)
