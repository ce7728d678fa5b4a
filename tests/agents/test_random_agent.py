"""RandomAgent: samples inside the suite's space, per-episode seeding independent of history."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from vlaeval.agents.base import AgentContext
from vlaeval.agents.random import RandomAgent

SPACE = gymnasium.spaces.Box(-1.0, 1.0, (7,), np.float32)


def _bound(space=SPACE) -> RandomAgent:
    agent = RandomAgent()
    agent.bind(AgentContext("calvin", "D", "relative_ee", space, None))
    return agent


def _episode(agent: RandomAgent, seed: int, steps: int = 5) -> np.ndarray:
    agent.seed(seed)
    agent.reset()
    return np.stack([agent.act({}, "open the drawer") for _ in range(steps)])


def test_episode_actions_depend_only_on_the_episode_seed() -> None:
    a, b = _bound(), _bound()
    _episode(a, 1, steps=13)  # a ran another episode first, as on another shard
    np.testing.assert_array_equal(_episode(a, 7), _episode(b, 7))
    assert not np.array_equal(_episode(a, 7), _episode(a, 8))


def test_samples_lie_in_the_space_and_leave_the_env_space_alone() -> None:
    space = gymnasium.spaces.Box(-1.0, 1.0, (7,), np.float32)
    space.seed(123)
    expected = space.sample()
    space.seed(123)
    actions = _episode(_bound(space), 0, steps=50)
    assert actions.dtype == np.float32 and all(SPACE.contains(x) for x in actions)
    np.testing.assert_array_equal(space.sample(), expected)


def test_needs_bind_first() -> None:
    with pytest.raises(RuntimeError, match="bind"):
        RandomAgent().seed(0)
