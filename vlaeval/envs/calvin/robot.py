"""The Franka Panda ("longer finger" variant) and its Cartesian controller (spec calvin.md §D.6-§D.7).

The robot is pybullet_data's Panda with CALVIN's extra links (fingertip pads, gripper camera,
TCP at link 15) and low-poly visuals; see ``assets/panda_longer_finger.urdf``.  Control keeps an
internal target pose that relative actions accumulate into (not the measured TCP), exactly as
upstream does, because policies trained on CALVIN data rely on that drift-free integration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pybullet_data

from vlaeval.envs.calvin.bullet import pb
from vlaeval.envs.calvin.scene import cached_file

BASE_POSITION = (-0.34, -0.46, 0.24)
PEDESTAL_POSITION = (-0.39, -0.46, 0.12)
ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
FINGER_JOINTS = (9, 11)
MOTOR_JOINTS = ARM_JOINTS + FINGER_JOINTS
LEFT_TIP, RIGHT_TIP = 10, 12
GRIPPER_CAM_LINK = 14
TCP_LINK = 15

#: Scene default joints: the neutral pose of random resets and the IK rest pose (§D.6).
INITIAL_JOINTS = (-1.21779206, 1.03987646, 2.11978261, -2.34205014, -0.87015947, 1.64119353, 0.55344866)
IK_REST_POSE = INITIAL_JOINTS + (0.04, 0.04)
IK_CLIP_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
IK_CLIP_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
IK_LIMIT = 7.0  # the null-space solver is given +-7 rad limits for all 9 DoF
_IK_ARGUMENTS = dict(lowerLimits=[-IK_LIMIT] * 9, upperLimits=[IK_LIMIT] * 9, jointRanges=[IK_LIMIT] * 9,
                     restPoses=list(IK_REST_POSE))

ARM_FORCE = 200.0
ARM_MAX_VELOCITY = 2.0
FINGER_OPEN = 0.04
FINGER_MAX_VELOCITY = 1.0
#: Finger motor force while a reset holds the fingers at their placed width.
RESET_FINGER_FORCE = 200.0
_ARM_FORCES = (ARM_FORCE,) * len(ARM_JOINTS)
_MAX_VELOCITIES = (ARM_MAX_VELOCITY,) * len(ARM_JOINTS) + (FINGER_MAX_VELOCITY,) * len(FINGER_JOINTS)
#: Gripper command -> (finger target, motor force): opening is gentle, closing squeezes (§D.7).
GRIPPER_MOTOR = {1.0: (FINGER_OPEN, 2.0), -1.0: (0.0, 200.0)}
#: Gripper command -> (finger targets, forces of all 9 motors), built once: the per-step command
#: then only clips the IK solution.
_GRIPPER_COMMAND = {
    command: ((finger,) * len(FINGER_JOINTS), _ARM_FORCES + (force,) * len(FINGER_JOINTS))
    for command, (finger, force) in GRIPPER_MOTOR.items()
}

#: Relative action scaling: metres and radians per unit action (§D.7).
POSITION_SCALE = 0.02
ORIENTATION_SCALE = 0.05

#: A world pose: position (x, y, z) and quaternion (x, y, z, w).
Pose = tuple[tuple[float, float, float], tuple[float, float, float, float]]

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


def load_panda(client: int) -> int:
    """Load the Panda's body (links, joints, visuals) at its base position into a client; returns its id."""
    return pb.loadURDF(robot_urdf_path(), BASE_POSITION, useFixedBase=True, physicsClientId=client)


class Robot:
    """The Panda in one pybullet client: reset from robot_obs, Cartesian control, state readout."""

    def __init__(self, client: int) -> None:
        self._client = client
        self.body_id = load_panda(client)
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
        # The target pose as plain floats: it is updated every step, where numpy's per-call
        # overhead on 3-vectors costs more than the arithmetic (the values are the same).
        self._target_position = [0.0, 0.0, 0.0]
        self._target_euler = [0.0, 0.0, 0.0]

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
        # The full per-joint command, velocity limits included; steps then only change targets
        # and forces (see _command).
        targets = [float(q) for q in arm_joints] + [finger] * len(FINGER_JOINTS)
        forces = _ARM_FORCES + (RESET_FINGER_FORCE,) * len(FINGER_JOINTS)
        for joint, q, force, velocity in zip(MOTOR_JOINTS, targets, forces, _MAX_VELOCITIES):
            pb.setJointMotorControl2(body, joint, pb.POSITION_CONTROL, targetPosition=q, force=force,
                                     maxVelocity=velocity, physicsClientId=c)
        position, orientation = self.tcp_pose()
        self._target_position = position.tolist()
        self._target_euler = list(pb.getEulerFromQuaternion(orientation))

    # --- control ---------------------------------------------------------------------------

    def apply_relative(self, action: Sequence[float]) -> None:
        """Accumulate a scaled (not clipped) relative action into the target pose, then track it.

        ``action`` holds the 7 values as Python floats (the env converts once per step; numpy's
        per-call overhead on 3-vectors costs more than this arithmetic).
        """
        x, y, z, roll, pitch, yaw, gripper = action
        px, py, pz = self._target_position
        ex, ey, ez = self._target_euler
        self._target_position = [px + POSITION_SCALE * x, py + POSITION_SCALE * y, pz + POSITION_SCALE * z]
        self._target_euler = [ex + ORIENTATION_SCALE * roll, ey + ORIENTATION_SCALE * pitch,
                              ez + ORIENTATION_SCALE * yaw]
        self._track(gripper)

    def apply_absolute(self, action: Sequence[float]) -> None:
        """Track a world TCP pose (xyz, Euler xyz) given directly, as 7 Python floats."""
        values = list(action)
        self._target_position, self._target_euler = values[:3], values[3:6]
        self._track(values[6])

    def _track(self, gripper: float) -> None:
        orientation = pb.getQuaternionFromEuler(self._target_euler)
        solution = pb.calculateInverseKinematics(self.body_id, TCP_LINK, self._target_position, orientation,
                                                 **_IK_ARGUMENTS, physicsClientId=self._client)
        self.gripper_command = binarise_gripper(gripper)
        # The IK solution has 9 entries (all DoF); the first 7 are clipped to the arm's limits
        # (the same values as min(max(q, lo), hi), without two builtin calls per joint), the
        # finger entries are replaced by the gripper's target.
        targets = [lo if q < lo else hi if q > hi else q
                   for q, lo, hi in zip(solution, IK_CLIP_LOWER, IK_CLIP_UPPER)]
        finger, forces = _GRIPPER_COMMAND[self.gripper_command]
        targets += finger
        self._command(targets, forces)

    def _command(self, targets: list[float], forces: tuple[float, ...]) -> None:
        """Targets and forces of all 9 motors in one call.

        setJointMotorControlArray cannot set a velocity limit, but pybullet keeps each motor's
        limit until a command sets it again, so the limits :meth:`reset` sets still hold: this is
        the same motor state as upstream's per-joint calls, at one call instead of nine.
        """
        pb.setJointMotorControlArray(self.body_id, MOTOR_JOINTS, pb.POSITION_CONTROL, targetPositions=targets,
                                     forces=forces, physicsClientId=self._client)

    # --- state -----------------------------------------------------------------------------

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World TCP position and orientation quaternion (x, y, z, w) of link 15."""
        state = pb.getLinkState(self.body_id, TCP_LINK, computeForwardKinematics=True, physicsClientId=self._client)
        return np.array(state[4]), np.array(state[5])

    def observation(self, camera_pose: bool = False) -> tuple[np.ndarray, Pose | None]:
        """robot_obs (§B.1: TCP pose, gripper width, arm joints, last gripper command) and, if
        ``camera_pose``, the world pose of the gripper camera link (14), both from a single
        forward-kinematics pass."""
        c = self._client
        joints = pb.getJointStates(self.body_id, MOTOR_JOINTS, physicsClientId=c)
        if camera_pose:
            tcp, camera = pb.getLinkStates(self.body_id, (TCP_LINK, GRIPPER_CAM_LINK), computeForwardKinematics=True,
                                           physicsClientId=c)
        else:  # the single-link query is cheaper than getLinkStates with one link
            tcp = pb.getLinkState(self.body_id, TCP_LINK, computeForwardKinematics=True, physicsClientId=c)
        # In initial_state.ROBOT_OBS_LAYOUT order, built in one numpy call (this runs every step).
        values = [*tcp[4], *pb.getEulerFromQuaternion(tcp[5]), joints[7][0] + joints[8][0]]
        values += [j[0] for j in joints[:7]]
        values.append(self.gripper_command)
        obs = np.array(values, dtype=np.float64)
        return obs, ((camera[4], camera[5]) if camera_pose else None)

    @property
    def target_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The controller's current target (position, Euler xyz); relative actions add to it."""
        return np.array(self._target_position), np.array(self._target_euler)
