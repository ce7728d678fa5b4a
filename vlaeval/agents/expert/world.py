"""Read-only view of the CALVIN simulator for the scripted expert.

Everything the planners need (block poses, what the gripper holds, where the handles are) comes
from the environment's privileged API; the few facts it does not expose (finger joints) are read
from its pybullet client with read-only queries.  Planners only ever see this view, so the
physical state is the single source of truth at every re-plan.

Two environments offer that API: the ``calvin`` suite's ``CalvinEnv`` answers from its own
simulator, the ``calvin-upstream`` suite's ``CalvinUpstreamEnv`` from upstream calvin_env's info
dict of the last step (block poses and contacts, desk joints, lights), its controller target and
its desk's link frames; the finger joints then come from upstream's pybullet client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlaeval.envs.calvin.bullet import pb
from vlaeval.envs.calvin.predicates import DESK_BASE, DESK_DRAWER, DESK_PLANK
from vlaeval.envs.calvin.tasks import COLOURS

#: Finger joints of the Panda (their sum is the gripper width of robot_obs).
FINGER_JOINTS = (9, 11)
#: A closed gripper narrower than this holds nothing; one wider than the block between the
#: fingers by more than GRIP_SLACK is opening, i.e. letting go.
EMPTY_WIDTH = 0.01
GRIP_SLACK = 0.008
TABLE_TOP_Z = 0.44
SHELF_TOP_Z = 0.4416
BLOCK_HALF_HEIGHT = 0.02


def yaw_of(quaternion: Any) -> float:
    """World yaw (z rotation) of an orientation quaternion (x, y, z, w)."""
    x, y, z, w = quaternion
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def rotation_matrix(quaternion: Any) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w): its columns are the local axes in world."""
    x, y, z, w = quaternion
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def z_axis(quaternion: Any) -> np.ndarray:
    """World direction of the local z axis of an orientation quaternion (x, y, z, w)."""
    return rotation_matrix(quaternion)[:, 2]


@dataclass(frozen=True)
class Block:
    """A block as the planners see it.

    Attributes:
        colour: ``red``, ``blue`` or ``pink``.
        position: world centre.
        yaw: rotation about world z (blocks stay flat on the desk).
        size: full box size (x along the long side, y, z).
        touches: names of what the block touches: ``robot``, ``table``, ``shelf``, ``drawer``,
            ``desk`` (any other desk part), ``ground`` and block colours.
        tilt: rotation about world x of its top face (non-zero when held by a tipped hand).
    """

    colour: str
    position: np.ndarray
    yaw: float
    size: tuple[float, float, float]
    touches: frozenset[str]
    tilt: float = 0.0

    @property
    def grasp_period(self) -> float:
        """Yaw period of equivalent grasps: a half turn, a quarter turn for a square block."""
        return math.pi / 2 if math.isclose(self.size[0], self.size[1]) else math.pi

    def half_extent(self, direction: float = 0.0) -> float:
        """Half the footprint of the (yawed) block along the horizontal direction at angle
        ``direction`` (0 = world x)."""
        relative = direction - self.yaw
        return self.size[0] / 2 * abs(math.cos(relative)) + self.size[1] / 2 * abs(math.sin(relative))

    @property
    def resting(self) -> bool:
        """Whether the block stands on a desk surface."""
        return bool(self.touches & {"table", "shelf", "drawer"})


class World:
    """The unwrapped CALVIN env (``CalvinEnv`` or ``CalvinUpstreamEnv``) seen through read-only queries."""

    def __init__(self, env: Any) -> None:
        self.env = env
        ids = env.body_ids
        self._client = env.client_id
        self._robot = ids["robot"]
        self._desk = ids["desk"]
        self._names = {ids["robot"]: "robot", ids["ground"]: "ground", **{ids[c]: c for c in COLOURS}}

    # --- robot -------------------------------------------------------------------------------

    def tcp(self) -> np.ndarray:
        """Measured TCP position."""
        return self.env.tcp_pose()[0]

    def tcp_euler(self) -> np.ndarray:
        """Measured TCP orientation as Euler xyz (the convention of robot_obs)."""
        return np.array(pb.getEulerFromQuaternion(self.env.tcp_pose()[1].tolist()))

    def hand_tilt(self) -> float:
        """Forward tip of the fingers about world x (the ``tilt`` of the skills' waypoints)."""
        fingers = z_axis(self.env.tcp_pose()[1])
        return math.atan2(fingers[1], -fingers[2])

    def target(self) -> tuple[np.ndarray, np.ndarray]:
        """The controller's target position and Euler angles (what relative actions move)."""
        return self.env.tcp_target()

    def gripper_width(self) -> float:
        states = pb.getJointStates(self._robot, FINGER_JOINTS, physicsClientId=self._client)
        return float(states[0][0] + states[1][0])

    def held(self) -> Block | None:
        """The block between the closed fingers, if any."""
        width = self.gripper_width()
        if width < EMPTY_WIDTH:
            return None
        closing = rotation_matrix(self.env.tcp_pose()[1])[:, 1]  # the fingers move along hand y
        across = math.atan2(closing[1], closing[0])
        touched = self.env.snapshot().robot_bodies
        for colour in COLOURS:
            if self.env.body_ids[colour] in touched:
                block = self.block(colour)
                near = np.linalg.norm(block.position - self.tcp()) < 0.05
                if near and width < 2 * block.half_extent(across) + GRIP_SLACK:
                    return block
        return None

    # --- blocks ------------------------------------------------------------------------------

    def block(self, colour: str) -> Block:
        position, orientation = self.env.block_pose(colour)
        contacts = self.env.snapshot().block(colour).contacts
        up = z_axis(orientation)
        return Block(colour, position, yaw_of(orientation), tuple(self.env.block_size(colour)),
                     frozenset(self._name(body, link) for body, link in contacts), math.atan2(-up[1], up[2]))

    def blocks(self) -> list[Block]:
        return [self.block(c) for c in COLOURS]

    def start_yaw(self, colour: str) -> float:
        """Yaw of a block when the current subtask started (what rotations are judged against)."""
        return yaw_of(self.env.start_snapshot().block(colour).orientation)

    def _name(self, body: int, link: int) -> str:
        if body == self._desk:
            return {DESK_BASE: "table", DESK_PLANK: "shelf", DESK_DRAWER: "drawer"}.get(link, "desk")
        return self._names.get(body, "other")

    # --- desk --------------------------------------------------------------------------------

    def point(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of a named desk point (see ``CalvinEnv.link_world_pose``)."""
        return self.env.link_world_pose(name)

    def joint(self, name: str) -> float:
        return self.env.joint_state(name)

    def lights(self) -> dict[str, int]:
        return self.env.light_states()
