"""The scripted CALVIN expert: solves every kind of task from official chain states, emits valid
relative actions, and is deterministic."""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
import pytest

import vlaeval.envs.registration  # noqa: F401  (registers vlaeval/Calvin-v0)
from vlaeval.agents.base import AgentContext
from vlaeval.agents.expert.agent import CalvinExpert
from vlaeval.agents.expert.skills import hand_euler, nearest_symmetric, wrap
from vlaeval.envs.calvin.suite import CalvinSuite
from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError

MAX_STEPS = 360  # CALVIN's budget per subtask (spec §C.5)


@pytest.fixture(scope="module")
def episodes() -> list[EpisodeSpec]:
    return CalvinSuite().episodes("D->D", 0)


@pytest.fixture(scope="module")
def env() -> Any:
    env = gymnasium.make("vlaeval/Calvin-v0", cameras=(), action_mode="relative")
    yield env
    env.close()


def make_expert(env: Any, action_type: str = "relative_ee") -> CalvinExpert:
    expert = CalvinExpert()
    expert.bind(AgentContext("calvin", "D->D", action_type, env.action_space, env.observation_space, env=env.unwrapped))
    return expert


def play(env: Any, expert: CalvinExpert, episode: EpisodeSpec, subtasks: int) -> tuple[list[bool], list[np.ndarray]]:
    """CALVIN's loop (§C.5) over the first ``subtasks`` of a chain: outcomes and every action."""
    obs, _ = env.reset(seed=episode.seed, options=dict(episode.options))
    expert.seed(episode.seed)
    outcomes, actions = [], []
    for instruction in episode.instructions[:subtasks]:
        expert.reset()
        success = False
        for _ in range(MAX_STEPS):
            action = expert.act(obs, instruction)
            actions.append(action)
            obs, _, _, _, info = env.step(action)
            if info["is_success"]:
                success = True
                break
        outcomes.append(success)
        if not success:
            break
    return outcomes, actions


def first_with(episodes: list[EpisodeSpec], task: str) -> tuple[EpisodeSpec, int]:
    """The first official chain containing ``task``, and its position there."""
    for episode in episodes:
        if task in episode.tasks:
            return episode, episode.tasks.index(task)
    raise AssertionError(f"no official chain contains {task}")


# One task per family: doors, drawer, both lights, lifts from every surface, rotation, pushes,
# the pick-and-place family and the block-on-block pair.
REPRESENTATIVE = (
    "open_drawer",
    "close_drawer",
    "move_slider_left",
    "move_slider_right",
    "turn_on_led",
    "turn_off_lightbulb",
    "turn_on_lightbulb",
    "lift_red_block_table",
    "lift_pink_block_slider",
    "rotate_blue_block_left",
    "rotate_red_block_right",
    "push_pink_block_right",
    "push_into_drawer",
)


@pytest.mark.parametrize("task", REPRESENTATIVE)
def test_solves_task_from_an_official_chain(env: Any, episodes: list[EpisodeSpec], task: str) -> None:
    episode, position = first_with(episodes, task)
    outcomes, _ = play(env, make_expert(env), episode, position + 1)
    assert outcomes == [True] * (position + 1), f"{episode.tasks}: {outcomes}"


@pytest.mark.parametrize("task", ["place_in_drawer", "stack_block", "unstack_block", "lift_blue_block_drawer"])
def test_solves_tasks_that_need_a_prefix(env: Any, episodes: list[EpisodeSpec], task: str) -> None:
    """Places, stacking and drawer lifts never start a chain: play the chain up to them."""
    episode, position = first_with(episodes, task)
    outcomes, _ = play(env, make_expert(env), episode, position + 1)
    assert outcomes == [True] * (position + 1), f"{episode.tasks}: {outcomes}"


@pytest.mark.slow
def test_full_chains(env: Any, episodes: list[EpisodeSpec]) -> None:
    """The first 20 official chains, all five subtasks: the bar is an average length >= 4.5."""
    lengths = [sum(play(env, make_expert(env), episode, 5)[0]) for episode in episodes[:20]]
    assert np.mean(lengths) >= 4.5, lengths


def test_actions_are_relative_and_in_the_action_space(env: Any, episodes: list[EpisodeSpec]) -> None:
    _, actions = play(env, make_expert(env), episodes[0], 2)
    stacked = np.stack(actions)
    assert stacked.dtype == np.float32 and stacked.shape[1] == 7
    assert all(env.action_space.contains(a) for a in actions)
    assert set(np.unique(stacked[:, 6])) <= {-1.0, 1.0}  # the raw env only accepts +-1 (§C.5)


def test_is_deterministic(env: Any, episodes: list[EpisodeSpec]) -> None:
    first = play(env, make_expert(env), episodes[3], 2)
    second = play(env, make_expert(env), episodes[3], 2)
    assert first[0] == second[0]
    np.testing.assert_array_equal(np.stack(first[1]), np.stack(second[1]))


def test_falls_back_to_the_instruction_when_the_env_runs_no_chain(env: Any, episodes: list[EpisodeSpec]) -> None:
    episode, _ = first_with(episodes, "turn_on_led")
    options = {k: v for k, v in episode.options.items() if k not in ("tasks", "instructions")}
    obs, _ = env.reset(seed=0, options=options)
    expert = make_expert(env)
    expert.reset()
    instruction = episode.instructions[episode.tasks.index("turn_on_led")]
    for _ in range(MAX_STEPS):
        obs, *_ = env.step(expert.act(obs, instruction))
        if env.unwrapped.light_states()["led"] == 1:
            break
    assert env.unwrapped.light_states()["led"] == 1


def test_refuses_absolute_actions(env: Any) -> None:
    with pytest.raises(VlaevalError, match="relative_ee"):
        make_expert(env, action_type="absolute_ee")


def test_declares_a_privileged_state_only_spec() -> None:
    spec = CalvinExpert.spec
    assert spec.privileged and spec.action_type == "relative_ee" and spec.gripper == "open_positive"
    assert not any(key.startswith(("rgb", "depth")) for key in spec.observation_keys)


def test_hand_orientation_helpers() -> None:
    roll, pitch, yaw = hand_euler(1.2, 0.0)
    assert abs(wrap(roll - math.pi)) < 1e-9 and abs(pitch) < 1e-9 and abs(yaw - 1.2) < 1e-9
    # The yaw stays next to the requested one instead of being wrapped (the wrist has limits).
    assert abs(hand_euler(4.0, 0.0)[2] - 4.0) < 1e-9
    assert abs(hand_euler(1.5, 0.6)[1]) > 0.5  # tipping forward shows up as pitch at yaw ~ pi/2
    assert math.isclose(nearest_symmetric(-2.9, math.pi, math.pi / 2), -2.9 + math.pi)
    assert math.isclose(nearest_symmetric(0.1, math.pi / 2, math.pi / 2), 0.1 + math.pi / 2)
