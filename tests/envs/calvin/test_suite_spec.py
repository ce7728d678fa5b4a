"""The calvin suite's frozen spec and its episode listing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlaeval.conventions import AgentSpec
from vlaeval.envs.calvin.initial_state import neutral_robot_obs, scene_obs_for
from vlaeval.envs.calvin.language import EVAL_INSTRUCTIONS, TRAIN_INSTRUCTIONS
from vlaeval.envs.calvin.sequences import official_sequences
from vlaeval.envs.calvin.spec import CALVIN_SPEC
from vlaeval.envs.calvin.suite import CalvinSuite
from vlaeval.envs.calvin.tasks import TASKS
from vlaeval.envs.suite import Protocol, episode_seed

STANDARD = ("D->D", "ABC->D", "ABCD->D")


def test_spec_fields():
    assert CALVIN_SPEC.name == "calvin" and CALVIN_SPEC.version == "1"
    assert CALVIN_SPEC.target == "vlaeval.envs.calvin.suite:CalvinSuite"
    assert CALVIN_SPEC.tasks == TASKS
    assert CALVIN_SPEC.protocol == Protocol(episodes=1000, max_steps=360, seed=0, chain_length=5)
    assert CALVIN_SPEC.env_ids == ("vlaeval/Calvin-v0",)
    assert CALVIN_SPEC.conventions.action_types == ("relative_ee", "absolute_ee")
    assert CALVIN_SPEC.conventions.observation_keys == (
        "rgb_static", "rgb_gripper", "depth_static", "depth_gripper", "robot_obs", "scene_obs"
    )  # fmt: skip
    assert CALVIN_SPEC.setting(None).name == "D->D"
    with pytest.raises(dataclasses.FrozenInstanceError):
        CALVIN_SPEC.name = "other"  # type: ignore[misc]


def test_settings():
    settings = CALVIN_SPEC.settings
    assert [s.name for s in settings] == [*STANDARD, "unseen-instructions"]
    assert [s.train_scenes for s in settings] == [("D",), ("A", "B", "C"), ("A", "B", "C", "D"), ("A", "B", "C", "D")]
    assert all(dict(s.env_kwargs) == {"scene": "D"} for s in settings)
    assert [s.options["instructions"] for s in settings] == ["train", "train", "train", "eval"]
    assert all(s.description for s in settings)


def test_suite_target_resolves_to_calvin_suite():
    module, attr = CALVIN_SPEC.target.split(":")
    assert getattr(__import__(module, fromlist=[attr]), attr) is CalvinSuite
    assert CalvinSuite.spec is CALVIN_SPEC


@pytest.fixture(scope="module")
def episodes():
    return {name: CalvinSuite().episodes(name, 0) for name in (*STANDARD, "unseen-instructions")}


def test_episodes_follow_the_official_list(episodes):
    official = official_sequences()
    for listing in episodes.values():
        assert len(listing) == 1000
        assert [e.index for e in listing] == list(range(1000))
        assert [e.tasks for e in listing] == [chain for _, chain in official]
        assert [e.options["initial_state"] for e in listing] == [state for state, _ in official]
    first = episodes["D->D"][0]
    assert first.tasks == (
        "rotate_blue_block_right", "move_slider_right", "lift_red_block_slider", "place_in_slider", "turn_off_lightbulb"
    )  # fmt: skip
    assert list(first.options["initial_state"].values()) == [1, 1, "left", "open", "slider_left", "table", "slider_right", 0]


def test_episode_options_carry_reset_vectors(episodes):
    for e in episodes["ABC->D"][:50]:
        assert e.seed == episode_seed(0, e.index)
        assert e.options["robot_obs"] == neutral_robot_obs().tolist()
        assert e.options["scene_obs"] == scene_obs_for(e.options["initial_state"]).tolist()
        assert e.options["tasks"] == list(e.tasks)
        assert e.options["instructions"] == list(e.instructions)


@pytest.mark.parametrize("name", STANDARD)
def test_standard_settings_use_training_wording(episodes, name):
    for e in episodes[name]:
        assert len(e.instructions) == 5
        assert all(text in TRAIN_INSTRUCTIONS[t] for t, text in zip(e.tasks, e.instructions))


def test_unseen_setting_uses_only_eval_wording(episodes):
    for e in episodes["unseen-instructions"]:
        assert all(text in EVAL_INSTRUCTIONS[t] for t, text in zip(e.tasks, e.instructions))


def test_listing_is_deterministic_and_seed_only_moves_wording(episodes):
    again = CalvinSuite().episodes("D->D", 0)
    assert [e.to_json() for e in again] == [e.to_json() for e in episodes["D->D"]]
    other = CalvinSuite().episodes("D->D", 1)
    assert [e.tasks for e in other] == [e.tasks for e in again]
    assert [e.instructions for e in other] != [e.instructions for e in again]
    # All paraphrases get used: the choice is not stuck on one per task.
    used = {text for e in again for text in e.instructions}
    assert used == {text for texts in TRAIN_INSTRUCTIONS.values() for text in texts}


def test_episodes_are_json_serialisable(episodes):
    for e in episodes["unseen-instructions"]:
        decoded = json.loads(e.to_json())
        assert decoded["options"]["initial_state"] == e.options["initial_state"]
        assert len(decoded["options"]["robot_obs"]) == 15 and len(decoded["options"]["scene_obs"]) == 24
        assert decoded["tasks"] == list(e.tasks)


def test_env_kwargs():
    suite = CalvinSuite()
    agent = AgentSpec(observation_keys=("rgb_static", "robot_obs", "depth_gripper"))
    setting = CALVIN_SPEC.setting("ABC->D")
    assert suite.env_kwargs(setting, agent, "relative_ee") == {
        "scene": "D",
        "action_mode": "relative",
        "cameras": ("rgb_static", "depth_gripper"),
    }
    assert suite.env_kwargs(setting, AgentSpec(), "absolute_ee") == {"scene": "D", "action_mode": "absolute", "cameras": ()}


def test_spec_and_suite_import_without_pybullet():
    code = (
        "import sys, vlaeval.envs.calvin.spec, vlaeval.envs.calvin.suite; "
        "assert 'pybullet' not in sys.modules, 'pybullet imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
