"""The rollout core: one loop for one env or a pool of them, its protocol, and the observers that watch it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vlaeval.envs.pool import SyncEnvPool
from vlaeval.evaluators.episode import EpisodeContext, run_episode
from vlaeval.evaluators.rollout import Observer, Played, play
from vlaeval_toy.agents import BatchSolver, Crasher, NaNAgent, Solver
from vlaeval_toy.env import ToyReachEnv
from vlaeval_toy.suite import TOY_CHAIN_SPEC, ToyChainSuite

EPISODES = ToyChainSuite().episodes("default", 0)[:12]
MAX_STEPS = TOY_CHAIN_SPEC.protocol.max_steps


def _played(pool: Any, agents: list[Any], episodes: Any = EPISODES, *, observers: tuple[Observer, ...] = (), batched: bool = False,
            max_steps: int = MAX_STEPS) -> list[Played]:
    events = list(play(pool, agents, episodes, max_steps=max_steps, step_timeout=10.0, batched=batched, observers=observers))
    assert [e[1] for e in events if e[0] == "started"] == [e.index for e in episodes]
    return sorted((payload for kind, payload in events if kind == "ended"), key=lambda p: p.episode.index)


def _outcomes(played: list[Played]) -> list[tuple]:
    return [(p.episode.index, tuple((r.position, r.success, r.steps, r.error) for r in p.subtasks)) for p in played]


def test_one_env_and_a_pool_of_three_play_every_episode_alike() -> None:
    ctx = EpisodeContext("r", "solver", "toy-chain", "1", "default", MAX_STEPS, 10.0)
    env, agent = ToyReachEnv(), Solver(skill=0.5)
    alone = [run_episode(env, agent, episode, ctx) for episode in EPISODES]
    pooled = _played(SyncEnvPool(ToyReachEnv, 3), [Solver(skill=0.5) for _ in range(3)])
    batched = _played(SyncEnvPool(ToyReachEnv, 3), [BatchSolver(skill=0.5)], batched=True)
    strip = [[{k: v for k, v in row.items() if k != "wall_time"} for row in rec.rows] for rec in alone]
    assert strip == [[{k: v for k, v in row.items() if k != "wall_time"} for row in ctx.record(p).rows] for p in pooled]
    assert _outcomes(pooled) == _outcomes(batched)
    assert len({len(p.subtasks) for p in pooled}) > 1  # chains stopped at their first failure, at different subtasks
    assert all(p.success == (len(p.subtasks) == 3 and p.subtasks[-1].success) for p in pooled)


class _Log(Observer):
    """Every hook call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def episode_started(self, slot: int, episode: Any) -> None:
        self.calls.append(("episode", slot, episode.index))

    def subtask_started(self, slot: int, position: int) -> None:
        self.calls.append(("subtask", slot, position))

    def step(self, slot: int, observation: Any, action: np.ndarray, success: bool) -> None:
        self.calls.append(("step", slot, float(observation["state"][0]), float(action[0]), success))

    def episode_ended(self, played: Played) -> None:
        self.calls.append(("ended", played.slot, played.episode.index))


class _Seen(Solver):
    """A solver that remembers every observation it acted on."""

    def __init__(self) -> None:
        super().__init__(skill=0.5)
        self.seen: list[float] = []

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        self.seen.append(float(observation["state"][0]))
        return super().act(observation, instruction)


def test_observers_see_every_episode_subtask_and_step_boundary_in_order() -> None:
    log, agent = _Log(), _Seen()
    played = _played(SyncEnvPool(ToyReachEnv, 1), [agent], observers=(log,))
    expected: list[tuple] = []
    for p in played:
        expected.append(("episode", 0, p.episode.index))
        for r in p.subtasks:
            expected.append(("subtask", 0, r.position))
            expected += [("step", 0, r.success and i == r.steps - 1) for i in range(r.steps)]
        expected.append(("ended", 0, p.episode.index))
    assert [c[:2] + (c[4],) if c[0] == "step" else c for c in log.calls] == expected
    steps = [c for c in log.calls if c[0] == "step"]
    assert [c[2] for c in steps] == agent.seen  # the observation the agent acted on
    assert all(abs(c[3]) <= 1 for c in steps)  # and the action it chose (checked, float32)


def test_observers_without_a_step_hook_add_no_call_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(Observer, "step", lambda self, *args: calls.append(args))

    class EndsOnly(Observer):
        def __init__(self) -> None:
            self.ended: list[int] = []

        def episode_ended(self, played: Played) -> None:
            self.ended.append(played.episode.index)

    quiet = EndsOnly()
    played = _played(SyncEnvPool(ToyReachEnv, 2), [Solver(), Solver()], observers=(quiet,))
    assert calls == [] and sorted(quiet.ended) == [e.index for e in EPISODES]
    stepping = _Log()
    _played(SyncEnvPool(ToyReachEnv, 2), [Solver(), Solver()], observers=(stepping,))
    assert sum(c[0] == "step" for c in stepping.calls) == sum(r.steps for p in played for r in p.subtasks)


def test_started_comes_before_the_env_or_the_agent_touches_the_episode() -> None:
    log: list[tuple] = []

    class Pool(SyncEnvPool):
        def reset(self, requests):
            log.extend(("reset", seed) for seed, _ in requests.values())
            return super().reset(requests)

    class Agent(Solver):
        def seed(self, seed: int) -> None:
            log.append(("seed", seed))
            super().seed(seed)

    for kind, payload in play(Pool(ToyReachEnv, 2), [Agent(), Agent()], EPISODES[:4], max_steps=MAX_STEPS, step_timeout=10.0):
        if kind == "started":
            log.append(("started", EPISODES[payload].seed))
    for episode in EPISODES[:4]:
        mine = [entry[0] for entry in log if entry[1] == episode.seed]
        assert mine == ["started", "reset", "seed"]


class _Breaks(ToyReachEnv):
    """An env whose reset (``on="reset"``) or 3rd step (``on="step"``) raises."""

    def __init__(self, on: str) -> None:
        super().__init__()
        self.on, self.steps = on, 0

    def reset(self, *, seed=None, options=None):
        if self.on == "reset":
            raise OSError("simulator lost")
        self.steps = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        if self.on == "step" and self.steps == 3:
            raise OSError("simulator lost")
        return super().step(action)


@pytest.mark.parametrize("env, agent, error", [
    (ToyReachEnv, Crasher, "agent raised in act(): RuntimeError: policy exploded"),
    (ToyReachEnv, NaNAgent, "agent returned a non-finite action"),
    (lambda: _Breaks("step"), Solver, "environment step failed: OSError: simulator lost"),
    (lambda: _Breaks("reset"), Solver, "environment reset failed: OSError: simulator lost"),
], ids=["agent-raises", "nan-action", "env-step-raises", "env-reset-raises"])
def test_a_failure_ends_only_its_own_episode_with_the_error(env: Any, agent: Any, error: str) -> None:
    played = _played(SyncEnvPool(env, 2), [agent(), agent()], EPISODES[:5])
    assert len(played) == 5  # the loop went on after each failure
    for p in played:
        assert not p.success and p.subtasks[-1].error.startswith(error)  # the chain ends at the failure
        assert all(r.success and r.error is None for r in p.subtasks[:-1])


def test_no_steps_allowed_fails_every_first_subtask_without_stepping() -> None:
    played = _played(SyncEnvPool(ToyReachEnv, 1), [Solver()], EPISODES[:3], max_steps=0)
    assert _outcomes(played) == [(e.index, ((0, False, 0, None),)) for e in EPISODES[:3]]
