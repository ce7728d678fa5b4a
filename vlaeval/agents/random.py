"""``RandomAgent``: uniform samples from the suite's action space, the floor any policy must beat.

The sampler is reseeded by :meth:`RandomAgent.seed`, which the runner calls at every episode
start with the episode's seed, so an episode's actions do not depend on which worker ran it or
what ran before.  For CALVIN's 7-d relative action the gripper entry is sampled uniformly in
[-1, 1] like the other dims; the environment reads its sign (open if >= 0), so the gripper is
open or closed with equal probability each step.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.conventions import AgentSpec


class RandomAgent(Agent):
    """Samples ``context.action_space`` (a ``gymnasium`` Box) with its own seeded generator."""

    spec = AgentSpec()

    def __init__(self) -> None:
        self._space: Any = None

    def bind(self, context: AgentContext) -> None:
        super().bind(context)
        # A copy: seeding the environment's own space object would change its RNG stream.
        self._space = copy.deepcopy(context.action_space)
        self._space.seed(0)

    def seed(self, seed: int) -> None:
        if self._space is None:
            raise RuntimeError("RandomAgent.seed() called before bind(); the runner binds agents first")
        self._space.seed(int(seed))

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        if self._space is None:
            raise RuntimeError("RandomAgent.act() called before bind(); it needs the suite's action space")
        return np.asarray(self._space.sample(), dtype=np.float32)
