"""Shared helpers of the simpler tests: protocol episodes, expert rollouts, observation equality."""

from __future__ import annotations

import numpy as np

from vlaeval.agents.base import AgentContext
from vlaeval.envs.simpler.suite import SimplerSuite


def protocol_episode(task: str, setting: str = "visual-matching", variant: str | None = None, layout_index: int = 0):
    return next(e for e in SimplerSuite().episodes(setting, 0)
                if e.tasks[0] == task and e.options["layout_index"] == layout_index
                and (variant is None or e.options["variant_name"] == variant))


def expert_run(env, episode):
    """The scripted expert on a single env: its actions and what the env returned for each step."""
    from vlaeval.agents.simpler_expert.agent import SimplerExpert

    agent = SimplerExpert()
    agent.bind(AgentContext("simpler", "visual-matching", "relative_ee", env.action_space, env.observation_space, env=env))
    obs, info = env.reset(seed=episode.seed, options=dict(episode.options))
    agent.reset()
    actions, steps = [], []
    for _ in range(info["budget"]):
        action = agent.act(obs, episode.instructions[0])
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(np.array(action, copy=True))  # the agent may reuse its buffer
        steps.append((obs, info))
        if terminated or truncated:
            break
    return actions, steps


def assert_same_obs(got, want):
    assert set(got) == set(want)
    assert got["language"] == want["language"]
    np.testing.assert_array_equal(got["robot_state"], want["robot_state"])
    if "rgb" in want:
        np.testing.assert_array_equal(got["rgb"], want["rgb"])
