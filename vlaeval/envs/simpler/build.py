"""Building the ``simpler`` scene from primitives: floor, walls, table, every task object,
receptacle and distractor, the one-drawer cabinet and the camera mount, in every sub-scene.

Everything any task needs is built once, so a reset only moves, parks and recolours bodies and
never reloads assets.  The order in which bodies are built fixes their simulator ids (and the
order PhysX solves them in), so it is part of the suite's results: change it only with
``SIMPLER_VERSION``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from vlaeval.envs.simpler.vulkan import use_software_vulkan_if_needed

use_software_vulkan_if_needed()  # before SAPIEN loads Vulkan

import numpy as np  # noqa: E402
import sapien  # noqa: E402
from mani_skill.envs.scene import ManiSkillScene  # noqa: E402
from mani_skill.utils import sapien_utils  # noqa: E402
from mani_skill.utils.structs.actor import Actor  # noqa: E402
from mani_skill.utils.structs.articulation import Articulation  # noqa: E402

from vlaeval.envs.simpler.catalogue import (  # noqa: E402
    BACKGROUNDS,
    CABINET_PARK,
    CABINETS,
    CAMERAS,
    DISTRACTOR_NAMES,
    DISTRACTORS,
    DRAWER_FLOOR_Z,
    DRAWER_LIMIT,
    FLOOR_Z,
    HANDLE_X,
    HANDLE_Z,
    OBJECTS,
    PARK,
    PARK_SLOTS,
    RECEPTACLES,
    TABLES,
)

_Y_UP = [math.cos(math.pi / 4), 0.0, -math.sin(math.pi / 4), 0.0]  # rotates +x onto +z (cylinder axis up)


@dataclass(frozen=True)
class SceneBodies:
    """Handles of everything built, each spanning all sub-scenes."""

    #: ``wall``/``floor``/``table``/``cabinet`` -> one material per sub-scene (recoloured per episode)
    materials: dict[str, list[Any]]
    floor: Actor
    wall: Actor
    table: Actor
    objects: dict[str, Actor]
    receptacles: dict[str, Actor]
    distractors: dict[str, Actor]
    cabinet: Articulation
    drawer_link: Any
    cam_mount: Actor
    #: body name -> half its height standing the right way up (centre above its support)
    half_height: dict[str, float]

    def actor(self, name: str) -> Actor:
        """A task object, receptacle or distractor by name."""
        for group in (self.objects, self.receptacles, self.distractors):
            if name in group:
                return group[name]
        raise KeyError(name)

    def movable(self) -> list[tuple[str, Actor]]:
        """Objects, receptacles and distractors, in the order a reset parks them."""
        return [*self.objects.items(), *self.receptacles.items(), *self.distractors.items()]


def build_scene(scene: ManiSkillScene, num_envs: int) -> SceneBodies:
    """Build every body in each of ``num_envs`` sub-scenes, parked out of view.

    What differs per variant (wall, floor, table and cabinet colours) lives in materials built
    per sub-scene (``scene_idxs`` builders merged into one view), because a material shared
    across sub-scenes would recolour every sub-environment at once.
    """
    materials: dict[str, list[Any]] = {
        name: [material(colour, roughness) for _ in range(num_envs)]
        for name, colour, roughness in (("wall", BACKGROUNDS["base"]["wall"], 0.9),
                                        ("floor", BACKGROUNDS["base"]["floor"], 0.9),
                                        ("table", TABLES["base"], 0.6), ("cabinet", CABINETS["base"], 0.5))
    }

    def static_per_scene(name: str, make_builder: Callable[[ManiSkillScene, dict[str, Any]], Any]) -> Actor:
        """One static body per sub-scene with that sub-scene's materials, merged into one view."""
        parts = []
        for i in range(num_envs):
            b = make_builder(scene, {k: v[i] for k, v in materials.items()})
            b.set_scene_idxs([i])
            parts.append(b.build_static(name=f"{name}_{i}"))
        return Actor.merge(parts, name=name)

    floor = static_per_scene("floor", _floor_builder)
    wall = static_per_scene("wall", _wall_builder)  # in front of and behind the robot
    table = static_per_scene("table", _table_builder)

    half_height: dict[str, float] = {}
    objects = {}
    for name, (shape, size, colour) in OBJECTS.items():
        objects[name], half_height[name] = _build_object(scene, name, shape, size, colour)
    receptacles = {}
    for name, (size, colour) in RECEPTACLES.items():
        receptacles[name], half_height[name] = _build_receptacle(scene, name, size, colour)
    distractors = {}
    for name, (shape, size, colour) in zip(DISTRACTOR_NAMES, DISTRACTORS):
        distractors[name], half_height[name] = _build_object(scene, name, shape, size, colour)
    cabinets = []
    for i in range(num_envs):
        ab = _cabinet_builder(scene, materials["cabinet"][i])
        ab.set_scene_idxs([i])
        cabinets.append(ab.build(name=f"cabinet_{i}", fix_root_link=True))
    cabinet = Articulation.merge(cabinets, name="cabinet", merge_links=True)
    drawer_link = next(link for link in cabinet.links if link.name.endswith("drawer"))
    b = scene.create_actor_builder()
    b.initial_pose = sapien_utils.look_at(*CAMERAS["base"])
    cam_mount = b.build_kinematic(name="camera_mount")
    return SceneBodies(materials, floor, wall, table, objects, receptacles, distractors, cabinet, drawer_link,
                       cam_mount, half_height)


def material(colour: tuple[float, float, float], roughness: float = 0.7, metallic: float = 0.0) -> Any:
    return sapien.render.RenderMaterial(base_color=[*colour, 1.0], roughness=roughness, metallic=metallic)


def park_pose(name: str, hz: float) -> sapien.Pose:
    """Where body ``name`` (half height ``hz``) rests while its task is not played: its own spot on
    the floor behind the cameras."""
    slot = PARK_SLOTS[name]
    return sapien.Pose(p=[PARK[0] + 0.25 * (slot % 8), PARK[1] + 0.25 * (slot // 8), FLOOR_Z + hz + 0.002])


def _floor_builder(scene: ManiSkillScene, mats: dict[str, Any]) -> Any:
    b = scene.create_actor_builder()
    b.add_box_collision(half_size=[10, 10, 0.05])
    b.add_box_visual(half_size=[10, 10, 0.05], material=mats["floor"])
    b.initial_pose = sapien.Pose(p=[0, 0, FLOOR_Z - 0.05])
    return b


def _wall_builder(scene: ManiSkillScene, mats: dict[str, Any]) -> Any:
    b = scene.create_actor_builder()
    b.add_box_visual(half_size=[0.02, 3.0, 1.5], material=mats["wall"])
    b.add_box_visual(pose=sapien.Pose(p=[-2.8, 0, 0]), half_size=[0.02, 3.0, 1.5], material=mats["wall"])
    b.initial_pose = sapien.Pose(p=[1.2, 0, 0.5])
    return b


def _table_builder(scene: ManiSkillScene, mats: dict[str, Any]) -> Any:
    b = scene.create_actor_builder()
    half = [0.6, 0.75, (0 - FLOOR_Z) / 2]
    b.add_box_collision(half_size=half)
    b.add_box_visual(half_size=half, material=mats["table"])
    b.initial_pose = sapien.Pose(p=[-0.2, 0, FLOOR_Z / 2])
    return b


def _build_object(scene: ManiSkillScene, name: str, shape: str, size: tuple[float, ...],
                  colour: tuple[float, float, float]) -> tuple[Actor, float]:
    """A dynamic body of a primitive ``shape``; returns it and its half height."""
    b = scene.create_actor_builder()
    mat = material(colour, 0.5)
    phys = sapien.pysapien.physx.PhysxMaterial(static_friction=1.0, dynamic_friction=1.0, restitution=0.0)
    if shape == "box":
        b.add_box_collision(half_size=size, material=phys, density=300)
        b.add_box_visual(half_size=size, material=mat)
        hz = size[2]
    elif shape == "can":
        r, hh = size
        pose = sapien.Pose(q=_Y_UP)
        b.add_cylinder_collision(pose=pose, radius=r, half_length=hh, material=phys, density=300)
        b.add_cylinder_visual(pose=pose, radius=r, half_length=hh, material=mat)
        hz = hh
    elif shape == "sphere":  # fruit: a sphere that does not roll (upright-cylinder collision)
        r = size[0]
        b.add_cylinder_collision(pose=sapien.Pose(q=_Y_UP), radius=r * 0.95, half_length=r, material=phys,
                                 density=300)
        b.add_sphere_visual(radius=r, material=mat)
        hz = r
    elif shape == "capsule":  # carrot, eggplant: capsule look, flat-sided box collision (no rolling)
        r, hl = size
        b.add_box_collision(half_size=[hl + r * 0.8, r * 0.9, r], material=phys, density=300)
        b.add_capsule_visual(radius=r, half_length=hl, material=mat)
        hz = r
    else:
        raise ValueError(shape)
    b.initial_pose = park_pose(name, hz)
    return b.build(name=name), hz


def _build_receptacle(scene: ManiSkillScene, name: str, size: tuple[float, ...],
                      colour: tuple[float, float, float]) -> tuple[Actor, float]:
    """A kinematic towel, plate or (open-topped) basket; returns it and its half height."""
    b = scene.create_actor_builder()
    mat = material(colour, 0.8)
    if name == "plate":
        r, hh = size
        pose = sapien.Pose(q=_Y_UP)
        b.add_cylinder_collision(pose=pose, radius=r, half_length=hh)
        b.add_cylinder_visual(pose=pose, radius=r, half_length=hh, material=mat)
        hz = hh
    elif name == "basket":
        hx, hy, hz = size
        t = 0.006
        parts = [((0, 0, -hz + t / 2), (hx, hy, t / 2))]
        parts += [((sx * (hx - t / 2), 0, 0), (t / 2, hy, hz)) for sx in (-1, 1)]
        parts += [((0, sy * (hy - t / 2), 0), (hx, t / 2, hz)) for sy in (-1, 1)]
        for p, h in parts:
            b.add_box_collision(pose=sapien.Pose(p=p), half_size=h)
            b.add_box_visual(pose=sapien.Pose(p=p), half_size=h, material=mat)
    else:
        b.add_box_collision(half_size=size)
        b.add_box_visual(half_size=size, material=mat)
        hz = size[2]
    b.initial_pose = park_pose(name, hz)
    return b.build_kinematic(name=name), hz


def _cabinet_builder(scene: ManiSkillScene, mat: Any) -> Any:
    """A cabinet with one prismatic drawer (positive qpos opens it towards the robot) and a bar handle."""
    ab = scene.create_articulation_builder()
    handle_mat = material((0.15, 0.15, 0.15), 0.3, 0.8)
    body = ab.create_link_builder()
    body.set_name("cabinet_body")

    def box(link, lo, hi, surface=mat, collision=True):
        lo, hi = np.array(lo), np.array(hi)
        pose = sapien.Pose(p=((lo + hi) / 2).tolist())
        half = ((hi - lo) / 2).tolist()
        if collision:
            link.add_box_collision(pose=pose, half_size=half)
        link.add_box_visual(pose=pose, half_size=half, material=surface)

    box(body, (-0.15, -0.2, 0.0), (0.15, 0.2, 0.10))  # solid base
    box(body, (-0.15, -0.2, 0.20), (0.15, 0.2, 0.22))  # top
    box(body, (-0.15, -0.2, 0.10), (0.15, -0.18, 0.20))  # sides
    box(body, (-0.15, 0.18, 0.10), (0.15, 0.2, 0.20))
    box(body, (0.13, -0.18, 0.10), (0.15, 0.18, 0.20))  # back
    drawer = ab.create_link_builder(body)
    drawer.set_name("drawer")
    drawer.set_joint_name("drawer_joint")
    flip = sapien.Pose(q=[0, 0, 0, 1])  # joint axis = -x: positive qpos opens towards the robot
    drawer.set_joint_properties("prismatic", limits=[[0.0, DRAWER_LIMIT]], pose_in_parent=flip,
                                pose_in_child=flip, friction=0.0, damping=5.0)
    box(drawer, (-0.15, -0.17, 0.105), (0.12, 0.17, DRAWER_FLOOR_Z))  # floor
    box(drawer, (-0.16, -0.175, 0.105), (-0.14, 0.175, 0.196))  # front panel
    box(drawer, (0.11, -0.17, DRAWER_FLOOR_Z), (0.12, 0.17, 0.18))  # back wall
    box(drawer, (-0.14, -0.17, DRAWER_FLOOR_Z), (0.11, -0.16, 0.18))  # side walls
    box(drawer, (-0.14, 0.16, DRAWER_FLOOR_Z), (0.11, 0.17, 0.18))
    box(drawer, (HANDLE_X - 0.0075, -0.08, HANDLE_Z - 0.01), (HANDLE_X + 0.0075, 0.08, HANDLE_Z + 0.01), handle_mat)
    for sy in (-1, 1):  # standoffs
        box(drawer, (HANDLE_X + 0.0075, sy * 0.08 - 0.006, HANDLE_Z - 0.01), (-0.16, sy * 0.08 + 0.006, HANDLE_Z + 0.01),
            handle_mat)
    ab.initial_pose = sapien.Pose(p=list(CABINET_PARK))
    return ab
