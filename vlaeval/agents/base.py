"""The agent contract (LeRobot's ``reset()`` / ``select_action()`` shape, CALVIN's ``step(obs, goal)``).

An agent is constructed once per worker and reused across episodes, so anything per-episode
(history windows, action-chunk queues, recurrent state) must be cleared in :meth:`Agent.reset`,
which the runner calls at the start of every episode and of every chained subtask.

Batched agents (``--envs-per-worker N``): the runner steps N environments in lock-step and, for
an agent that overrides :meth:`Agent.act_batch` *and* implements :meth:`Agent.reset_slot`, calls
``act_batch`` once per step for all N, with environment ``i`` always in batch slot ``i``.  The
environments start episodes and subtasks at different times, so instead of :meth:`Agent.reset`
the runner then calls ``reset_slot(i)`` (and ``seed_slot(i, seed)`` at each episode start); the
batch always has N entries (a slot whose environment has no episode left gets a stand-in
observation and its action is ignored).  Any other agent is stepped one environment at a time,
with one instance per environment.  See :func:`is_batched`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from vlaeval.conventions import AgentSpec


@dataclass(frozen=True)
class AgentContext:
    """What an agent learns about the evaluation before its first episode.

    Attributes:
        suite: registered suite name.
        setting: generalization setting being evaluated.
        action_type: the action convention negotiated with the suite.
        action_space: the environment's ``gymnasium`` action space.
        observation_space: the environment's ``gymnasium`` observation space.
        env: the unwrapped environment; only privileged agents (scripted experts) may read it.
        options: free-form agent options from the command line (``--agent-opt k=v``).
    """

    suite: str
    setting: str
    action_type: str
    action_space: Any
    observation_space: Any
    env: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Agent:
    """Base class for policies evaluated by vlaeval.

    Subclasses set :attr:`spec` and implement :meth:`act`.  Agents need not subclass this (any
    object with the same methods works) but inheriting gives sensible defaults.
    """

    spec: ClassVar[AgentSpec] = AgentSpec()

    def bind(self, context: AgentContext) -> None:
        """Called once per environment before the first episode; keep what you need."""
        self.context = context

    def seed(self, seed: int) -> None:
        """Seed any randomness the agent owns; called at the start of every episode.

        Seeding per episode (not per worker) is what makes results independent of how
        episodes are sharded over workers.
        """

    def reset(self) -> None:
        """Clear per-episode state; called at every episode start and every chained subtask."""

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        """Return one action for the current observation and language instruction."""
        raise NotImplementedError(f"{type(self).__name__} must implement act(observation, instruction)")

    def act_batch(self, observations: Sequence[Mapping[str, Any]], instructions: Sequence[str]) -> np.ndarray:
        """Actions for many environments at once (stacked on axis 0).

        The default loops over :meth:`act`; batched models override it to run one forward pass.
        Agents that override it keep one state per batch slot, and implement :meth:`reset_slot`
        so the runner can batch them.
        """
        return np.stack([self.act(o, i) for o, i in zip(observations, instructions)])

    def reset_slot(self, slot: int) -> None:
        """Clear the state of batch slot ``slot`` only (optional; batched agents).

        Called instead of :meth:`reset` when the environment in that slot starts an episode or a
        chained subtask while the other slots go on.  Agents without it are not batched.
        """
        raise NotImplementedError(f"{type(self).__name__} has no per-slot state")

    def seed_slot(self, slot: int, seed: int) -> None:
        """Seed the randomness of batch slot ``slot`` (optional; stochastic batched agents).

        Called instead of :meth:`seed` at each episode start in batched runs.  An agent that
        overrides :meth:`seed` but not this is not batched, so its results never depend on
        batching; deterministic batched agents need neither.
        """

    def close(self) -> None:
        """Release resources (sessions, sockets, subprocesses)."""


def is_batched(agent: Any) -> bool:
    """Whether the runner may serve several environments with one batched ``act_batch`` call.

    True when the agent overrides ``act_batch`` and implements ``reset_slot`` (and, if it
    overrides ``seed``, also ``seed_slot``).  Works for duck-typed agents too.
    """
    cls = type(agent)

    def own(name: str) -> bool:
        attr = getattr(cls, name, None)
        return callable(attr) and attr is not getattr(Agent, name, None)

    if not (own("act_batch") and own("reset_slot")):
        return False
    return own("seed_slot") or not own("seed")
