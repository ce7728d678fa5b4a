"""``vlaeval/CalvinUpstream-v0``: upstream's env behind the calvin suite's API (each test body runs
in a fresh process, see :mod:`tests.envs.calvin_upstream.fresh`)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("calvin_env", reason="upstream calvin_env is not installed (bash scripts/install-calvin-upstream.sh)")

from tests.envs.calvin_upstream.fresh import in_fresh_process  # noqa: E402

#: Desk points whose part has the same shape on both desks (the handles and the switch differ).
SAME_POINTS = ("button", "slide", "drawer", "led", "lightbulb", "plank")


def _observations_and_state() -> None:
    from vlaeval.envs.calvin.suite import CalvinSuite
    from vlaeval.envs.calvin_upstream.env import CalvinUpstreamEnv
    from vlaeval.envs.calvin_upstream.info import live_snapshot, snapshot_of

    env = CalvinUpstreamEnv(cameras=("rgb_static", "rgb_gripper", "depth_static"))
    episode = CalvinSuite().episodes("D->D", 0)[0]
    obs, info = env.reset(seed=episode.seed, options=dict(episode.options))
    assert info == {"is_success": False, "task": episode.tasks[0], "subtask_index": 0}
    assert set(obs) == {"robot_obs", "scene_obs", "language", "rgb_static", "rgb_gripper", "depth_static"}
    assert obs["rgb_static"].shape == (200, 200, 3) and obs["rgb_gripper"].shape == (84, 84, 3)
    assert obs["language"] == episode.instructions[0]
    assert env.observation_space.contains(obs)
    np.testing.assert_allclose(obs["scene_obs"], episode.options["scene_obs"], atol=5e-3)  # one physics step later: shelf blocks settle
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.array([0.5, 0, -0.5, 0, 0, 0.3, 1.0], dtype=np.float32))
    assert env.observation_space.contains(obs) and not (terminated or truncated) and reward == 0.0
    # the expert's view (the info dict alone) and the cross-check's (pybullet) read the same state
    assert snapshot_of(env.info) == live_snapshot(env.client_id, env.info).freeze()
    env.close()

    env = CalvinUpstreamEnv(action_mode="absolute", cameras=())  # the closed one freed client 0
    obs, _ = env.reset(options=dict(episode.options))
    hold = np.array([*obs["robot_obs"][:6], -0.3])  # the current TCP pose, gripper closing (by sign)
    for _ in range(10):
        obs, *_ = env.step(hold)
    np.testing.assert_allclose(obs["robot_obs"][:3], hold[:3], atol=2e-3)
    assert obs["robot_obs"][14] == -1 and obs["robot_obs"][6] < 0.075  # the fingers are closing
    env.close()


def test_observations_spaces_and_the_two_state_readers_agree() -> None:
    in_fresh_process(_observations_and_state)


def _desk_points_and_second_env() -> None:
    from vlaeval.envs.calvin.env import CalvinEnv
    from vlaeval.envs.calvin.suite import CalvinSuite
    from vlaeval.envs.calvin_upstream.env import CalvinUpstreamEnv
    from vlaeval.errors import VlaevalError

    upstream = CalvinUpstreamEnv(cameras=())
    with pytest.raises(VlaevalError, match="needs pybullet client 0"):
        CalvinUpstreamEnv(cameras=())
    ours = CalvinEnv(cameras=())  # later clients are fine
    for episode in CalvinSuite().episodes("D->D", 0)[:3]:  # drawer and door in both positions
        upstream.reset(options=dict(episode.options))
        ours.reset(options=dict(episode.options))
        for name in SAME_POINTS:
            for a, b in zip(upstream.link_world_pose(name), ours.link_world_pose(name)):
                np.testing.assert_allclose(a, b, atol=1e-4, err_msg=name)  # the LED frame is 0.05 mm higher upstream
        assert upstream.body_ids == ours.body_ids
        assert upstream.light_states() == ours.light_states()
        for colour in ("red", "blue", "pink"):
            np.testing.assert_allclose(upstream.block_pose(colour)[0], ours.block_pose(colour)[0], atol=5e-4)
    upstream.close()
    ours.close()


def test_desk_points_match_the_calvin_desk_and_a_second_env_is_refused() -> None:
    in_fresh_process(_desk_points_and_second_env)
