"""Protocol fingerprints: every field that changes a score is detected, by its own name."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import gymnasium
import numpy as np
import pytest

from vlaeval.conventions import AgentSpec
from vlaeval.envs.calvin.spec import CALVIN_SPEC
from vlaeval.envs.calvin.suite import CalvinSuite
from vlaeval.results.fingerprint import (
    ABSENT,
    agent_option_defaults,
    diff_fingerprints,
    fingerprint_hash,
    observation_shapes,
    protocol_fingerprint,
)

EPISODES = CalvinSuite().episodes("D->D", 0)[:5]
AGENT = AgentSpec(action_type="relative_ee", rotation="euler_xyz", gripper="open_positive", observation_keys=("rgb_static",))


def _inputs(**changes: Any) -> dict[str, Any]:
    base = dict(
        suite=CALVIN_SPEC, setting="D->D", episodes=EPISODES, agent="kosmos-lstm-tiny", agent_spec=AGENT, action_type="relative_ee",
        agent_options={"runtime": "torch", "action_horizon": 1}, runtime="torch",
        env_kwargs={"scene": "D", "action_mode": "relative", "cameras": ("rgb_static",)},
        observation_shapes={"rgb_static": (200, 200, 3), "robot_obs": (15,)}, control_hz=30,
        versions={"pybullet": "3.2.7", "mani_skill": "3.0.1", "numpy": "2.4.6"},
        renderer={"renderer": "pybullet TinyRenderer", "device": "x86_64"},
    )
    return base | changes


BASE = protocol_fingerprint(**_inputs())

CHANGES = [
    ("suite version", {"suite": dataclasses.replace(CALVIN_SPEC, version="2")}, {"suite.version": ("1", "2")}),
    ("setting", {"setting": "ABC->D"}, {"suite.setting": ("D->D", "ABC->D")}),
    ("episode seeds", {"episodes": CalvinSuite().episodes("D->D", 7)[:5]}, {"episodes.sha256"}),
    ("episode options", {"episodes": [dataclasses.replace(EPISODES[0], options={**EPISODES[0].options, "scene_obs": [0.0] * 24}),
                                      *EPISODES[1:]]}, {"episodes.sha256"}),
    ("episode count", {"episodes": EPISODES[:4]}, {"episodes.count": (5, 4), "episodes.indices": ("0-4", "0-3"), "episodes.sha256": None}),
    ("step budget", {"suite": dataclasses.replace(CALVIN_SPEC, protocol=dataclasses.replace(CALVIN_SPEC.protocol, max_steps=180))},
     {"termination.max_steps": (360, 180)}),
    ("chain length", {"suite": dataclasses.replace(CALVIN_SPEC, protocol=dataclasses.replace(CALVIN_SPEC.protocol, chain_length=1))},
     {"termination.chain_length": (5, 1)}),
    ("control rate", {"control_hz": 15}, {"control_hz": (30, 15)}),
    ("action type", {"action_type": "absolute_ee"}, {"action.type": ("relative_ee", "absolute_ee")}),
    ("agent rotation", {"agent_spec": dataclasses.replace(AGENT, rotation="any")}, {"action.agent_rotation": ("euler_xyz", "any")}),
    ("runtime", {"agent_options": {"runtime": "onnx", "action_horizon": 1}, "runtime": "onnx"},
     {"agent.options.runtime": ("torch", "onnx"), "agent.runtime": ("torch", "onnx")}),
    ("action chunk", {"agent_options": {"runtime": "torch", "action_horizon": 5}}, {"agent.options.action_horizon": (1, 5)}),
    ("observation keys", {"agent_spec": dataclasses.replace(AGENT, observation_keys=("rgb_static", "robot_obs"))},
     {"agent.observation_keys": (["rgb_static"], ["rgb_static", "robot_obs"])}),
    ("resolution", {"observation_shapes": {"rgb_static": (128, 128, 3), "robot_obs": (15,)}},
     {"observations.rgb_static": ([200, 200, 3], [128, 128, 3])}),
    ("env option", {"env_kwargs": {"scene": "D", "action_mode": "relative", "cameras": ("rgb_static", "rgb_gripper")}},
     {"env.cameras": (["rgb_static"], ["rgb_static", "rgb_gripper"])}),
    ("simulator version", {"versions": {"pybullet": "3.2.6", "mani_skill": "3.0.1", "numpy": "2.4.6"}}, {"versions.pybullet": ("3.2.7", "3.2.6")}),
    ("renderer", {"renderer": {"renderer": "pybullet TinyRenderer", "device": "aarch64"}}, {"renderer.device": ("x86_64", "aarch64")}),
    ("a package only one run had", {"versions": {"pybullet": "3.2.7", "numpy": "2.4.6"}}, {"versions.mani_skill": ("3.0.1", ABSENT)}),
]


@pytest.mark.parametrize("changes, expected", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_each_field_is_detected_by_name(changes: dict[str, Any], expected: Any) -> None:
    other = protocol_fingerprint(**_inputs(**changes))
    differences = diff_fingerprints(BASE, other)
    assert {field for field, _, _ in differences} == set(expected)
    if isinstance(expected, dict):
        for field, a, b in differences:
            if expected[field] is not None:
                assert (a, b) == expected[field], field
    assert fingerprint_hash(other) != fingerprint_hash(BASE)


def test_equal_inputs_give_equal_hashes_whatever_the_spelling() -> None:
    reordered = protocol_fingerprint(**_inputs(agent_options={"action_horizon": 1, "runtime": "torch"},
                                               observation_shapes={"robot_obs": [15], "rgb_static": [200, 200, 3]}))
    assert diff_fingerprints(BASE, reordered) == []
    assert fingerprint_hash(reordered) == fingerprint_hash(BASE)
    stored = json.loads(json.dumps(BASE))  # as read back from a manifest: tuples became lists
    assert diff_fingerprints(stored, BASE) == [] and fingerprint_hash(stored) == fingerprint_hash(BASE)
    assert len(fingerprint_hash(BASE)) == 64


def test_the_record_names_budgets_conventions_and_episodes() -> None:
    assert BASE["termination"]["max_steps"] == 360 and BASE["termination"]["chain_length"] == 5
    assert BASE["action"] == {"type": "relative_ee", "rotation": "euler_xyz", "gripper": "open_positive",
                              "agent_rotation": "euler_xyz", "agent_gripper": "open_positive"}
    assert BASE["episodes"]["count"] == 5 and BASE["episodes"]["indices"] == "0-4"


def test_helpers_read_shapes_and_constructor_defaults() -> None:
    space = gymnasium.spaces.Dict({"rgb": gymnasium.spaces.Box(0, 255, (84, 84, 3), np.uint8), "language": gymnasium.spaces.Text(16),
                                   "state": gymnasium.spaces.Box(-1, 1, (7,), np.float32)})
    assert observation_shapes(space) == {"rgb": [84, 84, 3], "state": [7]}

    class Policy:
        def __init__(self, checkpoint: str, runtime: str = "auto", *, action_horizon: int = 1, **extra: Any) -> None: ...

    assert agent_option_defaults(Policy) == {"runtime": "auto", "action_horizon": 1}
    filled = agent_option_defaults(Policy) | {"checkpoint": "c", "runtime": "auto"}
    explicit = protocol_fingerprint(**_inputs(agent_options=filled))
    implicit = protocol_fingerprint(**_inputs(agent_options=agent_option_defaults(Policy) | {"checkpoint": "c"}))
    assert diff_fingerprints(explicit, implicit) == []
