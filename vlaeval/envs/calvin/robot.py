"""The Franka Panda ("longer finger" variant) and its Cartesian controller (spec calvin.md §D.6-§D.7).

The robot is pybullet_data's Panda with CALVIN's extra links (fingertip pads, gripper camera,
TCP at link 15) and low-poly visuals; see ``assets/panda_longer_finger.urdf``.  Control keeps an
internal target pose that relative actions accumulate into (not the measured TCP), exactly as
upstream does, because policies trained on CALVIN data rely on that drift-free integration.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data

from vlaeval.envs.calvin.initial_state import (
    ROBOT_OBS_ARM_JOINTS,
    ROBOT_OBS_GRIPPER_ACTION,
    ROBOT_OBS_GRIPPER_WIDTH,
    ROBOT_OBS_SIZE,
    ROBOT_OBS_TCP_ORN,
    ROBOT_OBS_TCP_POS,
)
from vlaeval.envs.calvin.scene import cached_file

BASE_POSITION = (-0.34, -0.46, 0.24)
PEDESTAL_POSITION = (-0.39, -0.46, 0.12)
ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
FINGER_JOINTS = (9, 11)
LEFT_TIP, RIGHT_TIP = 10, 12
GRIPPER_CAM_LINK = 14
TCP_LINK = 15

#: Scene default joints: the neutral pose of random resets and the IK rest pose (§D.6).
INITIAL_JOINTS = (-1.21779206, 1.03987646, 2.11978261, -2.34205014, -0.87015947, 1.64119353, 0.55344866)
IK_REST_POSE = INITIAL_JOINTS + (0.04, 0.04)
IK_CLIP_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
IK_CLIP_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
IK_LIMIT = 7.0  # the null-space solver is given +-7 rad limits for all 9 DoF

ARM_FORCE = 200.0
ARM_MAX_VELOCITY = 2.0
FINGER_OPEN = 0.04
FINGER_MAX_VELOCITY = 1.0
#: Gripper command -> (finger target, motor force): opening is gentle, closing squeezes (§D.7).
GRIPPER_MOTOR = {1.0: (FINGER_OPEN, 2.0), -1.0: (0.0, 200.0)}

#: Relative action scaling: metres and radians per unit action (§D.7).
POSITION_SCALE = 0.02
ORIENTATION_SCALE = 0.05

_ASSET = Path(__file__).with_name("assets") / "panda_longer_finger.urdf"


def robot_urdf_path() -> str:
    """Path of the robot URDF with its mesh references resolved to the installed pybullet_data.

    pybullet resolves meshes only relative to the URDF's directory, so the shipped template is
    materialised with absolute mesh paths.
    """
    mesh_dir = os.path.join(pybullet_data.getDataPath(), "franka_panda", "meshes")
    return cached_file("panda_longer_finger", _ASSET.read_text().replace("MESH_DIR", mesh_dir))


def binarise_gripper(command: float) -> float:
    """Upstream's wrapper rule: a positive command opens (+1), anything else closes (-1)."""
    return 1.0 if command > 0 else -1.0


class Robot:
    """The Panda in one pybullet client: reset from robot_obs, Cartesian control, state readout."""

    def __init__(self, client: int) -> None:
        self._client = client
        self.body_id = pb.loadURDF(robot_urdf_path(), BASE_POSITION, useFixedBase=True, physicsClientId=client)
        # pybullet places bases by their centre of mass (0.05 above link0's frame), so remember
        # the loaded pose rather than recomputing it.
        self._base_pose = pb.getBasePositionAndOrientation(self.body_id, physicsClientId=client)
        # Visual-only pedestal under the base (body id 1 in upstream's creation order).
        pedestal = pb.createVisualShape(pb.GEOM_CYLINDER, radius=0.13, length=0.24, rgbaColor=(1, 1, 1, 1),
                                        physicsClientId=client)
        self.pedestal_id = pb.createMultiBody(0.0, -1, pedestal, PEDESTAL_POSITION, physicsClientId=client)
        for link in FINGER_JOINTS:
            pb.changeDynamics(
                self.body_id, link, lateralFriction=1.0, spinningFriction=0.1,
                contactStiffness=30000.0, contactDamping=1000.0, physicsClientId=client,
            )
        for link in (LEFT_TIP, RIGHT_TIP):
            pb.changeDynamics(self.body_id, link, lateralFriction=1.0, spinningFriction=0.001, physicsClientId=client)
        gear = pb.createConstraint(
            self.body_id, FINGER_JOINTS[0], self.body_id, FINGER_JOINTS[1], pb.JOINT_GEAR,
            (1, 0, 0), (0, 0, 0), (0, 0, 0), physicsClientId=client,
        )
        pb.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=client)
        #: Last gripper command (+1 open / -1 close), reported in robot_obs[14].
        self.gripper_command = 1.0
        self._target_position = np.zeros(3)
        self._target_euler = np.zeros(3)

    # --- reset -----------------------------------------------------------------------------

    def place_base(self) -> None:
        """Put the fixed base at its spot (the env parks the robot elsewhere between episodes)."""
        pb.resetBasePositionAndOrientation(self.body_id, *self._base_pose, physicsClientId=self._client)

    def reset(self, arm_joints: np.ndarray, gripper_width: float) -> None:
        """Place the arm and fingers (§B.5 step 6) and re-anchor the target pose on the TCP.

        Upstream keeps the previous episode's last gripper command (§B.5 step 7); we restore the
        fresh-env value +1 instead, so that an episode's observations never depend on which
        episode ran before it in the same worker.
        """
        c, body = self._client, self.body_id
        self.gripper_command = 1.0
        finger = gripper_width / 2
        for joint, q in zip(ARM_JOINTS, arm_joints):
            pb.resetJointState(body, joint, float(q), 0.0, physicsClientId=c)
        for joint in FINGER_JOINTS:
            pb.resetJointState(body, joint, finger, 0.0, physicsClientId=c)
        self._command_arm(np.asarray(arm_joints, dtype=np.float64))
        self._command_fingers(finger, 200.0)
        position, orientation = self.tcp_pose()
        self._target_position = position
        self._target_euler = np.array(pb.getEulerFromQuaternion(orientation))

    # --- control ---------------------------------------------------------------------------

    def apply_relative(self, action: np.ndarray) -> None:
        """Accumulate a scaled (not clipped) relative action into the target pose, then track it."""
        self._target_position = self._target_position + POSITION_SCALE * np.asarray(action[:3], dtype=np.float64)
        self._target_euler = self._target_euler + ORIENTATION_SCALE * np.asarray(action[3:6], dtype=np.float64)
        self._track(float(action[6]))

    def apply_absolute(self, action: np.ndarray) -> None:
        """Track a world TCP pose (xyz, Euler xyz) given directly."""
        self._target_position = np.asarray(action[:3], dtype=np.float64).copy()
        self._target_euler = np.asarray(action[3:6], dtype=np.float64).copy()
        self._track(float(action[6]))

    def _track(self, gripper: float) -> None:
        c = self._client
        orientation = pb.getQuaternionFromEuler(self._target_euler.tolist())
        solution = pb.calculateInverseKinematics(
            self.body_id, TCP_LINK, self._target_position.tolist(), orientation,
            lowerLimits=[-IK_LIMIT] * 9, upperLimits=[IK_LIMIT] * 9, jointRanges=[IK_LIMIT] * 9,
            restPoses=list(IK_REST_POSE), physicsClientId=c,
        )
        self._command_arm(np.clip(solution[:7], IK_CLIP_LOWER, IK_CLIP_UPPER))
        self.gripper_command = binarise_gripper(gripper)
        self._command_fingers(*GRIPPER_MOTOR[self.gripper_command])

    def _command_arm(self, targets: np.ndarray) -> None:
        # setJointMotorControlArray has no maxVelocity, which upstream sets, hence one call per joint.
        for joint, q in zip(ARM_JOINTS, targets):
            pb.setJointMotorControl2(
                self.body_id, joint, pb.POSITION_CONTROL, targetPosition=float(q), force=ARM_FORCE,
                maxVelocity=ARM_MAX_VELOCITY, physicsClientId=self._client,
            )

    def _command_fingers(self, target: float, force: float) -> None:
        for joint in FINGER_JOINTS:
            pb.setJointMotorControl2(
                self.body_id, joint, pb.POSITION_CONTROL, targetPosition=target, force=force,
                maxVelocity=FINGER_MAX_VELOCITY, physicsClientId=self._client,
            )

    # --- state -----------------------------------------------------------------------------

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World TCP position and orientation quaternion (x, y, z, w) of link 15."""
        state = pb.getLinkState(self.body_id, TCP_LINK, computeForwardKinematics=True, physicsClientId=self._client)
        return np.array(state[4]), np.array(state[5])

    def camera_link_pose(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """World pose of the gripper camera link (14)."""
        state = pb.getLinkState(self.body_id, GRIPPER_CAM_LINK, computeForwardKinematics=True,
                                physicsClientId=self._client)
        return state[4], state[5]

    def observation(self) -> np.ndarray:
        """robot_obs (§B.1): TCP pose, gripper width, arm joints, last gripper command."""
        joints = pb.getJointStates(self.body_id, ARM_JOINTS + FINGER_JOINTS, physicsClientId=self._client)
        position, orientation = self.tcp_pose()
        obs = np.empty(ROBOT_OBS_SIZE, dtype=np.float64)
        obs[ROBOT_OBS_TCP_POS] = position
        obs[ROBOT_OBS_TCP_ORN] = pb.getEulerFromQuaternion(orientation.tolist())
        obs[ROBOT_OBS_GRIPPER_WIDTH] = joints[7][0] + joints[8][0]
        obs[ROBOT_OBS_ARM_JOINTS] = [j[0] for j in joints[:7]]
        obs[ROBOT_OBS_GRIPPER_ACTION] = self.gripper_command
        return obs

    @property
    def target_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The controller's current target (position, Euler xyz); relative actions add to it."""
        return self._target_position.copy(), self._target_euler.copy()
