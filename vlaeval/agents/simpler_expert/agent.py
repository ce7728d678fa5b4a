"""Scripted expert for the ``simpler`` suite (privileged: reads the simulator state).

Each task is a short list of waypoints (TCP position, gripper yaw, gripper command) tracked in
closed loop with the suite's own action convention (metres, axis-angle, +1 open), so the expert
also exercises the action conversion.  After the last waypoint it holds still: SimplerEnv reads
success at the last step, so the final state is what counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
from scipy.spatial.transform import Rotation

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.conventions import AgentSpec
from vlaeval.envs.simpler.catalogue import HANDLE_X, HANDLE_Z

OPEN, CLOSE = 1.0, -1.0
SAFE_Z = 0.26


@dataclass
class Waypoint:
    target: Callable[[], np.ndarray] | np.ndarray
    yaw: float = 0.0
    gripper: float = OPEN
    tol: float = 0.012
    max_steps: int = 14
    min_steps: int = 0


class SimplerExpert(Agent):
    """Waypoint expert for every ``simpler`` task (base setting success >= 90 %, see README)."""

    spec: ClassVar[AgentSpec] = AgentSpec(
        action_type="relative_ee", rotation="axis_angle", gripper="open_positive",
        observation_keys=(), privileged=True,
    )

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)
        self.env: Any = None
        self.plan: list[Waypoint] | None = None

    def bind(self, context: AgentContext) -> None:
        super().bind(context)
        self.env = context.env

    def reset(self) -> None:
        self.plan = None
        self.index = 0
        self.count = 0
        self.yaw = 0.0
        self.gripper = OPEN

    # ---- state helpers -----------------------------------------------------------------------

    @property
    def scene(self):
        return self.env.scene_env

    def _tcp(self) -> tuple[np.ndarray, Rotation]:
        pose = self.scene.agent.tcp.pose
        p = pose.p[0].cpu().numpy()
        w, x, y, z = pose.q[0].cpu().numpy()
        return p, Rotation.from_quat([x, y, z, w])

    def _pos(self, name: str) -> np.ndarray:
        s = self.scene
        actor = s.actor(name)
        return actor.pose.p[0].cpu().numpy().astype(np.float64)

    def _yaw_of(self, name: str) -> float:
        s = self.scene
        actor = s.actor(name)
        w, x, y, z = actor.pose.q[0].cpu().numpy()
        return float(Rotation.from_quat([x, y, z, w]).as_euler("xyz")[2])

    # ---- acting ------------------------------------------------------------------------------

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        if self.plan is None:
            self.plan = self._make_plan()
            self.index = self.count = 0
        p, rot = self._tcp()
        if self.index >= len(self.plan):  # done: hold still
            return np.array([0, 0, 0, 0, 0, 0, self.gripper], dtype=np.float32)
        wp = self.plan[self.index]
        target = np.asarray(wp.target() if callable(wp.target) else wp.target, dtype=np.float64)
        err = target - p
        desired = Rotation.from_euler("z", wp.yaw) * Rotation.from_quat([1.0, 0.0, 0.0, 0.0])
        rotvec = (desired * rot.inv()).as_rotvec()
        self.count += 1
        if (np.linalg.norm(err) < wp.tol and np.linalg.norm(rotvec) < 0.08 and self.count >= wp.min_steps) \
                or self.count >= wp.max_steps:
            self.index += 1
            self.count = 0
        self.gripper = wp.gripper
        delta = np.clip(self.gain * err, -0.1, 0.1)
        return np.concatenate([delta, np.clip(rotvec, -0.5, 0.5), [wp.gripper]]).astype(np.float32)

    # ---- plans -------------------------------------------------------------------------------

    def _make_plan(self) -> list[Waypoint]:
        task = self.env.task
        layout = self.scene.layout
        if task == "pick_coke_can":
            orient = layout["orientation"]
            z = 0.085 if orient == "upright" else 0.028
            yaw = math.pi / 2 if orient == "horizontal" else 0.0
            return self._pick("coke_can", z, yaw) + [
                Waypoint(lambda: self._pos_above("coke_can", 0.0, z + 0.12), yaw, CLOSE, max_steps=60, min_steps=60)]
        if task == "move_near":
            src = layout["objects"][layout["source"]]
            tgt = layout["objects"][layout["target"]]
            z = _grasp_z(src)
            tp = self._pos(tgt)
            sp = self._pos(src)
            d = (sp[:2] - tp[:2])
            goal = tp[:2] + np.array([-0.10, 0.0]) if abs(d[0]) < 0.05 else tp[:2] + 0.10 * d / np.linalg.norm(d)
            return self._pick(src, z, 0.0) + self._place(goal, z + 0.008, 0.0)
        if task in ("open_drawer", "place_apple_in_closed_drawer"):
            plan = self._open_drawer()
            if task == "place_apple_in_closed_drawer":
                plan += self._pick("apple", 0.03, 0.0)
                cab = self.scene.cabinet.pose.p[0].cpu().numpy()
                plan += self._place(np.array([cab[0] - 0.28, cab[1]]), cab[2] + 0.19, 0.0)
            return plan
        if task == "close_drawer":
            cab = self.scene.cabinet.pose.p[0].cpu().numpy()
            y = cab[1]
            return [
                Waypoint(np.array([cab[0] - 0.50, y, 0.30]), 0.0, CLOSE, tol=0.03),
                Waypoint(np.array([cab[0] - 0.50, y, cab[2] + 0.135]), 0.0, CLOSE, tol=0.015),
                Waypoint(np.array([cab[0] - 0.14, y, cab[2] + 0.135]), 0.0, CLOSE, tol=0.01, max_steps=25),
                Waypoint(np.array([cab[0] - 0.30, y, 0.30]), 0.0, CLOSE, tol=0.02),
            ]
        # bridge tasks
        src, tgt = layout["source"], layout["target"]
        yaw = _wrap_half_pi(self._yaw_of(src)) if src != "green_cube" else 0.0
        goal = self._pos(tgt)[:2]
        release = {"towel": 0.035, "plate": 0.045, "yellow_cube": 0.072, "basket": 0.11}[tgt]
        place_yaw = 0.0 if tgt == "basket" else yaw  # the basket is longer along x
        return self._pick(src, _grasp_z(src), yaw) + self._place(goal, release, place_yaw)

    def _pos_above(self, name: str, dz: float, z: float | None = None) -> np.ndarray:
        p = self._pos(name)
        return np.array([p[0], p[1], z if z is not None else p[2] + dz])

    def _pick(self, name: str, z: float, yaw: float) -> list[Waypoint]:
        return [
            Waypoint(lambda: self._pos_above(name, 0, SAFE_Z), yaw, OPEN, tol=0.02, max_steps=20),
            Waypoint(lambda: self._pos_above(name, 0, z + 0.06), yaw, OPEN, tol=0.01),
            Waypoint(lambda: self._pos_above(name, 0, z), yaw, OPEN, tol=0.006, max_steps=10),
            Waypoint(lambda: self._pos_above(name, 0, z), yaw, CLOSE, max_steps=3, min_steps=3, tol=0.0),
        ]

    def _place(self, goal_xy: np.ndarray, release_z: float, yaw: float) -> list[Waypoint]:
        gx, gy = float(goal_xy[0]), float(goal_xy[1])
        return [
            Waypoint(lambda: np.array([self._tcp()[0][0], self._tcp()[0][1], SAFE_Z]), yaw, CLOSE, tol=0.02, max_steps=10),
            Waypoint(np.array([gx, gy, SAFE_Z]), yaw, CLOSE, tol=0.015, max_steps=20),
            Waypoint(np.array([gx, gy, release_z]), yaw, CLOSE, tol=0.008, max_steps=12),
            Waypoint(np.array([gx, gy, release_z]), yaw, OPEN, tol=0.0, max_steps=3, min_steps=3),
            Waypoint(np.array([gx, gy, SAFE_Z]), yaw, OPEN, tol=0.02, max_steps=10),
        ]

    def _open_drawer(self) -> list[Waypoint]:
        cab = self.scene.cabinet.pose.p[0].cpu().numpy()
        gap_x = cab[0] + (HANDLE_X + 0.0075 + (-0.16)) / 2  # between the bar and the front panel
        y = cab[1]
        z = cab[2] + HANDLE_Z - 0.004
        return [
            Waypoint(np.array([gap_x, y, 0.30]), 0.0, CLOSE, tol=0.01, max_steps=20),
            Waypoint(np.array([gap_x, y, z]), 0.0, CLOSE, tol=0.006, max_steps=14),
            Waypoint(np.array([gap_x - 0.22, y, z]), 0.0, CLOSE, tol=0.01, max_steps=20),
            Waypoint(np.array([gap_x - 0.22, y, 0.30]), 0.0, OPEN, tol=0.02, max_steps=10),
        ]


def _grasp_z(name: str) -> float:
    return {"coke_can": 0.085, "pepsi_can": 0.085, "sevenup_can": 0.085, "apple": 0.03, "orange": 0.032,
            "sponge": 0.025, "green_cube": 0.02, "spoon": 0.01, "carrot": 0.016, "eggplant": 0.022}[name]


def _wrap_half_pi(yaw: float) -> float:
    """Equivalent gripper yaw in [-pi/2, pi/2) (the gripper is symmetric under a half turn)."""
    return (yaw + math.pi / 2) % math.pi - math.pi / 2
