"""The rollout core: the one loop that plays episodes, for evaluation, recording and RL alike.

Every feature that plays an agent in a suite (scoring a run, recording demonstrations, collecting
RL trajectories, and whatever comes next: videos, other dataset formats) goes through
:func:`play`, so the protocol is written once and cannot drift between them.  The protocol is
CALVIN's loop: the env is reset once per episode (chain), the agent is seeded per episode and
reset before every subtask, each subtask gets ``max_steps`` steps, the chain stops at the first
failed subtask or when the env terminates; every agent call is guarded
(:mod:`vlaeval.evaluators.guards`: the per-step timeout, NaN, shape and non-real checks), and an
agent or env failure fails that episode with its error instead of ending the loop.

One loop serves one env or a pool of N: each *slot* of the pool plays its own episode, episodes
are handed out in order as slots free up, and all busy slots step in lock-step.  A batched agent
(:func:`vlaeval.agents.base.is_batched`) gets one ``act_batch`` call per step for every slot
(``reset_slot``/``seed_slot`` per slot); any other agent has one instance per slot, called with
``act``.  The single-env case is this loop with one slot: measured against the former dedicated
sequential loop, the difference is within noise (see the README's architecture section), so
there is no second loop to keep in step.  Differences between batched and per-slot agents, all
on failure paths: an exception (or timeout) in ``act_batch`` fails the current subtask of every
slot that was acting (a bad action fails only its own slot), and the step timeout bounds the
whole batched call.

What a caller keeps is up to :class:`Observer` hooks, called at episode, subtask and step
boundaries; the loop itself keeps only each subtask's :class:`SubtaskResult`.  Only observers
that override :meth:`Observer.step` are called per step, so evaluation, which needs no per-step
data, adds nothing to a step.  Evaluation turns results into the tidy rows of the results store
(:meth:`EpisodeContext.record`).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.guards import AgentFailure, agent_error, check_action, deadline
from vlaeval.results.store import EpisodeRecord


@dataclass(frozen=True)
class SubtaskResult:
    """How one subtask of an episode ended.

    Attributes:
        position: 0-based index of the subtask in the episode's chain.
        success: the env reported ``is_success``.
        steps: env steps taken in the subtask.
        seconds: wall time of the subtask (of the episode's start, for a failed reset or seed).
        error: why an agent or env failure ended it, or None.
    """

    position: int
    success: bool
    steps: int
    seconds: float
    error: str | None


@dataclass(frozen=True)
class Played:
    """One finished episode: the slot that played it and each subtask it reached."""

    slot: int
    episode: EpisodeSpec
    subtasks: tuple[SubtaskResult, ...]

    @property
    def success(self) -> bool:
        """Every subtask of the chain was solved."""
        return len(self.subtasks) == len(self.episode.tasks) and all(r.success for r in self.subtasks)


class Observer:
    """Watches rollouts; subclasses override the hooks they need (the defaults do nothing).

    Hooks run inside the loop, between agent and env calls, so they should be quick; an exception
    raised by one ends the rollout (it is a bug in the caller, not the agent's failure).
    """

    def episode_started(self, slot: int, episode: EpisodeSpec) -> None:
        """``slot`` takes ``episode``, before its env is reset."""

    def subtask_started(self, slot: int, position: int) -> None:
        """Subtask ``position`` (0-based) of ``slot``'s episode begins, before the agent is reset."""

    def step(self, slot: int, observation: Any, action: np.ndarray, success: bool) -> None:
        """The env of ``slot`` took ``action`` (checked, float32), chosen on ``observation``;
        ``success``: it reported the subtask solved.  Not called after a failed env step."""

    def episode_ended(self, played: Played) -> None:
        """An episode ended, however it ended."""


def _overrides(observer: Observer, hook: str) -> bool:
    return getattr(type(observer), hook) is not getattr(Observer, hook)


class _Hooks:
    """The observers' bound hooks, only those overridden: an unused hook costs no call."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        def bound(hook: str) -> list[Callable[..., None]]:
            return [getattr(o, hook) for o in observers if _overrides(o, hook)]

        self.episode_started = bound("episode_started")
        self.subtask_started = bound("subtask_started")
        self.step = bound("step")
        self.episode_ended = bound("episode_ended")


@dataclass
class _Slot:
    episode: EpisodeSpec
    results: list[SubtaskResult] = field(default_factory=list)
    position: int = 0
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    obs: Any = None


def play(pool: Any, agents: Sequence[Any], episodes: Sequence[EpisodeSpec], *, max_steps: int, step_timeout: float,
         batched: bool = False, observers: Sequence[Observer] = ()) -> Iterator[tuple[str, Any]]:
    """Play ``episodes`` on ``pool``'s slots; yield ``("started", index)`` and ``("ended", Played)``.

    ``("started", index)`` comes before any agent or env code touches that episode (a supervised
    worker that dies is then charged exactly the episodes it had in flight); ``("ended",
    Played)`` as each episode ends, after the observers' :meth:`Observer.episode_ended`.

    Args:
        pool: an :class:`~vlaeval.envs.pool.EnvPool` (``SyncEnvPool([env])`` for one env).
        agents: ``[agent]`` when ``batched``, else one bound agent per pool slot.
        max_steps: step limit per subtask.
        step_timeout: seconds one agent call may take (0 = unguarded).
        batched: call ``agents[0].act_batch`` for all slots (else ``agents[i].act`` per slot).
        observers: told about every episode, subtask and (if they override it) step.
    """
    n = pool.size
    if not batched and len(agents) != n:
        raise ValueError(f"{n} environments need {n} agent instances, got {len(agents)}")
    shape = pool.action_space.shape
    hooks = _Hooks(observers)
    queue = collections.deque(episodes)
    slots: list[_Slot | None] = [None] * n
    ended: list[Played] = []
    last_obs: list[Any] = [None] * n  # batched: what each slot last showed the agent (idle slots repeat it)
    last_instruction: list[str] = [""] * n

    if batched:
        try:
            agents[0].reset()  # a clean batch (the batch size is fixed by the first act_batch)
        except Exception as exc:
            raise VlaevalError(f"agent raised in reset(): {type(exc).__name__}: {exc}") from exc

    def finish(i: int) -> None:
        s = slots[i]
        played = Played(i, s.episode, tuple(s.results))
        slots[i] = None
        for hook in hooks.episode_ended:
            hook(played)
        ended.append(played)

    def fail_episode(i: int, error: str) -> None:
        """An episode that ends before its first subtask (env reset, agent seeding)."""
        s = slots[i]
        s.results.append(SubtaskResult(0, False, 0, time.perf_counter() - s.started, error))
        finish(i)

    def end_subtask(i: int, success: bool, error: str | None, ended_by_env: bool) -> None:
        s = slots[i]
        s.results.append(SubtaskResult(s.position, success, s.steps, time.perf_counter() - s.started, error))
        if not success or ended_by_env or s.position + 1 == len(s.episode.instructions):
            finish(i)
        else:
            begin_subtask(i, s.position + 1)

    def begin_subtask(i: int, position: int) -> None:
        s = slots[i]
        s.position, s.steps, s.started = position, 0, time.perf_counter()
        for hook in hooks.subtask_started:
            hook(i, position)
        try:
            if batched:
                with deadline(step_timeout, "agent.reset_slot()"):
                    agents[0].reset_slot(i)
            else:
                with deadline(step_timeout, "agent.reset()"):
                    agents[i].reset()
        except Exception as exc:
            end_subtask(i, False, agent_error(exc, "act"), False)  # reported as the subtask's act failing
            return
        if max_steps <= 0:
            end_subtask(i, False, None, False)

    def seed(i: int, value: int) -> None:
        if batched:
            method, what, args = getattr(agents[0], "seed_slot", None), "agent.seed_slot()", (i, value)
        else:
            method, what, args = getattr(agents[i], "seed", None), "agent.seed()", (value,)  # optional for duck-typed agents
        if callable(method):
            with deadline(step_timeout, what):
                method(*args)

    def start_episodes() -> Iterator[tuple[str, Any]]:
        while True:
            requests = {}
            for i in range(n):
                if slots[i] is None and queue:
                    episode = queue.popleft()
                    yield "started", episode.index
                    slots[i] = _Slot(episode)
                    for hook in hooks.episode_started:
                        hook(i, episode)
                    requests[i] = (episode.seed, episode.options)
            if not requests:
                return
            for i, (ok, payload) in pool.reset(requests).items():
                if not ok:
                    fail_episode(i, f"environment reset failed: {payload}")
                    continue
                slots[i].obs = payload
                try:
                    seed(i, slots[i].episode.seed)
                except Exception as exc:
                    fail_episode(i, agent_error(exc, "seed"))
                    continue
                begin_subtask(i, 0)

    while True:
        if queue and None in slots:
            yield from start_episodes()
        for played in ended:
            yield "ended", played
        ended.clear()
        acting = [i for i in range(n) if slots[i] is not None]
        if not acting:
            if not queue:
                return
            continue
        actions: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        if batched:
            for i in acting:
                s = slots[i]
                last_obs[i] = s.obs
                last_instruction[i] = current_instruction(s.obs, s.episode.instructions[s.position])
            filler = last_obs[acting[0]]
            observations = [o if o is not None else filler for o in last_obs]
            try:
                with deadline(step_timeout, "agent.act_batch()"):
                    out = agents[0].act_batch(observations, list(last_instruction))
                if len(out) != n:
                    raise AgentFailure(f"agent returned {len(out)} actions from act_batch() for a batch of {n}")
            except Exception as exc:
                errors = {i: agent_error(exc, "act_batch") for i in acting}
            else:
                for i in acting:
                    try:
                        actions[i] = check_action(out[i], shape)
                    except AgentFailure as exc:
                        errors[i] = str(exc)
        else:
            for i in acting:
                s = slots[i]
                try:
                    with deadline(step_timeout, "agent.act()"):
                        action = agents[i].act(s.obs, current_instruction(s.obs, s.episode.instructions[s.position]))
                    actions[i] = check_action(action, shape)
                except Exception as exc:
                    errors[i] = agent_error(exc, "act")
        for i, error in errors.items():
            end_subtask(i, False, error, False)
        for i, (ok, payload) in pool.step(actions).items():
            s = slots[i]
            if not ok:
                end_subtask(i, False, f"environment step failed: {payload}", False)
                continue
            obs, success, terminated, truncated = payload
            for hook in hooks.step:
                hook(i, s.obs, actions[i], success)
            s.obs = obs
            s.steps += 1
            if success:
                end_subtask(i, True, None, False)
            elif terminated or truncated:
                end_subtask(i, False, None, True)
            elif s.steps >= max_steps:
                end_subtask(i, False, None, False)


def current_instruction(observation: Any, default: str) -> str:
    """The environment's own current instruction (``observation["language"]``) when it has one.

    Tasks whose instruction changes mid-episode (SimplerEnv's two-stage "open the drawer, then put
    the apple in") stay correct; the episode's instruction is the fallback.
    """
    if isinstance(observation, Mapping):
        text = observation.get("language")
        if isinstance(text, str) and text:
            return text
    return default


@dataclass(frozen=True)
class EpisodeContext:
    """Run-level values stamped on every row, and the protocol's limits."""

    run_id: str
    agent: str
    suite: str
    suite_version: str
    setting: str
    max_steps: int
    step_timeout: float

    def record(self, played: Played) -> EpisodeRecord:
        """The tidy rows of a played episode, one per subtask it reached."""
        episode = played.episode
        rows = tuple(self.row(episode, r.position, r.success, r.steps, r.seconds, r.error) for r in played.subtasks)
        return EpisodeRecord(episode.index, episode.seed, rows)

    def row(self, episode: EpisodeSpec, position: int, success: bool, steps: int, seconds: float,
            error: str | None) -> dict[str, Any]:
        """One tidy row: the result of subtask ``position`` (0-based) of ``episode``."""
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "suite": self.suite,
            "suite_version": self.suite_version,
            "setting": self.setting,
            "task": episode.tasks[position],
            "episode": episode.index,
            "position": position + 1,
            "seed": episode.seed,
            "success": success,
            "steps": steps,
            "wall_time": round(seconds, 4),
            "error": error,
            "instruction": episode.instructions[position],
        }
