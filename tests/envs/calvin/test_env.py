"""The CALVIN PyBullet environment: Gymnasium contract, determinism, isolation, pickling, control,
button/switch logic and chained subtasks (spec calvin.md Parts B-D)."""

from __future__ import annotations

import multiprocessing
import pickle
import warnings

import gymnasium
import numpy as np
import pybullet as pb
import pytest
from gymnasium.utils.env_checker import check_env

import vlaeval.envs.registration  # noqa: F401  (registers vlaeval/Calvin-v0)
from vlaeval.envs.calvin.env import CalvinEnv
from vlaeval.envs.calvin.initial_state import neutral_robot_obs, scene_obs_for
from vlaeval.envs.calvin.predicates import DESK_BUTTON, DESK_DRAWER, DESK_SWITCH
from vlaeval.envs.calvin.tasks import STATE_KEYS

#: Evaluation state 190 of spec §A.7: everything on, door left, drawer open, two shelf blocks.
STATE_190 = dict(zip(STATE_KEYS, (1, 1, "left", "open", "slider_left", "table", "slider_right", 0)))
#: Evaluation state 0: lights off, door right, drawer closed.
STATE_0 = dict(zip(STATE_KEYS, (0, 0, "right", "closed", "table", "table", "slider_right", 0)))
SMALL = dict(static_size=64, gripper_size=32)


def eval_options(state: dict, **extra) -> dict:
    return {"robot_obs": neutral_robot_obs(), "scene_obs": scene_obs_for(state), **extra}


def hold(gripper: float = 1.0) -> np.ndarray:
    """A relative action that keeps the arm where it is."""
    action = np.zeros(7, dtype=np.float32)
    action[6] = gripper
    return action


def force_joint(env: CalvinEnv, joint: int, value: float) -> None:
    """Test helper: teleport a desk joint, standing in for the robot pushing it."""
    pb.resetJointState(env.body_ids["desk"], joint, value, 0.0, physicsClientId=env.client_id)


def assert_same_obs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "language":
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def rollout(env: CalvinEnv, actions: np.ndarray, **reset_kwargs) -> list[dict]:
    observations = [env.reset(**reset_kwargs)[0]]
    observations += [env.step(a)[0] for a in actions]
    return observations


@pytest.fixture(scope="module")
def actions() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(12, 7)).astype(np.float32)


@pytest.mark.parametrize(
    "cameras", [("rgb_static", "rgb_gripper", "depth_static", "depth_gripper"), ()], ids=["cameras", "state-only"]
)
def test_check_env(cameras: tuple[str, ...]) -> None:
    env = gymnasium.make("vlaeval/Calvin-v0", scene="D", cameras=cameras, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a contract violation too
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=1)
    assert set(obs) == {"robot_obs", "scene_obs", "language", *cameras}
    env.close()


def test_observation_types_and_render() -> None:
    env = CalvinEnv(cameras=("rgb_static", "depth_gripper"), render_mode="rgb_array", **SMALL)
    obs, _ = env.reset(seed=0)
    assert obs["rgb_static"].shape == (64, 64, 3) and obs["rgb_static"].dtype == np.uint8
    assert obs["depth_gripper"].shape == (32, 32) and obs["depth_gripper"].dtype == np.float32
    assert 0.0 < obs["depth_gripper"].min() <= obs["depth_gripper"].max() <= 2.0
    assert obs["rgb_static"].std() > 10  # a scene, not a blank frame
    np.testing.assert_array_equal(env.render(), obs["rgb_static"])
    env.close()


def test_same_seed_options_and_actions_are_bit_identical(actions: np.ndarray) -> None:
    first, second = CalvinEnv(**SMALL), CalvinEnv(**SMALL)
    options = eval_options(STATE_190, tasks=["turn_off_led"], instructions=["press the button"])
    reference = rollout(first, actions, seed=7, options=options)
    for a, b in zip(reference, rollout(second, actions, seed=7, options=options)):
        assert_same_obs(a, b)
    # Re-running in an env that already played an episode gives the same trajectory again, even
    # after an episode that ended with the gripper closed (upstream would carry that over).
    first.step(hold(-1.0))
    for a, b in zip(reference, rollout(first, actions, seed=7, options=options)):
        assert_same_obs(a, b)
    for a, b in zip(rollout(first, actions, seed=3), rollout(second, actions, seed=3)):  # random scenes
        assert_same_obs(a, b)
    first.close()
    second.close()


def test_instances_do_not_interfere(actions: np.ndarray) -> None:
    solo = CalvinEnv(cameras=("rgb_gripper",), **SMALL)
    expected = rollout(solo, actions, seed=5)
    solo.close()
    a, b = CalvinEnv(cameras=("rgb_gripper",), **SMALL), CalvinEnv(cameras=("rgb_gripper",), **SMALL)
    a.reset(seed=5)
    b.reset(seed=11)
    for i, action in enumerate(actions):
        obs_a = a.step(action)[0]
        b.step(-action)
        assert_same_obs(obs_a, expected[i + 1])
    a.close()
    b.close()


def test_pickle_round_trip() -> None:
    env = CalvinEnv(cameras=(), scene="B")
    env.reset(seed=2)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.client_id != env.client_id and clone.layout.name == "B"
    assert_same_obs(clone.reset(seed=4)[0], env.reset(seed=4)[0])
    clone.step(hold())
    env.close()
    clone.close()


def _run_in_child(env: CalvinEnv) -> np.ndarray:
    env.reset(seed=0)
    obs = env.step(hold())[0]
    env.close()
    return obs["robot_obs"]


def _make_in_child() -> np.ndarray:
    env = gymnasium.make("vlaeval/Calvin-v0", scene="D", cameras=())
    return _run_in_child(env.unwrapped)


def test_works_in_spawned_subprocess() -> None:
    env = CalvinEnv(cameras=())
    env.reset(seed=0)
    local = env.step(hold())[0]["robot_obs"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        made = pool.apply(_make_in_child)
        sent = pool.apply(_run_in_child, (env,))  # the env travels pickled
    np.testing.assert_array_equal(made, local)
    np.testing.assert_array_equal(sent, local)
    env.close()


@pytest.mark.parametrize("state", [STATE_0, STATE_190], ids=["state0", "state190"])
def test_reset_reproduces_robot_and_scene_obs(state: dict) -> None:
    env = CalvinEnv(cameras=())
    obs, info = env.reset(options=eval_options(state))
    # The TCP pose is recomputed from the joints, so it checks the robot's kinematics too.
    np.testing.assert_allclose(obs["robot_obs"][:14], neutral_robot_obs()[:14], atol=1e-4)
    np.testing.assert_allclose(obs["scene_obs"], scene_obs_for(state), atol=1e-3)
    assert env.light_states() == {"led": state["led"], "lightbulb": state["lightbulb"]}
    assert info == {"is_success": False, "task": "", "subtask_index": 0}
    env.close()


def test_relative_action_moves_tcp_by_scaled_amount() -> None:
    env = CalvinEnv(cameras=())
    env.reset(options=eval_options(STATE_0))
    for axis in range(3):
        for sign in (1.0, -1.0):
            before = env.tcp_pose()[0]
            command = hold()
            command[axis] = sign
            for _ in range(5):  # 5 x 0.02 m
                env.step(command)
            for _ in range(5):  # let the arm catch up with its target
                env.step(hold())
            moved = env.tcp_pose()[0] - before
            assert moved[axis] == pytest.approx(sign * 0.10, abs=0.01)
            assert np.abs(np.delete(moved, axis)).max() < 0.005
    env.close()


def test_absolute_action_reaches_pose() -> None:
    env = CalvinEnv(cameras=(), action_mode="absolute")
    obs, _ = env.reset(options=eval_options(STATE_0))
    target = obs["robot_obs"][:7].copy()
    target[:3] += (0.05, 0.03, -0.05)
    target[6] = 1.0
    for _ in range(15):
        obs = env.step(target.astype(np.float32))[0]
    np.testing.assert_allclose(obs["robot_obs"][:3], target[:3], atol=0.005)
    env.close()


def test_gripper_closes_and_opens_by_sign() -> None:
    env = CalvinEnv(cameras=())
    env.reset(options=eval_options(STATE_0))
    for _ in range(10):
        obs = env.step(hold(0.0))[0]  # zero is "close", as upstream binarises
    assert obs["robot_obs"][6] < 0.005 and obs["robot_obs"][14] == -1.0
    for _ in range(10):
        obs = env.step(hold(0.3))[0]
    assert obs["robot_obs"][6] > 0.075 and obs["robot_obs"][14] == 1.0
    env.close()


def test_button_toggles_led_on_each_press() -> None:
    env = CalvinEnv(cameras=())
    env.reset(options=eval_options(STATE_0))
    assert env.light_states()["led"] == 0
    force_joint(env, DESK_BUTTON, 0.02)
    env.step(hold())
    assert env.light_states()["led"] == 1
    for _ in range(5):  # held down or springing back: no further toggle
        env.step(hold())
    assert env.joint_state("button") < 0.01 and env.light_states()["led"] == 1
    force_joint(env, DESK_BUTTON, 0.02)
    obs = env.step(hold())[0]
    assert env.light_states()["led"] == 0 and obs["scene_obs"][5] == 0
    # Resetting with the LED on copies it into the button: one press turns it off (HEAD), even
    # though the previous episode ended with the button held down.
    force_joint(env, DESK_BUTTON, 0.02)
    env.step(hold())
    env.reset(options=eval_options(STATE_190))
    force_joint(env, DESK_BUTTON, 0.02)
    env.step(hold())
    assert env.light_states()["led"] == 0
    env.close()


def test_switch_drives_lightbulb() -> None:
    env = CalvinEnv(cameras=())
    env.reset(options=eval_options(STATE_0))
    force_joint(env, DESK_SWITCH, 0.06)
    obs = env.step(hold())[0]
    assert env.light_states()["lightbulb"] == 1 and obs["scene_obs"][4] == 1
    for _ in range(3):  # the switch stays up, the bulb stays on
        env.step(hold())
    assert env.joint_state("switch") > 0.044 and env.light_states()["lightbulb"] == 1
    force_joint(env, DESK_SWITCH, 0.03)
    env.step(hold())
    assert env.light_states()["lightbulb"] == 0
    # An eval reset with the bulb on (switch up) keeps it on through the first update.
    env.reset(options=eval_options(STATE_190))
    env.step(hold())
    assert env.light_states()["lightbulb"] == 1
    env.close()


def test_chained_subtasks_advance_on_success() -> None:
    env = CalvinEnv(cameras=())
    tasks = ["open_drawer", "turn_on_led"]
    obs, info = env.reset(options=eval_options(STATE_0, tasks=tasks, instructions=["open it", "press it"]))
    assert obs["language"] == "open it" and info["task"] == "open_drawer" and env.current_task == "open_drawer"

    obs, reward, terminated, truncated, info = env.step(hold())
    assert info == {"is_success": False, "task": "open_drawer", "subtask_index": 0} and reward == 0.0

    force_joint(env, DESK_DRAWER, 0.2)
    obs, reward, terminated, truncated, info = env.step(hold())
    assert info == {"is_success": True, "task": "open_drawer", "subtask_index": 0}
    assert (reward, terminated, truncated) == (1.0, False, False)
    assert obs["language"] == "press it" and env.current_task == "turn_on_led"
    assert env.start_snapshot() is env.snapshot()  # S re-taken at the success step

    obs, reward, terminated, _, info = env.step(hold())  # the open drawer no longer counts
    assert info == {"is_success": False, "task": "turn_on_led", "subtask_index": 1}

    force_joint(env, DESK_BUTTON, 0.02)
    obs, reward, terminated, _, info = env.step(hold())
    assert info == {"is_success": True, "task": "turn_on_led", "subtask_index": 1}
    assert terminated and reward == 1.0 and obs["language"] == "" and env.current_task is None
    env.close()


def test_without_tasks_nothing_succeeds() -> None:
    env = CalvinEnv(cameras=())
    obs, _ = env.reset(options=eval_options(STATE_0))
    force_joint(env, DESK_DRAWER, 0.2)
    obs, reward, terminated, truncated, info = env.step(hold())
    assert info == {"is_success": False, "task": "", "subtask_index": 0}
    assert (reward, terminated, truncated, obs["language"]) == (0.0, False, False, "")
    env.close()


@pytest.mark.parametrize("scene", ["A", "B", "C"])
def test_other_scenes_build_with_their_block_order(scene: str) -> None:
    env = gymnasium.make("vlaeval/Calvin-v0", scene=scene, cameras=())
    obs, _ = env.reset(seed=0)
    unwrapped = env.unwrapped
    for slot, colour in enumerate(unwrapped.layout.block_order):
        np.testing.assert_allclose(obs["scene_obs"][6 + 6 * slot : 9 + 6 * slot], unwrapped.block_pose(colour)[0])
    assert unwrapped.body_ids["desk"] == 5
    env.close()


def test_privileged_helpers() -> None:
    env = CalvinEnv(cameras=())
    env.reset(options=eval_options(STATE_190))
    assert env.joint_state("drawer") == pytest.approx(0.22, abs=1e-3)
    assert env.joint_state("slide") == pytest.approx(0.28, abs=1e-3)
    handle, _ = env.link_world_pose("drawer_handle")
    assert handle[1] < -0.4  # pulled out towards the robot
    button, _ = env.link_world_pose("button")
    np.testing.assert_allclose(button, (-0.12, -0.12, 0.484), atol=1e-3)
    red, _ = env.block_pose("red")
    np.testing.assert_allclose(red, scene_obs_for(STATE_190)[6:9], atol=1e-3)
    assert env.body_ids["robot"] == 0 and env.body_ids["red"] == 2 and env.body_ids["ground"] == 6
    env.close()
