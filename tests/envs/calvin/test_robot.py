"""The Panda controller (spec calvin.md §D.6-§D.7): motor velocity limits and robot_obs."""

from __future__ import annotations

import numpy as np
import pybullet as pb
import pytest

from vlaeval.envs.calvin.env import CalvinEnv
from vlaeval.envs.calvin.robot import ARM_JOINTS, ARM_MAX_VELOCITY, FINGER_JOINTS


def test_arm_speed_stays_within_the_motor_velocity_limit() -> None:
    # The per-step motor command cannot carry the 2 rad/s limit; the limit set at reset must hold.
    env = CalvinEnv(cameras=(), action_mode="absolute")
    obs, _ = env.reset(seed=1)
    far = np.array([0.35, -0.05, 0.75, np.pi, 0.0, 2.5, 1.0], dtype=np.float32)
    fastest = 0.0
    for _ in range(10):
        previous = obs["robot_obs"][7:14]
        obs = env.step(far)[0]
        fastest = max(fastest, float(np.abs(obs["robot_obs"][7:14] - previous).max()) * 30)  # 30 Hz
    assert ARM_MAX_VELOCITY * 0.8 < fastest < ARM_MAX_VELOCITY * 1.1  # saturated, not exceeded
    env.close()


@pytest.mark.parametrize("cameras", [(), ("rgb_gripper",)], ids=["no-camera", "gripper-camera"])
def test_robot_obs_layout(cameras: tuple[str, ...]) -> None:
    env = CalvinEnv(cameras=cameras, gripper_size=32)
    env.reset(seed=2)
    obs = env.step(np.array([0.5, -0.5, 0.2, 0.1, 0.0, -0.1, -1.0], dtype=np.float32))[0]["robot_obs"]
    position, orientation = env.tcp_pose()
    states = pb.getJointStates(env.body_ids["robot"], ARM_JOINTS + FINGER_JOINTS, physicsClientId=env.client_id)
    np.testing.assert_array_equal(obs[0:3], position)
    np.testing.assert_array_equal(obs[3:6], pb.getEulerFromQuaternion(orientation.tolist()))
    assert obs[6] == states[7][0] + states[8][0]
    np.testing.assert_array_equal(obs[7:14], [s[0] for s in states[:7]])
    assert obs[14] == -1.0
    env.close()
