"""Cross-check of the ``calvin`` suite's 34 success predicates against upstream calvin_env's oracle.

    python -m vlaeval.evaluators.calvin_crosscheck [--pairs 20000] [--min-positives 20] [--chains 0,7,...] [--out FILE.json]

Upstream's ``PlayTableSimEnv`` (through the ``calvin-upstream`` env, cameras off) is driven from
the official initial states and, after every step, each (start, end) pair of states is judged
twice: by upstream's ``Tasks.get_task_info`` (bound from ``new_playtable_tasks.yaml``, on the
info dicts upstream's ``step`` returns) and by our
:data:`~vlaeval.envs.calvin.predicates.PREDICATES`.  Upstream's verdict is the truth; every pair
where ours differs is a disagreement.

Why our side reads upstream's simulator through our own :class:`LiveSnapshot` rather than an
adapter of upstream's info dicts: a snapshot is exactly what the suite judges, built the way the
suite builds it (one contact query of the whole client split by body, block poses and
velocities read by our code, the start kept as ``freeze()`` of a live snapshot, the end judged
live).  An info-dict adapter would test a converter that the suite never runs, and would hide
differences in how contacts are read (upstream asks pybullet per body with ``bodyA=``).  Only
what our env computes itself and upstream computes differently comes from upstream's info: the
body ids and the logical light states (our button/switch logic is tested on our own env), and the
desk joints, which both read with ``getJointState``.  The desk link indices our predicates
hard-code are checked against upstream's link map first.

Three action sources, because random actions alone almost never lift, stack or rotate a block:

* ``expert``: the scripted expert, closed loop on upstream through the harness's own episode loop
  (agent reset per subtask, 360 steps each, stop at the first failure); it solves nearly every
  chain there, so every task gets positives;
* ``noisy-expert``: the same with Gaussian noise on the arm part of every action, which the
  expert keeps correcting: blocks, doors and the drawer end up near the thresholds (half-open
  drawers, 50-degree turns, blocks nudged against each other);
* ``random``: uniform random relative actions, gripper flipping at random.

Starts: the reset state, the state at every subtask boundary, and a state every
:data:`SLIDING_START_EVERY` steps; each step's end state is judged against all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium
import numpy as np

from vlaeval.envs.calvin.predicates import (
    DESK_BASE,
    DESK_BUTTON,
    DESK_DRAWER,
    DESK_LED,
    DESK_LIGHTBULB,
    DESK_PLANK,
    DESK_SLIDE,
    DESK_SWITCH,
    PREDICATES,
    Snapshot,
)
from vlaeval.envs.calvin.tasks import TASKS
from vlaeval.envs.calvin_upstream.info import live_snapshot
from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError

#: Upstream's desk link names -> the link indices our predicates hard-code (§C.1).
UPSTREAM_DESK_LINKS = {
    "base_link": DESK_BASE, "button_link": DESK_BUTTON, "switch_link": DESK_SWITCH, "slide_link": DESK_SLIDE,
    "drawer_link": DESK_DRAWER, "led_link": DESK_LED, "light_link": DESK_LIGHTBULB, "plank_link": DESK_PLANK,
}
SOURCES = ("expert", "noisy-expert", "random")
#: A new start state every this many steps (besides the reset and the subtask boundaries).
SLIDING_START_EVERY = 20
#: Standard deviation of the noise on the arm part of the noisy expert's (normalised) actions.
EXPERT_NOISE = 0.15
#: Steps of one random-action rollout, and the chance per step that its gripper command flips.
RANDOM_STEPS = 240
RANDOM_GRIPPER_FLIP = 0.1
#: Disagreements kept in full in the report (all are counted).
MAX_LISTED_DISAGREEMENTS = 50


@dataclass
class Confusion:
    """Per-task counts: upstream's oracle is the truth, ours the prediction."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    #: rollouts with at least one upstream positive (positive pairs of one rollout are correlated)
    rollouts: int = 0

    @property
    def positives(self) -> int:
        return self.tp + self.fn


@dataclass(frozen=True)
class Disagreement:
    """One pair judged differently: where it came from and both verdicts."""

    source: str
    chain: int
    start_step: int
    end_step: int
    task: str
    upstream: bool
    ours: bool


@dataclass
class Report:
    """What a cross-check found; :meth:`to_json` is what ``--out`` writes."""

    confusion: dict[str, Confusion] = field(default_factory=lambda: {t: Confusion() for t in TASKS})
    pairs: int = 0
    steps: int = 0
    rollouts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SOURCES})
    disagreements: int = 0
    listed: list[Disagreement] = field(default_factory=list)

    def min_positives(self) -> int:
        return min(c.positives for c in self.confusion.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "steps": self.steps,
            "rollouts": dict(self.rollouts),
            "disagreements": self.disagreements,
            "listed_disagreements": [vars(d) for d in self.listed],
            "confusion": {t: vars(c) for t, c in self.confusion.items()},
        }

    def table(self) -> str:
        """The per-task confusion counts as a Markdown table."""
        lines = ["| task | TP | FP | FN | TN | rollouts with a positive |", "|---|---|---|---|---|---|"]
        lines += [f"| {t} | {c.tp} | {c.fp} | {c.fn} | {c.tn} | {c.rollouts} |" for t, c in self.confusion.items()]
        return "\n".join(lines)


def check_desk_links(info: Mapping[str, Any]) -> None:
    """Fail if upstream's desk links are not where our predicates look for them."""
    links = dict(info["scene_info"]["fixed_objects"]["table"]["links"])
    wrong = {name: links.get(name) for name, index in UPSTREAM_DESK_LINKS.items() if links.get(name) != index}
    if wrong:
        raise VlaevalError(f"upstream desk links {wrong} differ from the indices our predicates use "
                           f"({UPSTREAM_DESK_LINKS}); the cross-check would compare different surfaces")


class Judge(gymnasium.Wrapper):
    """Wraps the ``calvin-upstream`` env for one rollout: after every step, judges the new state
    against every kept start with both sides and counts the verdicts into ``report``.

    Args:
        env: a :class:`~vlaeval.envs.calvin_upstream.env.CalvinUpstreamEnv` (possibly wrapped).
        report: where the counts go.
        source, chain: what the rollout is (for listed disagreements).
        rng: noise source; with ``noise > 0`` the arm part of every action gets Gaussian noise of
            that standard deviation before it reaches the env (the agent sees its own action).
    """

    def __init__(self, env: Any, report: Report, source: str, chain: int, rng: np.random.Generator,
                 noise: float = 0.0) -> None:
        super().__init__(env)
        self.report, self.source, self.chain, self.rng, self.noise = report, source, chain, rng, noise
        self._starts: list[tuple[int, Mapping[str, Any], Snapshot]] = []
        self._sliding: tuple[int, Mapping[str, Any], Snapshot] | None = None
        self._live: Any = None
        self._steps = 0
        self._positive: set[str] = set()

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(**kwargs)
        base = self.env.unwrapped
        check_desk_links(base.info)
        self._live = live_snapshot(base.client_id, base.info)
        self._starts, self._sliding, self._steps = [(0, base.info, self._live.freeze())], None, 0
        return result

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        action = np.array(action, dtype=np.float64)
        if self.noise:
            action[:6] = np.clip(action[:6] + self.rng.normal(0.0, self.noise, 6), -1.0, 1.0)
        self._live.expire()
        result = self.env.step(action)
        base = self.env.unwrapped
        info, live = base.info, live_snapshot(base.client_id, base.info)
        self._live = live
        self._steps += 1
        self._judge(info, live)
        if result[4].get("is_success"):
            self._starts.append((self._steps, info, live.freeze()))
        if self._steps % SLIDING_START_EVERY == 0:
            self._sliding = (self._steps, info, live.freeze())
        return result

    def _judge(self, info: Mapping[str, Any], live: Snapshot) -> None:
        report, oracle = self.report, self.env.unwrapped.oracle
        starts = self._starts if self._sliding is None else [*self._starts, self._sliding]
        for start_step, start_info, start in starts:
            upstream = oracle.get_task_info(start_info, info)
            self._positive |= upstream
            for task in TASKS:
                ours = PREDICATES[task](start, live)
                truth = task in upstream
                counts = report.confusion[task]
                if ours and truth:
                    counts.tp += 1
                elif truth:
                    counts.fn += 1
                elif ours:
                    counts.fp += 1
                else:
                    counts.tn += 1
                if ours != truth:
                    report.disagreements += 1
                    if len(report.listed) < MAX_LISTED_DISAGREEMENTS:
                        report.listed.append(Disagreement(self.source, self.chain, start_step, self._steps, task,
                                                          truth, ours))
            report.pairs += 1
        report.steps += 1

    def finish(self) -> None:
        """End the rollout: count it, and the tasks it had upstream positives for."""
        if self._live is not None:
            self._live.expire()
        self.report.rollouts[self.source] += 1
        for task in self._positive:
            self.report.confusion[task].rollouts += 1


def _play_random(judge: Judge, episode: EpisodeSpec, rng: np.random.Generator) -> None:
    judge.reset(options={"robot_obs": episode.options["robot_obs"], "scene_obs": episode.options["scene_obs"]})
    gripper = 1.0
    for _ in range(RANDOM_STEPS):
        if rng.random() < RANDOM_GRIPPER_FLIP:
            gripper = -gripper
        judge.step(np.array([*rng.uniform(-1.0, 1.0, 6), gripper]))


def sources_for(n: int) -> tuple[str, ...]:
    """The rollouts played from the ``n``-th chain visited: the expert's always, a noisy one on
    every other chain, a random one on every third."""
    return ("expert",) + (("noisy-expert",) if n % 2 == 0 else ()) + (("random",) if n % 3 == 0 else ())


def crosscheck(pairs: int, min_positives: int = 0, chains: Sequence[int] | None = None, seed: int = 0,
               progress: bool = False) -> Report:
    """Play rollouts (from ``chains``' initial states, by default all 1000 in a stride that visits
    every initial state early) until at least ``pairs`` pairs are judged and every task has
    ``min_positives`` upstream positives, or the chains run out.  Deterministic for a seed.

    Builds upstream's env in this process, so pybullet client 0 must be free (see
    :mod:`vlaeval.envs.calvin_upstream.build`)."""
    from vlaeval.agents.base import AgentContext
    from vlaeval.agents.expert.agent import CalvinExpert
    from vlaeval.envs.calvin_upstream.env import CalvinUpstreamEnv
    from vlaeval.envs.calvin_upstream.spec import CALVIN_UPSTREAM_SPEC as spec
    from vlaeval.envs.calvin_upstream.suite import CalvinUpstreamSuite
    from vlaeval.evaluators.episode import EpisodeContext, run_episode

    order = list(chains) if chains is not None else [(i * 7) % 1000 for i in range(1000)]
    episodes = CalvinUpstreamSuite().episodes("D->D", 0)
    ctx = EpisodeContext("crosscheck", "expert", spec.name, spec.version, "D->D", spec.protocol.max_steps, 0.0)
    env = CalvinUpstreamEnv(cameras=())
    agent = CalvinExpert()
    agent.bind(AgentContext(spec.name, "D->D", "relative_ee", env.action_space, env.observation_space, env))
    report = Report()
    started = time.perf_counter()
    try:
        for n, chain in enumerate(order):
            rng = np.random.default_rng([seed, chain])
            for source in sources_for(n):
                judge = Judge(env, report, source, chain, rng, EXPERT_NOISE if source == "noisy-expert" else 0.0)
                if source == "random":
                    _play_random(judge, episodes[chain], rng)
                else:
                    run_episode(judge, agent, episodes[chain], ctx)
                judge.finish()
                if progress:
                    rarest = min(report.confusion, key=lambda t: report.confusion[t].positives)
                    print(f"\r{report.pairs} pairs, {report.steps} steps, fewest positives {report.min_positives()} "
                          f"({rarest}), {report.disagreements} disagreements, {time.perf_counter() - started:.0f} s",
                          end="", file=sys.stderr, flush=True)
                if report.pairs >= pairs and report.min_positives() >= min_positives:
                    return report
        return report
    finally:
        env.close()
        if progress:
            print(file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20000, help="judge at least this many (start, end) pairs")
    parser.add_argument("--min-positives", type=int, default=20, help="and go on until every task has this many "
                        "upstream positives")
    parser.add_argument("--chains", help="comma-separated official chain indices to start from (default: all 1000, "
                        "in a stride of 7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and random actions")
    parser.add_argument("--out", type=Path, help="write the confusion counts and disagreements as JSON")
    args = parser.parse_args(argv)
    try:
        chains = [int(c) for c in args.chains.split(",")] if args.chains else None
    except ValueError:
        parser.error(f"--chains must be comma-separated chain indices, not {args.chains!r}")
    if chains is not None and not all(0 <= c < 1000 for c in chains):
        parser.error("--chains: the official chains are numbered 0..999")
    try:
        report = crosscheck(args.pairs, args.min_positives, chains, seed=args.seed, progress=True)
    except VlaevalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    print(f"{report.pairs} pairs from {report.steps} steps ({report.rollouts}); "
          f"{report.disagreements} disagreements; fewest positives of a task: {report.min_positives()}")
    for d in report.listed:
        print(f"  {d}")
    if args.out:
        partial = args.out.with_name(args.out.name + ".partial")
        partial.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        os.replace(partial, args.out)  # a crash leaves the old file or the new one, never half of one
    return 0 if report.disagreements == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
