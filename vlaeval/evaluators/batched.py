"""Playing several episodes at once: N environments in lock-step, one agent call per step.

Each slot of the pool runs its own episode with exactly the semantics of
:func:`~vlaeval.evaluators.episode.run_episode` (CALVIN's loop: env reset once per chain, the
agent reset at every subtask, ``max_steps`` per subtask, stop at the first failure, the same
guard rules and error texts), so for deterministic agents the rows are identical to the
sequential loop's; only ``wall_time`` differs.  Slots start episodes and subtasks at different
times: a batched agent (:func:`vlaeval.agents.base.is_batched`) gets ``reset_slot(i)`` /
``seed_slot(i, seed)`` for its slot and one ``act_batch`` call per step for all slots; any
other agent has one instance per slot, called one by one with ``act``.

Differences from the sequential loop, all on failure paths: an exception (or timeout) in a
batched ``act_batch`` call fails the current subtask of every slot that was acting (a bad
action — NaN, wrong shape — fails only its own slot), and the step timeout bounds the whole
batched call.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.episode import (
    AgentFailure,
    EpisodeContext,
    _agent_error,
    _check_action,
    _deadline,
    current_instruction,
    make_row,
)
from vlaeval.results.store import EpisodeRecord


@dataclass
class _Slot:
    episode: EpisodeSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    position: int = 0
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    obs: Any = None


def run_batched(pool: Any, agents: Sequence[Any], episodes: Sequence[EpisodeSpec], ctx: EpisodeContext,
                *, batched: bool) -> Iterator[tuple[str, Any]]:
    """Play ``episodes`` on ``pool``'s environments; yield the runner's shard events.

    ``("started", index)`` comes before any agent or env code touches that episode (a supervised
    worker that dies is then charged exactly the episodes it had in flight), ``("record",
    EpisodeRecord)`` as each episode ends.

    Args:
        pool: a :class:`~vlaeval.evaluators.envpool.SyncEnvPool` or ``AsyncEnvPool``.
        agents: ``[agent]`` when ``batched``, else one bound agent per pool slot.
        batched: call ``agents[0].act_batch`` for all slots (else ``agents[i].act`` per slot).
    """
    n = pool.size
    if not batched and len(agents) != n:
        raise ValueError(f"{n} environments need {n} agent instances, got {len(agents)}")
    shape = pool.action_space.shape
    queue = collections.deque(episodes)
    slots: list[_Slot | None] = [None] * n
    finished: list[EpisodeRecord] = []
    last_obs: list[Any] = [None] * n
    last_instruction: list[str] = [""] * n

    if batched:
        try:
            agents[0].reset()  # a clean batch (the batch size is fixed by the first act_batch)
        except Exception as exc:
            raise VlaevalError(f"agent raised in reset(): {type(exc).__name__}: {exc}") from exc

    def finish(i: int) -> None:
        s = slots[i]
        finished.append(EpisodeRecord(s.episode.index, s.episode.seed, tuple(s.rows)))
        slots[i] = None

    def end_subtask(i: int, success: bool, error: str | None, ended: bool) -> None:
        s = slots[i]
        s.rows.append(make_row(ctx, s.episode, s.position, success, s.steps, s.started, error))
        if not success or ended or s.position + 1 == len(s.episode.instructions):
            finish(i)
        else:
            begin_subtask(i, s.position + 1)

    def begin_subtask(i: int, position: int) -> None:
        s = slots[i]
        s.position, s.steps, s.started = position, 0, time.perf_counter()
        try:
            if batched:
                with _deadline(ctx.step_timeout, "agent.reset_slot()"):
                    agents[0].reset_slot(i)
            else:
                with _deadline(ctx.step_timeout, "agent.reset()"):
                    agents[i].reset()
        except AgentFailure as exc:
            end_subtask(i, False, str(exc), False)
            return
        except Exception as exc:
            end_subtask(i, False, _agent_error(exc, "act"), False)  # the sequential loop's wording
            return
        if ctx.max_steps <= 0:
            end_subtask(i, False, None, False)

    def seed(i: int, value: int) -> None:
        if batched:
            method, what, args = getattr(agents[0], "seed_slot", None), "agent.seed_slot()", (i, value)
        else:
            method, what, args = getattr(agents[i], "seed", None), "agent.seed()", (value,)
        if callable(method):
            with _deadline(ctx.step_timeout, what):
                method(*args)

    def start_episodes() -> Iterator[tuple[str, Any]]:
        while True:
            requests = {}
            for i in range(n):
                if slots[i] is None and queue:
                    episode = queue.popleft()
                    yield "started", episode.index
                    slots[i] = _Slot(episode)
                    requests[i] = (episode.seed, episode.options)
            if not requests:
                return
            for i, (ok, payload) in pool.reset(requests).items():
                s = slots[i]
                if not ok:
                    s.rows.append(make_row(ctx, s.episode, 0, False, 0, s.started, f"environment reset failed: {payload}"))
                    finish(i)
                    continue
                s.obs = payload
                try:
                    seed(i, s.episode.seed)
                except Exception as exc:
                    s.rows.append(make_row(ctx, s.episode, 0, False, 0, s.started, _agent_error(exc, "seed")))
                    finish(i)
                    continue
                begin_subtask(i, 0)

    while True:
        yield from start_episodes()
        for record in finished:
            yield "record", record
        finished.clear()
        acting = [i for i in range(n) if slots[i] is not None]
        if not acting:
            if not queue:
                return
            continue
        actions: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        if batched:
            for i in acting:
                last_obs[i] = slots[i].obs
                last_instruction[i] = current_instruction(slots[i].obs, slots[i].episode.instructions[slots[i].position])
            filler = last_obs[acting[0]]
            observations = [o if o is not None else filler for o in last_obs]
            try:
                with _deadline(ctx.step_timeout, "agent.act_batch()"):
                    out = agents[0].act_batch(observations, list(last_instruction))
                if len(out) != n:
                    raise AgentFailure(f"agent returned {len(out)} actions from act_batch() for a batch of {n}")
            except AgentFailure as exc:
                errors = {i: str(exc) for i in acting}
            except Exception as exc:
                errors = {i: _agent_error(exc, "act_batch") for i in acting}
            else:
                for i in acting:
                    try:
                        actions[i] = _check_action(out[i], shape)
                    except AgentFailure as exc:
                        errors[i] = str(exc)
        else:
            for i in acting:
                s = slots[i]
                try:
                    with _deadline(ctx.step_timeout, "agent.act()"):
                        action = agents[i].act(s.obs, current_instruction(s.obs, s.episode.instructions[s.position]))
                    actions[i] = _check_action(action, shape)
                except AgentFailure as exc:
                    errors[i] = str(exc)
                except Exception as exc:
                    errors[i] = _agent_error(exc, "act")
        for i, error in errors.items():
            end_subtask(i, False, error, False)
        for i, (ok, payload) in pool.step(actions).items():
            s = slots[i]
            if not ok:
                end_subtask(i, False, f"environment step failed: {payload}", False)
                continue
            s.obs, success, terminated, truncated = payload
            s.steps += 1
            if success:
                end_subtask(i, True, None, False)
            elif terminated or truncated:
                end_subtask(i, False, None, True)
            elif s.steps >= ctx.max_steps:
                end_subtask(i, False, None, False)
