"""CALVIN's 34 success predicates (spec calvin.md §C.2) as pure functions of two snapshots.

A predicate compares the snapshot S taken when the subtask started with the snapshot E after the
current step.  Keeping them free of pybullet lets the tests pin every threshold with hand-built
snapshots, and lets the scripted expert and offline analyses reuse them on recorded states.

Within a predicate, conditions on poses, joints and the start snapshot come before those on the
end snapshot's contacts and velocities: the env reads those from the simulator only when asked
(:mod:`vlaeval.envs.calvin.live_snapshot`), and the order of a conjunction never changes its verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from vlaeval.envs.calvin.tasks import COLOURS, TASKS

#: Desk link indices; every scene builds the desk so that these hold (§C.1).
DESK_BASE = -1
DESK_BUTTON = 0
DESK_SWITCH = 1
DESK_SLIDE = 2
DESK_DRAWER = 3
DESK_LED = 4
DESK_LIGHTBULB = 5
DESK_PLANK = 6

#: Contact (other body id, other link index), as pybullet reports it.
Contact = tuple[int, int]


@dataclass(frozen=True)
class BlockState:
    """What the predicates read about one block at one instant (§C.1)."""

    body_id: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]  # quaternion x, y, z, w
    linear_velocity: tuple[float, float, float]
    angular_velocity: tuple[float, float, float]
    contacts: frozenset[Contact]

    @property
    def bodies(self) -> frozenset[int]:
        """Ids of the bodies this block touches."""
        return frozenset(body for body, _ in self.contacts)


@dataclass(frozen=True)
class Snapshot:
    """The §C.1 info snapshot: exactly what the success predicates may depend on.

    Attributes:
        robot_id: body id of the robot (R).
        desk_id: body id of the desk (T); its link indices are the ``DESK_*`` constants.
        robot_contacts: (other body, other link) of every contact point of the robot.
        blocks: colour -> block state, for the three colours of :data:`COLOURS`.
        slide, drawer, button, switch: desk joint positions.
        lightbulb, led: logical light states (0 or 1).
    """

    robot_id: int
    desk_id: int
    robot_contacts: frozenset[Contact]
    blocks: tuple[tuple[str, BlockState], ...]
    slide: float
    drawer: float
    button: float
    switch: float
    lightbulb: int
    led: int

    def block(self, colour: str) -> BlockState:
        """State of the block of that colour."""
        for name, state in self.blocks:
            if name == colour:
                return state
        raise KeyError(colour)

    @property
    def block_ids(self) -> frozenset[int]:
        """The body ids of all blocks (the spec's ``Blocks``)."""
        return frozenset(state.body_id for _, state in self.blocks)

    @property
    def robot_bodies(self) -> frozenset[int]:
        """Ids of the bodies the robot touches."""
        return frozenset(body for body, _ in self.robot_contacts)


Predicate = Callable[[Snapshot, Snapshot], bool]

# Thresholds of §C.2 (upstream defaults).
ROTATION_MIN_DEG = 60.0
ROTATION_MAX_TILT_DEG = 30.0
ROTATION_MAX_SHIFT = 0.10
PUSH_MIN_SHIFT = 0.10
SLIDER_MIN_TRAVEL = 0.15
DRAWER_MIN_TRAVEL = 0.12
LIFT_HEIGHT = {"table": 0.05, "slider": 0.03, "drawer": 0.05}
LIFT_SURFACE_LINK = {"table": DESK_BASE, "slider": DESK_PLANK, "drawer": DESK_DRAWER}
PLACE_SURFACE_LINK = {"slider": DESK_PLANK, "drawer": DESK_DRAWER}
STILL_MAX_VELOCITY = 1.0


#: Half-width (degrees) of the band around each decision boundary of the rotation test in which
#: the fast pure-Python angles defer to the reference numpy ones.  The two differ by a few ulps
#: (numpy's matmul runs in BLAS, with fused multiply-adds), under 1e-12 degrees wherever the
#: fast angles decide, so outside the band both give the same verdict.
_EXACT_BAND_DEG = 1e-6


def _rotation_rows(q: tuple[float, ...]) -> tuple[tuple[float, float, float], ...]:
    """Rows of R(q) for a quaternion (x, y, z, w), as Python floats."""
    x, y, z, w = q
    return (
        (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
        (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
        (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)),
    )


def _dot(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _euler_deg(r00: float, r10: float, r20: float, r21: float, r22: float) -> tuple[float, float, float]:
    """Extrinsic x-y-z Euler angles (degrees) of a rotation matrix, from the entries they need."""
    beta = math.asin(max(-1.0, min(1.0, -r20)))
    return math.degrees(math.atan2(r21, r22)), math.degrees(beta), math.degrees(math.atan2(r10, r00))


def _relative_euler_deg(q_start: tuple[float, ...], q_end: tuple[float, ...]) -> tuple[float, float, float]:
    """Extrinsic x-y-z Euler angles (degrees) of R(q_E)·R(q_S)ᵀ, the rotation applied in between:
    the reference computation (numpy's matmul), which decides every case near a threshold."""
    r = (np.array(_rotation_rows(q_end)) @ np.array(_rotation_rows(q_start)).T).tolist()
    return _euler_deg(r[0][0], r[1][0], r[2][0], r[2][1], r[2][2])


def _relative_euler_deg_fast(q_start: tuple[float, ...], q_end: tuple[float, ...]) -> tuple[float, float, float]:
    """The same angles in plain Python from the five matrix entries they need: several times
    cheaper than numpy on 3x3 matrices, equal to :func:`_relative_euler_deg` up to rounding."""
    (e0, e1, e2), (s0, s1, s2) = _rotation_rows(q_end), _rotation_rows(q_start)
    return _euler_deg(_dot(e0, s0), _dot(e1, s0), _dot(e2, s0), _dot(e2, s1), _dot(e2, s2))


def _near_rotation_boundary(alpha: float, beta: float, gamma: float) -> bool:
    """Whether an angle lies within :data:`_EXACT_BAND_DEG` of a boundary of the rotation test
    (tilt limits, minimum turn, and the ±180 degree wrap of gamma)."""
    band = _EXACT_BAND_DEG
    return (
        abs(abs(alpha) - ROTATION_MAX_TILT_DEG) < band
        or abs(abs(beta) - ROTATION_MAX_TILT_DEG) < band
        or abs(abs(gamma) - ROTATION_MIN_DEG) < band
        or abs(gamma) > 180.0 - band
    )


def _rotated(q_start: tuple[float, ...], q_end: tuple[float, ...], direction: str) -> bool:
    """The angle part of rotate_*: tilt under the limit about x and y, a turn of more than
    ROTATION_MIN_DEG about z in ``direction``.  Decided by the fast angles unless one is near a
    boundary, where the reference angles decide, so the verdict is always the reference's."""
    angles = _relative_euler_deg_fast(q_start, q_end)
    if _near_rotation_boundary(*angles):
        angles = _relative_euler_deg(q_start, q_end)
    alpha, beta, gamma = angles
    if abs(alpha) >= ROTATION_MAX_TILT_DEG or abs(beta) >= ROTATION_MAX_TILT_DEG:
        return False
    if direction == "left":
        return ROTATION_MIN_DEG < gamma < 180.0
    return -180.0 < gamma < -ROTATION_MIN_DEG


def _rotate(colour: str, direction: str) -> Predicate:
    def predicate(start: Snapshot, end: Snapshot) -> bool:
        s, e = start.block(colour), end.block(colour)
        if math.dist(s.position, e.position) > ROTATION_MAX_SHIFT:
            return False
        if not _rotated(s.orientation, e.orientation, direction):
            return False
        return bool(e.bodies - {end.robot_id})  # resting on something, not held up in the gripper

    return predicate


def _push(colour: str, direction: str) -> Predicate:
    def predicate(start: Snapshot, end: Snapshot) -> bool:
        s, e = start.block(colour), end.block(colour)
        dx = e.position[0] - s.position[0]
        if not (dx > PUSH_MIN_SHIFT if direction == "right" else dx < -PUSH_MIN_SHIFT):
            return False
        surfaces_s = {c for c in s.contacts if c[0] != start.robot_id}
        surfaces_e = {c for c in e.contacts if c[0] != end.robot_id}
        return bool(surfaces_s) and bool(surfaces_e) and surfaces_s <= surfaces_e

    return predicate


def _joint_delta(attribute: str, threshold: float) -> Predicate:
    """Success when a desk joint moved by more than ``threshold`` (signed) since the start."""

    def predicate(start: Snapshot, end: Snapshot) -> bool:
        delta = getattr(end, attribute) - getattr(start, attribute)
        return delta > threshold if threshold > 0 else delta < threshold

    return predicate


def _lift(colour: str, surface: str) -> Predicate:
    def predicate(start: Snapshot, end: Snapshot) -> bool:
        s, e = start.block(colour), end.block(colour)
        return (
            e.position[2] - s.position[2] > LIFT_HEIGHT[surface]
            and (start.desk_id, LIFT_SURFACE_LINK[surface]) in s.contacts
            and e.bodies == {end.robot_id}
        )

    return predicate


def _place(surface: str) -> Predicate:
    def predicate(start: Snapshot, end: Snapshot) -> bool:
        held = start.robot_bodies
        if len(held) != 1:
            return False
        (body,) = held
        blocks_s = {state.body_id: state for _, state in start.blocks}
        if body not in blocks_s or blocks_s[body].bodies != {start.robot_id}:
            return False
        if body in end.robot_bodies:
            return False
        block_e = next(state for _, state in end.blocks if state.body_id == body)
        return (end.desk_id, PLACE_SURFACE_LINK[surface]) in block_e.contacts

    return predicate


def _is_still(block: BlockState) -> bool:
    return all(abs(v) < STILL_MAX_VELOCITY for v in (*block.linear_velocity, *block.angular_velocity))


def _stack(start: Snapshot, end: Snapshot) -> bool:
    ids = start.block_ids
    for colour, e in end.blocks:
        s = start.block(colour)
        if not (s.bodies & ids) and (e.bodies & ids) and e.bodies <= ids and _is_still(e):
            return True
    return False


def _unstack(start: Snapshot, end: Snapshot) -> bool:
    ids = start.block_ids
    for colour, s in start.blocks:
        e = end.block(colour)
        if (s.bodies & ids) and s.bodies <= ids and _is_still(s) and not (e.bodies & ids):
            return True
    return False


def _light(attribute: str, before: int, after: int) -> Predicate:
    def predicate(start: Snapshot, end: Snapshot) -> bool:
        return getattr(start, attribute) == before and getattr(end, attribute) == after

    return predicate


def _push_into_drawer(start: Snapshot, end: Snapshot) -> bool:
    # Upstream also means to forbid robot contact at S and E, but its test compares a body id
    # with (body, link) pairs and is always true; only the single-pair rule below survives.
    for colour, s in start.blocks:
        if s.contacts == {(start.desk_id, DESK_BASE)} and (end.desk_id, DESK_DRAWER) in end.block(colour).contacts:
            return True
    return False


def _build() -> dict[str, Predicate]:
    table: dict[str, Predicate] = {}
    for colour in COLOURS:
        for direction in ("right", "left"):
            table[f"rotate_{colour}_block_{direction}"] = _rotate(colour, direction)
            table[f"push_{colour}_block_{direction}"] = _push(colour, direction)
        for surface in ("table", "slider", "drawer"):
            table[f"lift_{colour}_block_{surface}"] = _lift(colour, surface)
    # The slide joint's positive direction moves the door towards -x ("left").
    table["move_slider_left"] = _joint_delta("slide", SLIDER_MIN_TRAVEL)
    table["move_slider_right"] = _joint_delta("slide", -SLIDER_MIN_TRAVEL)
    table["open_drawer"] = _joint_delta("drawer", DRAWER_MIN_TRAVEL)
    table["close_drawer"] = _joint_delta("drawer", -DRAWER_MIN_TRAVEL)
    table["place_in_slider"] = _place("slider")
    table["place_in_drawer"] = _place("drawer")
    table["stack_block"] = _stack
    table["unstack_block"] = _unstack
    table["turn_on_lightbulb"] = _light("lightbulb", 0, 1)
    table["turn_off_lightbulb"] = _light("lightbulb", 1, 0)
    table["turn_on_led"] = _light("led", 0, 1)
    table["turn_off_led"] = _light("led", 1, 0)
    table["push_into_drawer"] = _push_into_drawer
    return {task: table[task] for task in TASKS}


#: Task name -> predicate(start snapshot, end snapshot), for all 34 tasks in §A.2 order.
PREDICATES: dict[str, Predicate] = _build()
