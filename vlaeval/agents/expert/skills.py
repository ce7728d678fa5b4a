"""Motion primitives for the scripted CALVIN expert: waypoints, a follower, and skill builders.

Every skill is a short tuple of :class:`Waypoint` s for the TCP (position, yaw, forward tilt,
gripper); the fingers point down, tipped forward only where the cabinet is in the way.  Skills
are built from the live simulator state when the agent (re)plans, so a skill never needs memory:
if one fails (a block slips, a handle is missed) the planner simply builds the next one from what
the world now looks like.

The follower turns a waypoint into *relative* actions in [-1, 1]: it steers the controller's
internal target pose (the one relative actions accumulate into) towards the waypoint at a bounded
speed.  Because it reads that target back every step, the float32 rounding of recorded actions
cannot accumulate into drift, and the emitted actions are exactly what a behaviour-cloning
dataset stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Relative action scaling of the environment (§D.7): metres / radians per unit action.
POSITION_SCALE = 0.02
ORIENTATION_SCALE = 0.05
OPEN, CLOSE = 1.0, -1.0
#: Measured hand orientation within this (rad, per Euler axis) of a waypoint's counts as arrived.
ORIENTATION_TOLERANCE = 0.05


def wrap(angle: float) -> float:
    """Angle mapped to (-pi, pi]."""
    return math.pi - (math.pi - angle) % (2 * math.pi)


def hand_euler(yaw: float, tilt: float) -> tuple[float, float, float]:
    """Euler xyz of a hand pointing down, turned by ``yaw`` about world z, then tipped by
    ``tilt`` about world x so the fingers point forward (+y) and down.

    Tilting is what lets the arm reach the far, high switch: with vertical fingers its wrist
    would be out of reach.  The returned yaw is not wrapped but kept next to ``yaw``: the
    controller's target Euler angles are never wrapped either, and the last wrist joint has a
    limited range, so "turn to yaw + 2 pi" and "turn to yaw" are different commands.
    """
    cz, sz, ct, st = math.cos(yaw), math.sin(yaw), math.cos(tilt), math.sin(tilt)
    down = np.array([[cz, sz, 0.0], [sz, -cz, 0.0], [0.0, 0.0, -1.0]])  # Rz(yaw) @ Rx(pi)
    r = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]]) @ down
    euler_yaw = math.atan2(r[1, 0], r[0, 0])
    return math.atan2(r[2, 1], r[2, 2]), math.asin(max(-1.0, min(1.0, -r[2, 0]))), yaw + wrap(euler_yaw - yaw)


def nearest_symmetric(angle: float, period: float, reference: float) -> float:
    """The angle equivalent to ``angle`` modulo ``period`` that is closest to ``reference``.

    A parallel gripper grasps a box the same way after a half turn (a quarter turn for a square
    footprint), so the expert picks the equivalent yaw that needs the least wrist rotation.
    """
    return reference + ((angle - reference + period / 2) % period) - period / 2


@dataclass(frozen=True)
class Waypoint:
    """One TCP goal and how to get there.

    Attributes:
        position: world TCP goal (x, y, z).
        yaw: TCP yaw goal (world z rotation of the downward-pointing hand).
        tilt: forward tip of the fingers about world x (0 = straight down), see :func:`hand_euler`.
        gripper: +1 open, -1 close, held for the whole waypoint.
        speed: fraction of the largest relative step (0.02 m, 0.05 rad) to use; contact moves go
            slowly so that the arm does not build up force against what it touches.
        tolerance: distance of the *measured* TCP to the goal at which the goal counts as reached.
        hold: steps to keep commanding the goal once reached (the gripper needs time to close).
        timeout: steps after which the waypoint is abandoned even if not reached; pushes against
            a joint limit or a blocked path end this way instead of stalling the plan.
        exact: whether the orientation must be reached too; intermediate points of a transit
            leave the wrist turning on the way.
    """

    position: tuple[float, float, float]
    yaw: float
    gripper: float = OPEN
    speed: float = 1.0
    tolerance: float = 0.01
    hold: int = 0
    timeout: int = 60
    tilt: float = 0.0
    exact: bool = True


class Follower:
    """Plays a tuple of waypoints; :meth:`action` returns None once the last one is done."""

    def __init__(self, waypoints: tuple[Waypoint, ...]) -> None:
        self._waypoints = waypoints
        self._index = 0
        self._steps = 0
        self._held = 0

    @property
    def done(self) -> bool:
        return self._index >= len(self._waypoints)

    def action(self, target_position: np.ndarray, target_euler: np.ndarray, tcp_position: np.ndarray,
               tcp_euler: np.ndarray) -> np.ndarray | None:
        """Relative action towards the current waypoint, advancing past finished ones first.

        ``target_*`` is the controller's accumulated target pose and ``tcp_*`` the measured TCP;
        a waypoint is reached when the target equals the goal and the measured TCP is close to
        it, so the arm has really arrived, not just its setpoint.
        """
        while not self.done:
            waypoint = self._waypoints[self._index]
            goal = np.asarray(waypoint.position, dtype=np.float64)
            euler = hand_euler(waypoint.yaw, waypoint.tilt)
            arrived = (
                np.linalg.norm(goal - target_position) < 1e-4
                and np.linalg.norm(goal - tcp_position) < waypoint.tolerance
                and (
                    not waypoint.exact
                    or (
                        float(np.max(np.abs(_rotation_to(euler, target_euler)))) < 1e-3
                        and _angle_error(euler, tcp_euler) < ORIENTATION_TOLERANCE
                    )
                )
            )
            if arrived:
                self._held += 1
            if self._held > waypoint.hold or self._steps >= waypoint.timeout:
                self._index, self._steps, self._held = self._index + 1, 0, 0
                continue
            self._steps += 1
            return _relative_action(goal, euler, waypoint, target_position, target_euler)
        return None


def _angle_error(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    """Largest per-axis difference of two Euler triples, modulo a full turn."""
    return max(abs(wrap(x - y)) for x, y in zip(a, b))


def _rotation_to(euler: tuple[float, float, float], target_euler: np.ndarray) -> np.ndarray:
    """Euler increments from the controller's target to ``euler``: roll and pitch the short
    way, yaw literally (see :func:`hand_euler`)."""
    return np.array((wrap(euler[0] - target_euler[0]), wrap(euler[1] - target_euler[1]), euler[2] - target_euler[2]))


def _relative_action(goal: np.ndarray, euler: tuple[float, float, float], waypoint: Waypoint,
                     target_position: np.ndarray, target_euler: np.ndarray) -> np.ndarray:
    """Bounded step of the target pose towards the goal, expressed in relative action units."""
    delta = goal - target_position
    distance = float(np.linalg.norm(delta))
    max_step = waypoint.speed * POSITION_SCALE
    if distance > max_step:
        delta = delta * (max_step / distance)
    rotation = _rotation_to(euler, target_euler) / ORIENTATION_SCALE
    action = np.empty(7)
    action[:3] = delta / POSITION_SCALE
    action[3:6] = np.clip(rotation, -waypoint.speed, waypoint.speed)
    action[6] = waypoint.gripper
    return np.clip(action, -1.0, 1.0)


# --- skill builders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """Speeds and clearances shared by the skills (one place to tune the expert's style).

    Attributes:
        transit_speed: speed of free-space moves.
        contact_speed: speed of moves that touch something (descend onto a block, push).
        approach_height: height above a grasp/press point from which the final descent starts.
        grasp_hold: steps to wait for the fingers to close or open.
    """

    transit_speed: float = 1.0
    contact_speed: float = 0.4
    approach_height: float = 0.08
    grasp_hold: int = 8


def _point(p: np.ndarray | tuple[float, ...]) -> tuple[float, float, float]:
    return tuple(float(v) for v in p)  # type: ignore[return-value]


#: Free-space moves stay in front of the cabinet (y below this) and only then move in: the door
#: handle and the cabinet front stand between the table and the shelf.
FRONT_Y = -0.03


def transit(start: np.ndarray, goal: np.ndarray, yaw: float, gripper: float, clearance: float,
            motion: Motion, tilt: float = 0.0, leave_open: bool = False) -> tuple[Waypoint, ...]:
    """Up to ``clearance``, across, and down to ``goal``: the collision-free way between any two
    points above the desk, as long as ``clearance`` is above everything in between.  Moves into
    or out of the cabinet go straight in y, in front of it.

    ``leave_open`` keeps the fingers open while rising from the start: a subtask can succeed
    the moment a block is released, with the open fingers still around it, and closing them
    there would pick it up again.
    """
    up = max(float(start[2]), clearance, float(goal[2]))
    points = [(start[0], start[1], up)]
    if start[1] > FRONT_Y:
        points.append((start[0], FRONT_Y, up))
    if goal[1] > FRONT_Y:
        points.append((goal[0], FRONT_Y, up))
    points += [(goal[0], goal[1], up), tuple(goal)]
    return tuple(
        Waypoint(_point(p), yaw, OPEN if leave_open and i == 0 else gripper, motion.transit_speed,
                 tolerance=0.02, timeout=80, tilt=tilt, exact=i == len(points) - 1)
        for i, p in enumerate(points)
    )


def grasp(start: np.ndarray, point: np.ndarray, yaw: float, clearance: float, motion: Motion,
          tilt: float = 0.0) -> tuple[Waypoint, ...]:
    """Open above ``point``, descend slowly, close: used for blocks wherever they rest."""
    above = point + (0.0, 0.0, motion.approach_height)
    return transit(start, above, yaw, OPEN, clearance, motion, tilt) + (
        Waypoint(_point(point), yaw, OPEN, motion.contact_speed, tolerance=0.012, timeout=60, tilt=tilt),
        Waypoint(_point(point), yaw, CLOSE, motion.contact_speed, tolerance=0.02, hold=motion.grasp_hold,
                 timeout=30, tilt=tilt),
    )


def move_held(point: np.ndarray, yaw: float, motion: Motion, hold: int = 2, speed: float | None = None,
              tilt: float = 0.0) -> tuple[Waypoint, ...]:
    """A move with the gripper closed (lifting, turning or lowering a held block), slow unless
    told otherwise."""
    return (Waypoint(_point(point), yaw, CLOSE, speed or motion.contact_speed, tolerance=0.008, hold=hold,
                     timeout=60, tilt=tilt),)


def release(point: np.ndarray, yaw: float, motion: Motion, tilt: float = 0.0) -> tuple[Waypoint, ...]:
    """Open the fingers where they are and back off straight up."""
    above = point + (0.0, 0.0, motion.approach_height)
    return (
        Waypoint(_point(point), yaw, OPEN, motion.contact_speed, tolerance=0.02, hold=motion.grasp_hold, timeout=30,
                 tilt=tilt),
        Waypoint(_point(above), yaw, OPEN, motion.contact_speed, tolerance=0.02, timeout=40, tilt=tilt),
    )


def place(start: np.ndarray, point: np.ndarray, yaw: float, clearance: float, motion: Motion,
          tilt: float = 0.0) -> tuple[Waypoint, ...]:
    """Carry the held block above ``point``, lower it slowly, release, and back off upwards."""
    above = point + (0.0, 0.0, motion.approach_height)
    return (
        transit(start, above, yaw, CLOSE, clearance, motion, tilt)
        + move_held(point, yaw, motion, hold=0, tilt=tilt)
        + release(point, yaw, motion, tilt)
    )


def push(start: np.ndarray, begin: np.ndarray, end: np.ndarray, yaw: float, clearance: float,
         motion: Motion, *, tilt: float = 0.0, approach: np.ndarray | None = None, speed: float | None = None
         ) -> tuple[Waypoint, ...]:
    """Closed fingers to ``begin`` (coming in along ``approach``, from above by default), then a
    straight stroke to ``end``.

    Used for blocks, the sliding door, the drawer and the switch: anything that moves by being
    pushed along a line.
    """
    approach = np.array((0.0, 0.0, motion.approach_height)) if approach is None else approach
    return transit(start, begin + approach, yaw, CLOSE, clearance, motion, tilt, leave_open=True) + (
        Waypoint(_point(begin), yaw, CLOSE, motion.contact_speed, tolerance=0.015, timeout=40, tilt=tilt),
        Waypoint(_point(end), yaw, CLOSE, speed or motion.contact_speed, tolerance=0.01, timeout=90, tilt=tilt),
    )


def press(start: np.ndarray, point: np.ndarray, depth: float, yaw: float, clearance: float,
          motion: Motion) -> tuple[Waypoint, ...]:
    """Press down on ``point`` by ``depth`` and come back up (the LED button)."""
    above = point + (0.0, 0.0, motion.approach_height)
    return transit(start, above, yaw, CLOSE, clearance, motion, leave_open=True) + (
        Waypoint(_point(point - (0.0, 0.0, depth)), yaw, CLOSE, motion.contact_speed, tolerance=0.004, hold=2,
                 timeout=40),
        Waypoint(_point(above), yaw, CLOSE, motion.transit_speed, tolerance=0.02, timeout=40),
    )
