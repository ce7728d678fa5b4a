"""The CALVIN play table (desk, blocks, ground) for scenes A-D, rebuilt from spec calvin.md Part D.

No upstream meshes exist here, so the desk is generated as a box-built URDF from a per-scene
:class:`SceneLayout` holding the spec's numbers (already including upstream's 0.8 scaling).  The
desk stays one articulated body whose link indices are the ones the predicates use (§C.1), and
bodies are created in upstream's order so body ids match scene D's (robot 0, base cylinder 1,
blocks 2-4, desk 5, plane 6).  Wood textures are replaced by flat colours: rendering cost matters
more here than the grain.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlaeval.envs.calvin.bullet import pb
from vlaeval.envs.calvin.predicates import (
    DESK_BUTTON,
    DESK_DRAWER,
    DESK_LED,
    DESK_LIGHTBULB,
    DESK_PLANK,
    DESK_SLIDE,
    DESK_SWITCH,
)

# --- geometry shared by all scenes (§D.2, §D.10) ---------------------------------------------
TABLE_TOP_Z = 0.44
CABINET_TOP_Z = 0.6478
INCLINE = math.pi / 3  # the cabinet front rises at 60 degrees
INCLINE_FOOT = (0.02, TABLE_TOP_Z)  # (y, z) where the incline meets the table top
INCLINE_LENGTH = 0.24  # along the slope, up to the flat top at y = 0.14
DRAWER_TRAVEL = 0.22
BUTTON_TRAVEL = 0.02
SWITCH_TRAVEL = 0.088
BUTTON_TRIGGER = 0.01  # "pressed" = past the middle of the travel (§C.3)
SWITCH_TRIGGER = 0.044
DOOR_WIDTH = 0.28
PLANK_WIDTH = 0.528  # the shelf, and the opening in the cabinet front that exposes it
DESK_MOTOR_FORCE = 4.0
#: Centre heights random resets put blocks at, taken from the evaluation spots (§B.3): 10 µm into
#: the table top (pybullet reports no contact for an exact zero gap) and 0.6 mm into the shelf,
#: whose top is 1.6 mm above the table's, so a shelf block touches the plank only.
TABLE_BLOCK_Z = 0.45999001
SHELF_BLOCK_Z = 0.460990009
BLOCK_HEIGHT = 0.04

#: Block footprint (x, y) by size class; all blocks are 0.04 high (§D.5).
BLOCK_SIZES = {"small": (0.04, 0.04), "middle": (0.056, 0.04), "big": (0.08, 0.04)}

COLOUR_RGBA = {"red": (1.0, 0.0, 0.0, 1.0), "blue": (0.0, 0.0, 1.0, 1.0), "pink": (1.0, 0.0, 1.0, 1.0)}
LED_RGBA = {0: (1.0, 1.0, 1.0, 1.0), 1: (0.0, 1.0, 0.0, 1.0)}
LIGHTBULB_RGBA = {0: (1.0, 1.0, 1.0, 1.0), 1: (1.0, 1.0, 0.0, 1.0)}
HANDLE_RGBA = (0.5, 0.5, 0.5, 1.0)
BUTTON_RGBA = (0.0, 0.0, 0.0, 1.0)
SWITCH_RGBA = (0.4, 0.4, 0.4, 1.0)
FLOOR_RGBA = (0.75, 0.75, 0.72, 1.0)

#: Desk joint name -> link (= joint) index.
DESK_JOINTS = {"button": DESK_BUTTON, "switch": DESK_SWITCH, "slide": DESK_SLIDE, "drawer": DESK_DRAWER}

#: Grasp/push points on the desk for the scripted expert: name -> (link index, offset in the
#: link frame).  Offsets follow the boxes generated in :func:`desk_urdf`.
DESK_POINTS: dict[str, tuple[int, tuple[float, float, float]]] = {
    "button": (DESK_BUTTON, (0.0, 0.0, 0.024)),  # top of the cap
    "switch": (DESK_SWITCH, (0.0, 0.0, 0.016)),  # middle of the outer face
    "slide": (DESK_SLIDE, (0.0, 0.0, 0.0)),
    "slide_handle": (DESK_SLIDE, (0.14, 0.0, 0.04)),
    "drawer": (DESK_DRAWER, (0.0, 0.0, 0.0)),
    "drawer_handle": (DESK_DRAWER, (0.0, -0.225, 0.04)),
    "led": (DESK_LED, (0.0, 0.0, 0.008)),
    "lightbulb": (DESK_LIGHTBULB, (0.0, 0.028, 0.024)),
    "plank": (DESK_PLANK, (0.0, 0.0, 0.0)),
}


@dataclass(frozen=True)
class Region:
    """An axis-aligned box blocks are dropped into by random resets (§D.3)."""

    x: tuple[float, float]
    y: tuple[float, float]
    z: float


@dataclass(frozen=True)
class SceneLayout:
    """Everything that differs between scenes A-D (§D.10); x values are link-frame x."""

    name: str
    button_x: float
    led_x: float
    switch_x: float
    lightbulb_xy: tuple[float, float]
    door_x: float
    door_travel: float
    drawer_x: float
    plank_x: float
    table_region: Region
    slider_left_region: Region
    slider_right_region: Region
    #: colour -> size class
    block_sizes: tuple[tuple[str, str], ...]
    #: block order in scene_obs and in body creation (ids 2, 3, 4)
    block_order: tuple[str, str, str]
    desk_rgba: tuple[float, float, float, float]
    door_rgba: tuple[float, float, float, float]

    def block_size(self, colour: str) -> tuple[float, float, float]:
        """Full box size (x, y, z) of a block; the long side is the local x axis."""
        sx, sy = BLOCK_SIZES[dict(self.block_sizes)[colour]]
        return sx, sy, BLOCK_HEIGHT

    @property
    def regions(self) -> tuple[Region, Region, Region]:
        """The three surfaces a random reset picks from: table, left and right shelf half."""
        return self.table_region, self.slider_left_region, self.slider_right_region


_SHELF = ((0.05, 0.12), SHELF_BLOCK_Z)
_TABLE = ((-0.15, -0.03), TABLE_BLOCK_Z)
_DARK_WOOD = (0.36, 0.22, 0.12, 1.0)

SCENES: dict[str, SceneLayout] = {
    "A": SceneLayout(
        name="A", button_x=-0.28, led_x=-0.28, switch_x=0.30, lightbulb_xy=(0.30, 0.132),
        door_x=-0.10, door_travel=0.28, drawer_x=0.10, plank_x=-0.10,
        table_region=Region((-0.20, 0.35), *_TABLE),
        slider_left_region=Region((-0.32, -0.16), *_SHELF), slider_right_region=Region((-0.05, 0.13), *_SHELF),
        block_sizes=(("red", "middle"), ("blue", "big"), ("pink", "small")), block_order=("pink", "blue", "red"),
        desk_rgba=(0.30, 0.18, 0.10, 1.0), door_rgba=(0.26, 0.16, 0.09, 1.0),
    ),
    "B": SceneLayout(
        name="B", button_x=0.28, led_x=0.28, switch_x=-0.32, lightbulb_xy=(-0.32, 0.136),
        door_x=0.088, door_travel=0.304, drawer_x=0.18, plank_x=0.08,
        table_region=Region((-0.35, 0.15), *_TABLE),
        slider_left_region=Region((-0.12, 0.06), *_SHELF), slider_right_region=Region((0.15, 0.33), *_SHELF),
        block_sizes=(("red", "small"), ("blue", "big"), ("pink", "middle")), block_order=("red", "blue", "pink"),
        desk_rgba=(0.78, 0.62, 0.44, 1.0), door_rgba=(0.72, 0.56, 0.38, 1.0),
    ),
    "C": SceneLayout(
        name="C", button_x=-0.12, led_x=-0.12, switch_x=-0.32, lightbulb_xy=(-0.32, 0.132),
        door_x=0.06, door_travel=0.24, drawer_x=0.10, plank_x=0.08,
        table_region=Region((0.00, 0.35), *_TABLE),
        slider_left_region=Region((-0.12, 0.06), *_SHELF), slider_right_region=Region((0.15, 0.30), *_SHELF),
        block_sizes=(("red", "big"), ("blue", "small"), ("pink", "middle")), block_order=("blue", "red", "pink"),
        desk_rgba=(0.56, 0.38, 0.20, 1.0), door_rgba=(0.30, 0.18, 0.10, 1.0),
    ),
    "D": SceneLayout(
        name="D", button_x=-0.12, led_x=-0.12, switch_x=0.30, lightbulb_xy=(0.30, 0.132),
        door_x=-0.10, door_travel=0.28, drawer_x=0.18, plank_x=-0.10,
        table_region=Region((0.00, 0.35), *_TABLE),
        slider_left_region=Region((-0.32, -0.16), *_SHELF), slider_right_region=Region((-0.05, 0.13), *_SHELF),
        block_sizes=(("red", "middle"), ("blue", "small"), ("pink", "big")), block_order=("red", "blue", "pink"),
        desk_rgba=_DARK_WOOD, door_rgba=(0.32, 0.19, 0.10, 1.0),
    ),
}  # fmt: skip


def cached_file(stem: str, text: str) -> str:
    """Write generated text (a URDF) once per content into a per-user temp dir; return its path.

    pybullet only loads URDFs from files; content-addressed names let concurrent processes share
    the file, and the atomic rename keeps a reader from ever seeing a half-written one.
    """
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    directory = Path(tempfile.gettempdir()) / f"vlaeval-calvin-{os.getuid()}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}-{digest}.urdf"
    if not path.exists():
        partial = directory / f".{path.name}.{os.getpid()}"
        partial.write_text(text)
        os.replace(partial, path)
    return str(path)


# --- desk URDF -------------------------------------------------------------------------------


def _fmt(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _shape(centre: tuple[float, ...], geometry: str, rgba: tuple[float, ...],
           rpy: tuple[float, ...] = (0.0, 0.0, 0.0)) -> str:
    """One solid part: the same geometry as URDF visual (flat colour) and collision."""
    origin = f'<origin xyz="{_fmt(centre)}" rpy="{_fmt(rpy)}"/>'
    name = "rgba_" + "_".join(str(round(v * 255)) for v in rgba)
    material = f'<material name="{name}"><color rgba="{_fmt(rgba)}"/></material>'
    return (
        f"<visual>{origin}<geometry>{geometry}</geometry>{material}</visual>"
        f"<collision>{origin}<geometry>{geometry}</geometry></collision>"
    )


def _box(centre: tuple[float, ...], size: tuple[float, ...], rgba: tuple[float, ...],
         rpy: tuple[float, ...] = (0.0, 0.0, 0.0)) -> str:
    return _shape(centre, f'<box size="{_fmt(size)}"/>', rgba, rpy)


def _cylinder(centre: tuple[float, ...], radius: float, length: float, rgba: tuple[float, ...]) -> str:
    return _shape(centre, f'<cylinder radius="{radius:.6g}" length="{length:.6g}"/>', rgba)


def _link(name: str, mass: float, body: str) -> str:
    inertia = '<inertia ixx="1e-4" ixy="0" ixz="0" iyy="1e-4" iyz="0" izz="1e-4"/>'
    return f'<link name="{name}"><inertial><mass value="{mass}"/>{inertia}</inertial>{body}</link>\n'


def _joint(name: str, kind: str, child: str, xyz: tuple[float, ...], rpy: tuple[float, ...] = (0.0, 0.0, 0.0),
           axis: tuple[float, ...] = (1.0, 0.0, 0.0), upper: float = 0.0) -> str:
    limit = f'<limit lower="0" upper="{upper:.6g}" effort="100" velocity="10"/>' if kind == "prismatic" else ""
    return (
        f'<joint name="{name}" type="{kind}"><parent link="base_link"/><child link="{child}"/>'
        f'<origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/><axis xyz="{_fmt(axis)}"/>{limit}</joint>\n'
    )


def _on_incline(s: float, normal: float) -> tuple[float, float]:
    """World (y, z) of a point ``s`` up the cabinet's 60-degree front and ``normal`` out of it."""
    y0, z0 = INCLINE_FOOT
    cos, sin = math.cos(INCLINE), math.sin(INCLINE)
    return y0 + s * cos - normal * sin, z0 + s * sin + normal * cos


def desk_urdf(layout: SceneLayout) -> str:
    """The desk of one scene as URDF text (world units, base at the origin).

    Joints are declared in link-index order (button, switch, slide, drawer, LED, lightbulb,
    plank) because pybullet numbers a URDF's links in declaration order.
    """
    wood, door = layout.desk_rgba, layout.door_rgba
    plank_lo, plank_hi = layout.plank_x - PLANK_WIDTH / 2, layout.plank_x + PLANK_WIDTH / 2
    slab = 0.02
    incline_rpy = (INCLINE, 0.0, 0.0)
    mid_y, mid_z = _on_incline(INCLINE_LENGTH / 2, -slab / 2)
    base = [
        _box((0.0, 0.0, 0.425), (0.88, 0.36, 0.03), wood),  # table top, z 0.41 .. 0.44
        *(_box((sx * 0.42, sy * 0.16, 0.205), (0.04, 0.04, 0.41), wood) for sx in (-1, 1) for sy in (-1, 1)),
        _box((0.0, 0.17, (TABLE_TOP_Z + CABINET_TOP_Z) / 2), (0.88, 0.02, CABINET_TOP_Z - TABLE_TOP_Z), wood),
        _box((0.0, 0.16, CABINET_TOP_Z - 0.01), (0.88, 0.04, 0.02), wood),  # flat top
        _cylinder((layout.button_x, -0.12, 0.45), 0.04, 0.02, wood),  # button housing
    ]
    # The cabinet front: solid left and right of the shelf opening, plus a strip above it.
    for lo, hi in ((-0.44, plank_lo), (plank_hi, 0.44)):
        base.append(_box(((lo + hi) / 2, mid_y, mid_z), (hi - lo, INCLINE_LENGTH, slab), wood, incline_rpy))
    top_y, top_z = _on_incline(INCLINE_LENGTH - 0.01, -slab / 2)
    base.append(_box((layout.plank_x, top_y, top_z), (plank_hi - plank_lo, 0.02, slab), wood, incline_rpy))

    switch_y, switch_z = _on_incline(0.076, 0.016)
    door_y, door_z = _on_incline(0.11, 0.0)
    bulb_x, bulb_y = layout.lightbulb_xy
    links = [
        _link("button_link", 0.154, _cylinder((0.0, 0.0, 0.012), 0.032, 0.024, BUTTON_RGBA)),
        _link("switch_link", 0.239, _box((0.0, 0.0, 0.0), (0.12, 0.064, 0.032), SWITCH_RGBA)),
        _link(
            "slide_link",
            1.54,
            _box((DOOR_WIDTH / 2, 0.0, 0.0075), (DOOR_WIDTH, 0.22, 0.015), door)
            + _box((0.14, 0.0, 0.04), (0.03, 0.08, 0.05), HANDLE_RGBA),
        ),
        _link(
            "drawer_link",
            4.23,
            _box((0.0, -0.075, 0.017), (0.36, 0.21, 0.01), door)  # floor, top at z 0.342
            + "".join(_box((sx * 0.175, -0.075, 0.052), (0.01, 0.21, 0.06), door) for sx in (-1, 1))
            + _box((0.0, 0.035, 0.052), (0.36, 0.01, 0.06), door)  # back wall
            + _box((0.0, -0.19, 0.03), (0.45, 0.02, 0.11), door)  # front panel
            + _box((0.0, -0.225, 0.04), (0.12, 0.05, 0.02), HANDLE_RGBA),
        ),
        _link("led_link", 0.1, _box((0.0, 0.0, 0.008), (0.16, 0.04, 0.016), LED_RGBA[0])),
        _link("light_link", 0.174, _shape((0.0, 0.028, 0.024), '<sphere radius="0.028"/>', LIGHTBULB_RGBA[0])),
        _link("plank_link", 2.84, _box((0.0, 0.0, -0.01), (PLANK_WIDTH, 0.148, 0.02), wood)),
    ]
    joints = [
        _joint("base__button", "prismatic", "button_link", (layout.button_x, -0.12, 0.46), axis=(0, 0, -1),
               upper=BUTTON_TRAVEL),
        _joint("base__switch", "prismatic", "switch_link", (layout.switch_x, switch_y, switch_z), incline_rpy,
               axis=(0, 1, 0), upper=SWITCH_TRAVEL),
        _joint("base__slide", "prismatic", "slide_link", (layout.door_x, door_y, door_z), incline_rpy,
               axis=(-1, 0, 0), upper=layout.door_travel),
        _joint("base__drawer", "prismatic", "drawer_link", (layout.drawer_x, 0.0, 0.32), axis=(0, -1, 0),
               upper=DRAWER_TRAVEL),
        _joint("base__led", "fixed", "led_link", (layout.led_x, 0.16, CABINET_TOP_Z)),
        _joint("base__light", "fixed", "light_link", (bulb_x, bulb_y, CABINET_TOP_Z)),
        _joint("base__plank", "fixed", "plank_link", (layout.plank_x, 0.09, 0.4416)),
    ]
    body = _link("base_link", 0.0, "".join(base))
    parts = "".join((body, *links, *joints))
    return f'<?xml version="1.0"?><robot name="calvin_desk_{layout.name}">{parts}</robot>\n'


# --- bodies ----------------------------------------------------------------------------------


def create_block(client: int, size: tuple[float, float, float], rgba: tuple[float, ...]) -> int:
    """A free 1 kg box with CALVIN's contact properties (§D.5); inertia comes from the box."""
    half = [s / 2 for s in size]
    collision = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=client)
    visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=client)
    body = pb.createMultiBody(1.0, collision, visual, physicsClientId=client)
    pb.changeDynamics(body, -1, lateralFriction=0.7, spinningFriction=0.001, rollingFriction=0.0,
                      restitution=0.0, physicsClientId=client)
    return body


def create_ground(client: int) -> int:
    """Ground whose collision is the spec's 200 m slab but whose visual is a 3 m tile.

    TinyRenderer's cost grows with screen-filling triangles; a small tile covers the camera views
    at a fraction of the plane's cost.
    """
    collision = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=(100.0, 100.0, 5.0), physicsClientId=client)
    visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=(1.5, 1.5, 5.0), rgbaColor=FLOOR_RGBA,
                                  physicsClientId=client)
    body = pb.createMultiBody(0.0, collision, visual, (0.0, 0.0, -5.0), physicsClientId=client)
    pb.changeDynamics(body, -1, lateralFriction=1.0, physicsClientId=client)
    return body


class Desk:
    """The desk body plus the button->LED and switch->lightbulb logic of §C.3."""

    def __init__(self, client: int, layout: SceneLayout) -> None:
        self._client = client
        self.layout = layout
        self.body_id = pb.loadURDF(cached_file(f"calvin_desk_{layout.name}", desk_urdf(layout)),
                                   useFixedBase=True, physicsClientId=client)
        for joint in (DESK_SLIDE, DESK_DRAWER, DESK_SWITCH):  # friction-like hold
            pb.setJointMotorControl2(self.body_id, joint, pb.VELOCITY_CONTROL, targetVelocity=0.0,
                                     force=DESK_MOTOR_FORCE, physicsClientId=client)
        pb.setJointMotorControl2(self.body_id, DESK_BUTTON, pb.POSITION_CONTROL, targetPosition=0.0,
                                 force=DESK_MOTOR_FORCE, physicsClientId=client)  # spring return
        self.led = 0
        self.lightbulb = 0
        self._button_on = False
        self._button_was_pressed = False
        self._switch_on = False

    def joint_positions(self) -> tuple[float, float, float, float]:
        """(slide, drawer, button, switch) joint positions, read in one query."""
        states = pb.getJointStates(self.body_id, (DESK_SLIDE, DESK_DRAWER, DESK_BUTTON, DESK_SWITCH),
                                   physicsClientId=self._client)
        return states[0][0], states[1][0], states[2][0], states[3][0]

    def reset(self, slide: float, drawer: float, button: float, switch: float, lightbulb: int, led: int) -> None:
        """Apply scene_obs[0:6] in upstream's order (§B.5 steps 1-4)."""
        c = self._client
        for joint, q in ((DESK_SLIDE, slide), (DESK_DRAWER, drawer)):
            pb.resetJointState(self.body_id, joint, q, 0.0, physicsClientId=c)
        self._set_led(int(round(led)))
        self._set_lightbulb(int(round(lightbulb)))
        pb.resetJointState(self.body_id, DESK_BUTTON, button, 0.0, physicsClientId=c)
        # HEAD copies the LED into the button.  Upstream keeps "previously pressed" across resets;
        # we clear it (its value in a fresh env) so an episode never depends on the one before.
        self._button_on = bool(self.led)
        self._button_was_pressed = False
        pb.resetJointState(self.body_id, DESK_SWITCH, switch, 0.0, physicsClientId=c)
        self._switch_on = False

    def update(self, button: float, switch: float) -> None:
        """One logic update after the physics substeps: button first, then switch (§C.3)."""
        pressed = button > BUTTON_TRIGGER
        if pressed and not self._button_was_pressed:
            self._button_on = not self._button_on
            self._set_led(int(self._button_on))
        self._button_was_pressed = pressed
        if switch > SWITCH_TRIGGER and not self._switch_on:
            self._set_lightbulb(1)
            self._switch_on = True
        elif switch <= SWITCH_TRIGGER and self._switch_on:
            self._set_lightbulb(0)
            self._switch_on = False

    def _set_led(self, state: int) -> None:
        pb.changeVisualShape(self.body_id, DESK_LED, rgbaColor=LED_RGBA[state], physicsClientId=self._client)
        self.led = state

    def _set_lightbulb(self, state: int) -> None:
        pb.changeVisualShape(self.body_id, DESK_LIGHTBULB, rgbaColor=LIGHTBULB_RGBA[state],
                             physicsClientId=self._client)
        self.lightbulb = state

    def point_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of a named desk point of :data:`DESK_POINTS` (the link's orientation)."""
        link, offset = DESK_POINTS[name]
        state = pb.getLinkState(self.body_id, link, computeForwardKinematics=True, physicsClientId=self._client)
        position, orientation = pb.multiplyTransforms(state[4], state[5], offset, (0, 0, 0, 1),
                                                      physicsClientId=self._client)
        return np.array(position), np.array(orientation)


def random_scene_obs(layout: SceneLayout, rng: np.random.Generator, max_tries: int = 1000) -> np.ndarray:
    """A plausible random scene_obs for non-evaluation resets (§D.3), in the scene's block order.

    Each block picks one of the three surfaces, a uniform position in it and a uniform yaw; the
    draw is repeated until no two footprints (as bounding circles, conservatively) overlap.
    Doors, drawer and lights are random end states, with the switch matching the bulb.
    """
    obs = np.zeros(6 + 6 * len(layout.block_order))
    lightbulb = int(rng.integers(2))
    obs[:6] = (
        layout.door_travel * rng.integers(2), DRAWER_TRAVEL * rng.integers(2), 0.0,
        SWITCH_TRAVEL * lightbulb, lightbulb, rng.integers(2),
    )
    radii = [math.hypot(*layout.block_size(c)[:2]) / 2 for c in layout.block_order]
    for _ in range(max_tries):
        picks = [layout.regions[int(rng.integers(3))] for _ in layout.block_order]
        xy = np.array([(rng.uniform(*r.x), rng.uniform(*r.y)) for r in picks])
        yaw = rng.uniform(-math.pi, math.pi, size=len(picks))
        if all(
            np.linalg.norm(xy[i] - xy[j]) > radii[i] + radii[j] + 0.005
            for i in range(len(picks))
            for j in range(i)
        ):
            break
    else:
        raise RuntimeError("could not place the blocks without contact")
    for i in range(len(picks)):
        obs[6 + 6 * i : 12 + 6 * i] = (xy[i, 0], xy[i, 1], picks[i].z, 0.0, 0.0, yaw[i])
    return obs
