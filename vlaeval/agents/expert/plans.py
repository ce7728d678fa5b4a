"""Task -> plan: which skills solve each of CALVIN's 34 tasks from the current physical state.

A planner looks at the world *now* and returns the waypoints of the next attempt; the agent calls
it again whenever those run out without the subtask having succeeded.  Re-planning from the live
state is how the expert reacts to failures (a missed grasp is followed by a new grasp, a door
pushed short is pushed again) without any bookkeeping of its own.

Some choices are dictated by what the *next* subtask's predicate reads at its start snapshot
(§C.2), since a chain continues from wherever this one ends:

* rotations release the block from a few millimetres up and pushes end with a strike that lets
  the block slide free, so the block rests on the table untouched by the robot when they succeed
  (``push_into_drawer`` requires exactly that at its start);
* places and stacks succeed only once the fingers have let go, which the release ensures.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from vlaeval.agents.expert.skills import (
    CLOSE,
    OPEN,
    Motion,
    Waypoint,
    grasp,
    move_held,
    nearest_symmetric,
    place,
    press,
    push,
    release,
    wrap,
)
from vlaeval.agents.expert.world import (
    BLOCK_HALF_HEIGHT,
    SHELF_TOP_Z,
    TABLE_TOP_Z,
    Block,
    World,
    rotation_matrix,
)
from vlaeval.envs.calvin.scene import DOOR_WIDTH, DRAWER_TRAVEL
from vlaeval.envs.calvin.tasks import COLOURS, TASKS

Plan = tuple[Waypoint, ...]
Planner = Callable[[World, Motion], Plan]

#: Yaw of the neutral hand (fingers close along world x); grasps pick the equivalent yaw nearest it.
NEUTRAL_YAW = math.pi / 2
#: Heights the TCP travels at: above blocks on the table, and above the cabinet front.
TABLE_CLEARANCE = 0.56
CABINET_CLEARANCE = 0.62
#: Fingertips reach this far below the TCP (pads of the long fingers).
FINGERTIP_BELOW_TCP = 0.0084
#: Half thickness of the closed fingers along the closing axis (what touches a pushed block).
FINGER_HALF_THICKNESS = 0.005

ROTATION = math.pi / 2
ROTATE_DROP = 0.006  # released from this high, the block lands free of the fingers
ROTATE_LOWER = 0.06  # a block turned in the air is lowered this much, onto what is below
PUSH_RUN_UP = 0.025
PUSH_SLOW = 0.055  # pushed in contact this far; kicks (about 0.05 each) do the rest
KICK_RUN_UP = 0.04
KICK_OVERSHOOT = 0.03  # the target passes the block's face by this much, the lagging finger less
KICK_RETREAT = 0.03
PUSH_REACH = 0.13  # how far pushed blocks typically end up
PUSH_SWERVE = math.radians(30)
#: The LED button on the table (scene D), and how close a pushed block may end up to it.
BUTTON_XY = (-0.12, -0.12)
BUTTON_RADIUS = 0.045  # the cap and its housing, with a margin
BUTTON_CLEARANCE = 0.09
LIFT_HEIGHT = {"table": 0.10, "slider": 0.08, "drawer": 0.10}
PLACE_GAP = 0.003
MAX_GRASP_SPAN = 0.06  # blocks up to this long fit crosswise between the open fingers (0.08)
OPEN_FINGER_REACH = 0.05  # open fingers' distance from the grasp centre
ENOUGH_FINGER_ROOM = 0.03  # the preferred grasp is kept if its fingers clear other blocks by this
DOOR_HANDLE_STANDOFF = 0.045
CARRY_STANDOFF = 0.03
DRAWER_PRESS = 0.01  # how far below the handle's top the fingertips are sent
DRAWER_HANDLE_HALF_THICKNESS = 0.01
BUTTON_DEPTH = 0.015
SWITCH_TILT = math.pi / 3  # fingers perpendicular to the 60-degree cabinet front
SWITCH_HALF_THICKNESS = 0.016  # the switch stands this far out of the cabinet front, times two
SWITCH_HALF_LENGTH = 0.032  # along the slope
SWITCH_FINGER_GAP = 0.02  # fingertip centre to the switch face it will push, at the start
SWITCH_FINGER_OUT = 0.004  # fingertip centre above the switch's mid-plane
SWITCH_STANDOFF = 0.06
SWITCH_STROKE = 0.10
SWITCH_CLEARANCE = 0.60

#: Unstacking grasps the top block this far above its centre and lifts it this much.
UNSTACK_GRASP_HEIGHT = 0.01
UNSTACK_LIFT = 0.05

#: Where a block may be put down on the table, in order of preference.
TABLE_SPOTS = tuple((x, -0.12) for x in (0.05, 0.23, 0.14, 0.32)) + tuple((x, -0.06) for x in (0.05, 0.23, 0.14))
#: Candidate x of a block in each shelf half, and the shelf depth at which blocks sit.
SHELF_SPOTS_X = {"left": (-0.24, -0.18, -0.30), "right": (0.05, -0.01, 0.11)}
SHELF_Y = 0.092
#: The hand is wider than the opening is deep: leaning the fingers forward keeps the hand clear
#: of the cabinet front while it reaches a block on the shelf (the tilt is about the fingers'
#: closing axis, so the grasp itself is unchanged).
SHELF_TILT = 0.6
#: Half width around a shelf spot that the open fingers (or a held block) need free of the door.
SHELF_REACH = 0.06
#: Candidate x offsets in the drawer from its frame, its floor's depth from the frame (the floor
#: top is DRAWER_FLOOR above the frame), and the farthest-in y at which a block in the drawer is
#: still clear of the table top's edge (y -0.18) for the fingers, should the drawer be only
#: partly open.
DRAWER_SPOTS_X = (0.0, -0.1, 0.1)
DRAWER_SPOT_DEPTH = -0.09
DRAWER_FLOOR = 0.022
DRAWER_MOUTH_Y = -0.25


def plan_for(task: str, world: World, motion: Motion) -> Plan:
    """The next attempt at ``task`` from the current state."""
    return PLANNERS[task](world, motion)


# --- helpers ------------------------------------------------------------------------------------


def _hold_still(world: World) -> Plan:
    """Keep the current pose: used when the task cannot be attempted (nothing is held to place)."""
    position, euler = world.target()
    gripper = CLOSE if world.held() else OPEN
    return (Waypoint(tuple(float(v) for v in position), float(euler[2]), gripper, tolerance=1.0, hold=10,
                     tilt=world.hand_tilt()),)


def _target_yaw(world: World) -> float:
    return float(world.target()[1][2])


def _free_spot(candidates: tuple[tuple[float, float], ...], others: list[Block], enough: float = 0.09
               ) -> tuple[float, float]:
    """The first candidate at least ``enough`` away from every other block, else the one with
    the most room: candidates are listed by preference (the chain's usual spots first)."""
    def room(xy: tuple[float, float]) -> float:
        return min((math.dist(xy, b.position[:2]) for b in others), default=math.inf)

    best = max(room(c) for c in candidates)
    return next(c for c in candidates if room(c) >= min(best, enough))


def _place_held(world: World, motion: Motion, held: Block, xy: tuple[float, float], surface_z: float,
                clearance: float, yaw_turn: float = 0.0, tilt: float | None = None) -> Plan:
    """Put the held block's centre at ``xy`` resting on ``surface_z``, keeping its offset in the
    fingers, optionally turning the hand by ``yaw_turn`` on the way.

    Unless told otherwise the hand takes the tilt that holds the block level: a block picked
    from the shelf with a tipped hand would otherwise land on an edge.
    """
    if tilt is None:
        tilt = world.hand_tilt() - held.tilt
    tcp = world.tcp()
    offset = held.position - tcp
    point = np.array((xy[0] - offset[0], xy[1] - offset[1], surface_z + BLOCK_HALF_HEIGHT - offset[2] + PLACE_GAP))
    return place(tcp, point, _target_yaw(world) + yaw_turn, clearance, motion, tilt)


def _put_down(world: World, motion: Motion, held: Block) -> Plan:
    """Let go of a block the task does not need: where it stands if it rests on the desk,
    otherwise on a free spot of the table."""
    if held.resting:
        return release(world.tcp(), _target_yaw(world), motion)
    others = [b for b in world.blocks() if b.colour != held.colour]
    return _place_held(world, motion, held, _free_spot(TABLE_SPOTS, others), TABLE_TOP_Z, TABLE_CLEARANCE)


def _grasp_yaw(block: Block, reference: float = NEUTRAL_YAW) -> float:
    return nearest_symmetric(block.yaw, block.grasp_period, reference)


def _clear_grasp_yaw(world: World, block: Block) -> float:
    """The grasp yaw whose open fingers land farthest from the other blocks.

    Blocks pushed around can end up next to each other; a block no longer than the fingers'
    opening may also be taken across its long side, which keeps the fingers off a neighbour
    that lies along its short side.
    """
    candidates = [_grasp_yaw(block)]
    if max(block.size[:2]) <= MAX_GRASP_SPAN:
        candidates.append(nearest_symmetric(candidates[0] + math.pi / 2, math.pi, NEUTRAL_YAW))
    others = [b for b in world.blocks() if b.colour != block.colour]

    def room(yaw: float) -> float:
        across = np.array((math.sin(yaw), -math.cos(yaw)))  # the fingers' closing axis
        fingers = [block.position[:2] + side * OPEN_FINGER_REACH * across for side in (-1, 1)]
        return min(
            (math.dist(f, b.position[:2]) - max(b.size[:2]) / 2 for f in fingers for b in others), default=math.inf
        )

    best = max(room(yaw) for yaw in candidates)
    return next(yaw for yaw in candidates if room(yaw) >= min(best, ENOUGH_FINGER_ROOM))


def _needs_free_hand(planner: Planner) -> Planner:
    """Wrap a planner so that a block still in the fingers (e.g. after unstacking) is put down
    first."""
    @functools.wraps(planner)
    def wrapped(world: World, motion: Motion) -> Plan:
        held = world.held()
        return _put_down(world, motion, held) if held else planner(world, motion)

    return wrapped


# --- planners -----------------------------------------------------------------------------------


def _rotate(colour: str, sign: int, world: World, motion: Motion) -> Plan:
    """Grasp, turn a quarter turn (less what is already turned since the subtask started) a few
    millimetres above the table, and let go.

    A block still hanging in the fingers (after an unstack) is turned where it is and lowered
    onto whatever is below: the predicate allows it to move only 0.10 m from where the subtask
    started, too little to put it anywhere else first.
    """
    held = world.held()
    if held and held.colour != colour:
        return _put_down(world, motion, held)
    block = world.block(colour)
    remaining = sign * ROTATION - wrap(block.yaw - world.start_yaw(colour))
    if held:
        yaw, point = _target_yaw(world), world.tcp()
        lowered = point - (0.0, 0.0, 0.0 if held.resting else ROTATE_LOWER)
        return (
            move_held(point, yaw + remaining, motion, speed=1.0)
            + move_held(lowered, yaw + remaining, motion)
            + release(lowered, yaw + remaining, motion)
        )
    point = block.position + (0.0, 0.0, ROTATE_DROP)
    yaw = _grasp_yaw(block, NEUTRAL_YAW - remaining / 2)
    return (
        grasp(world.tcp(), block.position, yaw, TABLE_CLEARANCE, motion)
        + move_held(point, yaw, motion)
        + move_held(point, yaw + remaining, motion, speed=1.0)
        + release(point, yaw + remaining, motion)
    )


def _push_block(colour: str, sign: int, world: World, motion: Motion) -> Plan:
    """Push a block along world x (``sign``): slowly in contact for most of the way, then kicks
    until it has travelled far enough.

    A kick (a fast stroke that reverses just past the block's face) sends the block sliding on
    its own, so the success step finds it on the table with no robot contact, which a following
    ``push_into_drawer`` requires at its start.  Blocks heading for the LED button are pushed
    at an angle (the predicate ignores y), so that grasping them later cannot press it.
    """
    block = world.block(colour)
    moved = sign * (block.position[0] - world.env.start_snapshot().block(colour).position[0])
    angle = (0.0 if sign > 0 else math.pi) + sign * _swerve(block, sign)
    d = np.array((math.cos(angle), math.sin(angle), 0.0))
    face = block.position - d * (block.half_extent(angle) + FINGER_HALF_THICKNESS)
    tcp = world.tcp()
    behind = float(np.dot(face - tcp, d)) > 0.005
    in_line = float(np.linalg.norm(np.cross(face - tcp, d))) < 0.015
    if moved < PUSH_SLOW - 0.01:
        push_to = face + d * ((PUSH_SLOW - moved) / abs(d[0]))
        prefix = push(tcp, face - d * PUSH_RUN_UP, push_to, NEUTRAL_YAW, TABLE_CLEARANCE, motion)
        face = push_to
    elif behind and in_line:
        prefix = ()
    else:
        start = face - d * KICK_RUN_UP
        prefix = push(tcp, start, start, NEUTRAL_YAW, TABLE_CLEARANCE, motion)
    return prefix + _kick(face, d, motion)


def _swerve(block: Block, sign: int) -> float:
    """Angle off the x axis (towards +y) for a push that would otherwise end near the button."""
    end_x = block.position[0] + sign * PUSH_REACH
    near = abs(end_x - BUTTON_XY[0]) < BUTTON_CLEARANCE and abs(block.position[1] - BUTTON_XY[1]) < BUTTON_CLEARANCE
    return PUSH_SWERVE if near else 0.0


def _kick(face: np.ndarray, d: np.ndarray, motion: Motion) -> Plan:
    """Back off, then strike through ``face`` along ``d`` at full speed and immediately pull back."""
    def at(offset: float) -> tuple[float, float, float]:
        return tuple(float(v) for v in face + d * offset)  # type: ignore[return-value]

    return (
        Waypoint(at(-KICK_RUN_UP), NEUTRAL_YAW, CLOSE, motion.contact_speed, tolerance=0.01, timeout=30),
        Waypoint(at(KICK_OVERSHOOT), NEUTRAL_YAW, CLOSE, 1.0, tolerance=0.2, timeout=30),
        Waypoint(at(-KICK_RETREAT), NEUTRAL_YAW, CLOSE, 1.0, tolerance=0.01, timeout=30),
    )


def _move_slider(sign: int, world: World, motion: Motion, carrying: bool = False) -> Plan:
    """Push the door's handle sideways; ``sign`` is the door's motion in world x.  A held block
    hangs below the fingers and does the pushing, so it starts farther out."""
    handle, _ = world.point("slide_handle")
    travel = world.env.layout.door_travel
    q = world.joint("slide")
    remaining = (travel - q) if sign < 0 else q  # the joint's positive direction is world -x
    standoff = DOOR_HANDLE_STANDOFF + (CARRY_STANDOFF if carrying else 0.0)
    begin = handle - (sign * standoff, 0.0, 0.0)
    end = begin + (sign * (remaining + 0.01), 0.0, 0.0)
    return push(world.tcp(), begin, end, NEUTRAL_YAW, CABINET_CLEARANCE, motion)


def _move_drawer(sign: int, world: World, motion: Motion) -> Plan:
    """Press on the handle's top and drag it; ``sign`` is the motion in world y (-1 opens).

    The handle is a plate flush with the drawer front, so it cannot be hooked; pressing on it
    and dragging moves the drawer by friction.
    """
    handle, _ = world.point("drawer_handle")
    q = world.joint("drawer")
    remaining = (DRAWER_TRAVEL - q) if sign < 0 else q
    begin = handle + (0.0, 0.0, FINGERTIP_BELOW_TCP + DRAWER_HANDLE_HALF_THICKNESS - DRAWER_PRESS)
    end = begin + (0.0, sign * (remaining + 0.02), 0.0)
    return push(world.tcp(), begin, end, NEUTRAL_YAW, TABLE_CLEARANCE, motion)


def _press_button(world: World, motion: Motion) -> Plan:
    """One press toggles the LED (edge-triggered), so on and off are the same motion."""
    top, _ = world.point("button")
    return press(world.tcp(), top + (0.0, 0.0, FINGERTIP_BELOW_TCP), BUTTON_DEPTH, NEUTRAL_YAW, TABLE_CLEARANCE,
                 motion)


def _flip_switch(sign: int, world: World, motion: Motion) -> Plan:
    """Push the switch along the cabinet front with the fingers perpendicular to it: up the slope
    (``sign`` +1) from below its lower face, or down from above its upper face."""
    face, orientation = world.point("switch")
    axes = rotation_matrix(orientation)
    along, normal = axes[:, 1], axes[:, 2]  # up the slope, out of the cabinet front
    centre = face - SWITCH_HALF_THICKNESS * normal
    begin = centre - sign * (SWITCH_HALF_LENGTH + SWITCH_FINGER_GAP) * along + SWITCH_FINGER_OUT * normal
    end = begin + sign * SWITCH_STROKE * along
    return push(world.tcp(), begin, end, NEUTRAL_YAW, SWITCH_CLEARANCE, motion, tilt=SWITCH_TILT,
                approach=SWITCH_STANDOFF * normal)


def _door_in_the_way(world: World, x: float) -> int:
    """Which way (world x sign) the door must move to clear the shelf around ``x``, or 0.

    A door pushed just past the success threshold still hangs over part of the half it should
    have uncovered, so shelf tasks finish the job first.
    """
    left, _ = world.point("slide")
    door = (left[0], left[0] + DOOR_WIDTH)
    if x + SHELF_REACH < door[0] or x - SHELF_REACH > door[1]:
        return 0
    return 1 if x < (door[0] + door[1]) / 2 else -1


def _lift(colour: str, surface: str, world: World, motion: Motion) -> Plan:
    """Grasp the block where it rests and raise it (a held block is just raised further).  Shelf
    blocks are reached with a tipped hand, after pushing the door fully out of the way."""
    held = world.held()
    if held and held.colour != colour:
        return _put_down(world, motion, held)
    if held:
        return move_held(world.tcp() + (0.0, 0.0, LIFT_HEIGHT[surface]), _target_yaw(world), motion,
                         tilt=world.hand_tilt())
    block = world.block(colour)
    door = _door_in_the_way(world, float(block.position[0])) if surface == "slider" else 0
    if door:
        return _move_slider(door, world, motion)
    # Shelf grasps keep the usual axis: the hand is tipped about the fingers' closing axis.
    yaw = _grasp_yaw(block) if surface == "slider" else _clear_grasp_yaw(world, block)
    clearance, tilt = (CABINET_CLEARANCE, SHELF_TILT) if surface == "slider" else (TABLE_CLEARANCE, 0.0)
    return grasp(world.tcp(), block.position, yaw, clearance, motion, tilt) + move_held(
        block.position + (0.0, 0.0, LIFT_HEIGHT[surface]), yaw, motion, tilt=tilt
    )


def _shelf_spot(world: World, held: Block) -> tuple[float, float]:
    """A free spot in the half the door leaves open, preferring spots the door does not overhang
    (a door pushed just past the success threshold still covers part of the half)."""
    open_half = "right" if world.joint("slide") > world.env.layout.door_travel / 2 else "left"
    on_shelf = [b for b in world.blocks() if b.colour != held.colour and "shelf" in b.touches]
    spots = tuple((x, SHELF_Y) for x in SHELF_SPOTS_X[open_half])
    clear = tuple(s for s in spots if not _door_in_the_way(world, s[0]))
    return _free_spot(clear or spots, on_shelf)


def _drawer_spot(world: World, held: Block) -> tuple[tuple[float, float], float]:
    frame, _ = world.point("drawer")
    in_drawer = [b for b in world.blocks() if b.colour != held.colour and "drawer" in b.touches]
    y = min(frame[1] + DRAWER_SPOT_DEPTH, DRAWER_MOUTH_Y)
    spots = tuple((frame[0] + dx, y) for dx in DRAWER_SPOTS_X)
    return _free_spot(spots, in_drawer), frame[2] + DRAWER_FLOOR


def _place_in_slider(world: World, motion: Motion) -> Plan:
    """Put the held block in the open half of the shelf (uncovering it fully first).  Without a
    held block the predicate cannot succeed, so the expert keeps still."""
    held = world.held()
    if not held:
        return _hold_still(world)
    spot = _shelf_spot(world, held)
    door = _door_in_the_way(world, spot[0])
    if door:
        return _move_slider(door, world, motion, carrying=True)
    return _place_held(world, motion, held, spot, SHELF_TOP_Z, CABINET_CLEARANCE, tilt=SHELF_TILT)


def _place_in_drawer(world: World, motion: Motion) -> Plan:
    """Put the held block on a free spot of the open drawer's floor."""
    held = world.held()
    if not held:
        return _hold_still(world)
    xy, floor = _drawer_spot(world, held)
    return _place_held(world, motion, held, xy, floor, TABLE_CLEARANCE)


def _stack(world: World, motion: Motion) -> Plan:
    """Put the held block on the block standing on the table, turned to match its footprint."""
    held = world.held()
    if not held:
        return _hold_still(world)
    bases = [b for b in world.blocks() if b.colour != held.colour and "table" in b.touches and "robot" not in b.touches]
    if not bases:
        return _hold_still(world)
    base = min(bases, key=lambda b: math.dist(b.position[:2], held.position[:2]))
    aligned = nearest_symmetric(base.yaw - held.yaw, math.pi / 2, 0.0)
    # Either footprint-aligned turn stacks stably; avoid the one that overhangs the LED button.
    turns = sorted((aligned, aligned + math.copysign(math.pi / 2, -aligned or 1.0)), key=abs)
    turn = next((t for t in turns if _clear_of_button(base.position, held.yaw + t, held.size)), turns[0])
    return _place_held(world, motion, held, tuple(base.position[:2]), float(base.position[2]) + BLOCK_HALF_HEIGHT,
                       TABLE_CLEARANCE, yaw_turn=turn)


def _clear_of_button(centre: np.ndarray, yaw: float, size: tuple[float, float, float]) -> bool:
    """Whether a block footprint centred at ``centre`` with ``yaw`` stays off the LED button."""
    offset = np.array(BUTTON_XY) - centre[:2]
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array((c * offset[0] + s * offset[1], -s * offset[0] + c * offset[1]))
    outside = np.maximum(np.abs(local) - np.array(size[:2]) / 2, 0.0)
    return float(np.linalg.norm(outside)) > BUTTON_RADIUS


def _unstack(world: World, motion: Motion) -> Plan:
    """Lift the top block off its base.

    The subtask succeeds the moment the block stops touching its base, i.e. with the block in
    the fingers.  A following push or table lift of that block then cannot succeed (their
    predicates need it on the table at their start); every way found to slide it down onto the
    table while still touching the base either drags or knocks the base away.
    """
    held = world.held()
    tops = [b for b in world.blocks() if b.touches & set(COLOURS) and not b.resting]
    if held and any(t.colour == held.colour for t in tops):
        return move_held(world.tcp() + (0.0, 0.0, UNSTACK_LIFT), _target_yaw(world), motion)
    if held:
        return _put_down(world, motion, held)
    if not tops:
        return _hold_still(world)
    top = max(tops, key=lambda b: b.position[2])
    yaw = _grasp_yaw(top)
    # Held high, so that the fingers do not touch (and drag) the base.
    point = top.position + (0.0, 0.0, UNSTACK_GRASP_HEIGHT)
    return grasp(world.tcp(), point, yaw, TABLE_CLEARANCE, motion) + move_held(
        point + (0.0, 0.0, UNSTACK_LIFT), yaw, motion
    )


def _push_into_drawer(world: World, motion: Motion) -> Plan:
    """Carry the block that stands alone on the table into the drawer.

    The predicate only needs the block on the table at the start and in the drawer at the end,
    and picking it up is far more reliable than shoving it over the table's edge.
    """
    if world.held():
        return _place_in_drawer(world, motion)
    candidates = [b for b in world.blocks() if b.touches == {"table"}] or [
        b for b in world.blocks() if "table" in b.touches
    ]
    if not candidates:
        return _hold_still(world)
    block = candidates[0]
    yaw = _clear_grasp_yaw(world, block)
    return grasp(world.tcp(), block.position, yaw, TABLE_CLEARANCE, motion) + move_held(
        block.position + (0.0, 0.0, 0.05), yaw, motion
    )


def _build() -> dict[str, Planner]:
    planners: dict[str, Planner] = {}
    for colour in COLOURS:
        for side, sign in (("right", -1), ("left", 1)):
            planners[f"rotate_{colour}_block_{side}"] = functools.partial(_rotate, colour, sign)
        for side, sign in (("right", 1), ("left", -1)):
            planners[f"push_{colour}_block_{side}"] = _needs_free_hand(functools.partial(_push_block, colour, sign))
        for surface in ("table", "slider", "drawer"):
            planners[f"lift_{colour}_block_{surface}"] = functools.partial(_lift, colour, surface)
    planners["move_slider_left"] = _needs_free_hand(functools.partial(_move_slider, -1))
    planners["move_slider_right"] = _needs_free_hand(functools.partial(_move_slider, 1))
    planners["open_drawer"] = _needs_free_hand(functools.partial(_move_drawer, -1))
    planners["close_drawer"] = _needs_free_hand(functools.partial(_move_drawer, 1))
    planners["place_in_slider"] = _place_in_slider
    planners["place_in_drawer"] = _place_in_drawer
    planners["stack_block"] = _stack
    planners["unstack_block"] = _unstack
    planners["turn_on_lightbulb"] = _needs_free_hand(functools.partial(_flip_switch, 1))
    planners["turn_off_lightbulb"] = _needs_free_hand(functools.partial(_flip_switch, -1))
    planners["turn_on_led"] = _needs_free_hand(_press_button)
    planners["turn_off_led"] = _needs_free_hand(_press_button)
    planners["push_into_drawer"] = _push_into_drawer
    return {task: planners[task] for task in TASKS}


#: Task name -> planner, for all 34 tasks.
PLANNERS: dict[str, Planner] = _build()
