"""``vlaeval/Simpler-v0``: every ``simpler`` task in one ManiSkill3 scene, chosen per episode.

Three layers:

* :class:`SimplerSceneEnv` (ManiSkill id ``vlaeval-SimplerScene-v0``) builds, once, a table, a
  background wall, a one-drawer cabinet (articulation builder), every task object (cans, cubes,
  apple, orange, sponge, spoon, carrot, eggplant, plate, towel, basket) and a distractor pool, all
  from primitives, in each of its ``num_envs`` sub-scenes; ``_initialize_episode`` places the
  objects of each reset sub-environment's task and parks the others out of view, and applies the
  variant (colours, lights, distractors, camera pose) without reconfiguring, so one instance
  serves every task and variant, and its sub-environments can all play different ones.  On the
  CPU backend a reset after simulated steps rebuilds the PhysX scene first (see
  :meth:`SimplerSceneEnv.reset`), so an episode depends only on its seed and options.
* :class:`SimplerBatch` runs one episode per sub-environment ("slot") for the harness: suite
  action convention (:mod:`vlaeval.envs.simpler.actions`), numpy observations, SimplerEnv's
  episode rules (:class:`EpisodeTracker`: per-task step budget, success read at the last step,
  partial success, the two-stage drawer task) and the greenscreen overlay.
* :class:`SimplerEnv` (Gymnasium id ``vlaeval/Simpler-v0``) is a one-slot batch behind the
  Gymnasium API; :class:`vlaeval.envs.simpler.pool.SimplerBatchPool` is a many-slot batch on the
  GPU backend behind the evaluator's pool interface.

On CPU the simulation uses ``sim_backend="cpu"`` and one environment; rendering needs a Vulkan
driver (Mesa lavapipe >= 24.3 on machines without a GPU).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from vlaeval.envs.simpler.vulkan import use_software_vulkan_if_needed

use_software_vulkan_if_needed()  # before SAPIEN loads Vulkan

import gymnasium  # noqa: E402
import numpy as np
import sapien
import torch
from gymnasium import spaces
from mani_skill.agents.registration import register_agent
from mani_skill.agents.robots.panda.panda import Panda
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.registration import register_env
from mani_skill.utils.structs.actor import Actor
from mani_skill.utils.structs.articulation import Articulation
from mani_skill.utils.structs.types import SimConfig

from vlaeval.envs.simpler.actions import ROT_BOUND, probe_scale, to_controller
from vlaeval.envs.simpler.overlay import composite, load_background
from vlaeval.envs.simpler.spec import AXES, BASE_VARIANT, TASK_INFO

ROBOT_XY = (-0.615, 0.0)
FLOOR_Z = -0.76
CABINET_POSE = (0.30, 0.0, -0.04)  # cabinet origin in drawer tasks (front face at x = 0.15; base sunk 4 cm)
PARK = (3.0, 0.0)  # parked objects rest on the floor behind the cameras (outside every view frustum)
SIM_FREQ, CONTROL_FREQ = 100, 5
MAX_INSTRUCTION_LENGTH = 256

# ---- appearance tables (variant axis value -> parameters) -----------------------------------

BACKGROUNDS = {
    "base": {"wall": (0.82, 0.82, 0.78), "floor": (0.45, 0.42, 0.40)},
    "alt_background_1": {"wall": (0.35, 0.45, 0.65), "floor": (0.30, 0.30, 0.35)},
    "alt_background_2": {"wall": (0.55, 0.70, 0.45), "floor": (0.60, 0.52, 0.38)},
}
LIGHTING = {"base": 1.0, "brighter": 1.64, "darker": 0.36}  # SimplerEnv 2.2 -> 3.6 / 0.8
TABLES = {
    "base": (0.62, 0.50, 0.38),
    "alt_table_1": (0.28, 0.28, 0.30),
    "alt_table_2": (0.86, 0.86, 0.90),
}
CABINETS = {
    "base": (0.55, 0.40, 0.28),
    "alt_cabinet_1": (0.90, 0.90, 0.88),
    "alt_cabinet_2": (0.20, 0.25, 0.35),
}
DISTRACTOR_COUNT = {"none": 0, "less": 3, "more": 5}
CAMERAS = {  # eye, target
    "base": ((0.50, 0.30, 0.80), (-0.25, 0.0, 0.0)),
    "alt_camera_1": ((0.50, -0.36, 0.72), (-0.25, 0.0, 0.0)),
    "alt_camera_2": ((0.62, 0.05, 1.00), (-0.25, 0.0, 0.0)),
}

#: name -> (shape, size, colour); sizes are half-extents / radii (metres).
OBJECTS: dict[str, tuple[str, tuple[float, ...], tuple[float, float, float]]] = {
    "coke_can": ("can", (0.033, 0.061), (0.80, 0.05, 0.05)),
    "pepsi_can": ("can", (0.033, 0.061), (0.10, 0.20, 0.75)),
    "sevenup_can": ("can", (0.033, 0.061), (0.15, 0.65, 0.20)),
    "apple": ("sphere", (0.03,), (0.75, 0.12, 0.10)),
    "orange": ("sphere", (0.032,), (0.95, 0.55, 0.05)),
    "sponge": ("box", (0.045, 0.03, 0.022), (0.20, 0.75, 0.65)),
    "green_cube": ("box", (0.02, 0.02, 0.02), (0.10, 0.70, 0.15)),
    "yellow_cube": ("box", (0.02, 0.02, 0.02), (0.95, 0.85, 0.10)),
    "spoon": ("box", (0.06, 0.012, 0.008), (0.75, 0.75, 0.78)),
    "carrot": ("capsule", (0.016, 0.04), (0.95, 0.45, 0.05)),
    "eggplant": ("capsule", (0.024, 0.045), (0.35, 0.10, 0.45)),
}
#: kinematic receptacles: name -> (half extents or radius/half height, colour)
RECEPTACLES = {
    "towel": ((0.07, 0.07, 0.003), (0.30, 0.45, 0.80)),
    "plate": ((0.075, 0.006), (0.95, 0.95, 0.95)),
    "basket": ((0.10, 0.09, 0.035), (0.95, 0.80, 0.15)),
}
DISTRACTORS = [
    ("box", (0.025, 0.025, 0.03), (0.6, 0.2, 0.6)),
    ("can", (0.028, 0.05), (0.9, 0.9, 0.2)),
    ("box", (0.04, 0.02, 0.015), (0.2, 0.5, 0.9)),
    ("sphere", (0.028,), (0.9, 0.4, 0.6)),
    ("can", (0.03, 0.04), (0.3, 0.8, 0.8)),
]

# cabinet geometry (origin: centre of the footprint at table height; drawer slides towards -x)
DRAWER_LIMIT = 0.22
HANDLE_X, HANDLE_Z = -0.21, 0.17  # handle bar centre at qpos 0 (cabinet frame)
DRAWER_FLOOR_Z = 0.115
DRAWER_INNER = (-0.14, 0.11, 0.16)  # x from, x to (qpos 0), |y| bound of the tray interior


def _material(colour, roughness=0.7, metallic=0.0):
    return sapien.render.RenderMaterial(base_color=[*colour, 1.0], roughness=roughness, metallic=metallic)


def _quat_z(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


_Y_UP = [math.cos(math.pi / 4), 0.0, -math.sin(math.pi / 4), 0.0]  # rotates +x onto +z (cylinder axis up)


@register_agent()
class PandaSimpler(Panda):
    """ManiSkill's Panda with a wider per-step rotation bound (±0.5 rad) on ``pd_ee_delta_pose``."""

    uid = "panda_simpler"

    @property
    def _controller_configs(self):
        configs = super()._controller_configs
        arm = configs["pd_ee_delta_pose"]["arm"]
        arm.rot_lower, arm.rot_upper = -ROT_BOUND, ROT_BOUND
        return configs


@dataclass
class SceneEpisode:
    """What one sub-environment is playing: set by ``_initialize_episode``, read by ``evaluate_env``."""

    task: str = "pick_coke_can"
    layout: dict[str, Any] = field(default_factory=dict)
    variant: dict[str, str] = field(default_factory=lambda: dict(BASE_VARIANT))
    active: dict[str, Any] = field(default_factory=dict)  # the task's objects and their start state


@register_env("vlaeval-SimplerScene-v0", max_episode_steps=None)
class SimplerSceneEnv(BaseEnv):
    """Every task's objects in every sub-scene; each sub-environment plays its own task and variant.

    All sub-scenes hold the same bodies (tasks differ only by which objects are placed and which
    are parked), so one batched GPU scene serves any mix of tasks.  What differs per variant
    (wall, floor, table and cabinet colours) lives in materials that are built per sub-scene
    (``scene_idxs`` builders merged into one view), because a material shared across sub-scenes
    would recolour every sub-environment at once.
    """

    SUPPORTED_ROBOTS = ["panda_simpler"]

    def __init__(self, *args, robot_uids="panda_simpler", image_size=(224, 224), **kwargs):
        self.image_size = tuple(image_size)
        self.episodes: list[SceneEpisode] = [SceneEpisode() for _ in range(kwargs.get("num_envs", 1))]
        self._simulated_since_build = False  # read by the reset that ManiSkill does at construction
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    def reset(self, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """ManiSkill's reset, on a newly built scene if this one has been simulated (CPU backend).

        PhysX keeps state that no pose, velocity or joint write clears: contact pairs with their
        friction anchors and warm-start impulses, and the order in which pairs and constraints are
        solved, which follows the scene's history.  An episode played on a reused scene therefore
        drifts from the same episode on a fresh one (about 2e-6 m of object pose within two
        steps, up to 1e-2 m once the gripper has closed on something).  Removing and re-adding
        every body clears the caches but not the order; only a new scene clears both.  The
        rebuild (ManiSkill's reconfigure) takes about 0.2 s, most of it the ``gc.collect()`` in
        ManiSkill's ``_clear``, and is skipped when nothing was simulated since the last one
        (resets in a row).  On the GPU backend slots are reset while the others keep running,
        which a rebuild would end, so the scene is kept there.
        """
        options = dict(options or {})
        if self._simulated_since_build and not self.gpu_sim_enabled:
            options["reconfigure"] = True
        return super().reset(seed=seed, options=options)

    def _after_reconfigure(self, options: dict) -> None:
        super()._after_reconfigure(options)
        self._simulated_since_build = False

    def _after_simulation_step(self) -> None:
        super()._after_simulation_step()
        self._simulated_since_build = True

    @property
    def layout(self) -> dict[str, Any]:
        """Sub-environment 0's layout: the view of privileged agents, which run on one env."""
        return self.episodes[0].layout

    # ---- configuration ----------------------------------------------------------------------

    @property
    def _default_sim_config(self):
        return SimConfig(sim_freq=SIM_FREQ, control_freq=CONTROL_FREQ)

    @property
    def _default_sensor_configs(self):
        h, w = self.image_size
        return [CameraConfig("camera", pose=sapien.Pose(), width=w, height=h, fov=1.0, near=0.01, far=10.0,
                             mount=self.cam_mount)]

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at(*CAMERAS["base"])
        return CameraConfig("render_camera", pose=pose, width=448, height=448, fov=1.0, near=0.01, far=10.0)

    def _load_agent(self, options: dict):
        super()._load_agent(options, sapien.Pose(p=[*ROBOT_XY, 0.0]))

    def _load_lighting(self, options: dict):
        self.scene.set_ambient_light([0.3, 0.3, 0.3])
        self.scene.add_directional_light([1, 1, -1], [1, 1, 1], shadow=False, shadow_scale=5, shadow_map_size=2048)
        self.scene.add_directional_light([0, 0, -1], [1, 1, 1])

    def _load_scene(self, options: dict):
        #: material name -> one material per sub-scene (recoloured per episode by _apply_appearance)
        self.materials: dict[str, list[Any]] = {
            name: [_material(colour, roughness) for _ in range(self.num_envs)]
            for name, colour, roughness in (("wall", BACKGROUNDS["base"]["wall"], 0.9),
                                            ("floor", BACKGROUNDS["base"]["floor"], 0.9),
                                            ("table", TABLES["base"], 0.6), ("cabinet", CABINETS["base"], 0.5))
        }
        self.floor = self._build_static_per_scene("floor", self._floor_builder)
        self.wall = self._build_static_per_scene("wall", self._wall_builder)  # in front of and behind the robot
        self.table = self._build_static_per_scene("table", self._table_builder)

        self.objects: dict[str, Any] = {}
        self.half_height: dict[str, float] = {}
        for i, (name, (shape, size, colour)) in enumerate(OBJECTS.items()):
            self.objects[name] = self._build_object(name, shape, size, colour, i)
        self.receptacles: dict[str, Any] = {}
        for i, (name, (size, colour)) in enumerate(RECEPTACLES.items()):
            self.receptacles[name] = self._build_receptacle(name, size, colour, i)
        self.distractors = [
            self._build_object(f"distractor_{i}", shape, size, colour, 20 + i)
            for i, (shape, size, colour) in enumerate(DISTRACTORS)
        ]
        cabinets = []
        for i in range(self.num_envs):
            ab = self._cabinet_builder(self.materials["cabinet"][i])
            ab.set_scene_idxs([i])
            cabinets.append(ab.build(name=f"cabinet_{i}", fix_root_link=True))
        self.cabinet = Articulation.merge(cabinets, name="cabinet", merge_links=True)
        self.drawer_link = next(link for link in self.cabinet.links if link.name.endswith("drawer"))
        b = self.scene.create_actor_builder()
        b.initial_pose = sapien_utils.look_at(*CAMERAS["base"])
        self.cam_mount = b.build_kinematic(name="camera_mount")

    def _build_static_per_scene(self, name: str, make_builder) -> Actor:
        """One static body per sub-scene with that sub-scene's materials, merged into one view."""
        parts = []
        for i in range(self.num_envs):
            b = make_builder({k: v[i] for k, v in self.materials.items()})
            b.set_scene_idxs([i])
            parts.append(b.build_static(name=f"{name}_{i}"))
        return Actor.merge(parts, name=name)

    def _floor_builder(self, mats):
        b = self.scene.create_actor_builder()
        b.add_box_collision(half_size=[10, 10, 0.05])
        b.add_box_visual(half_size=[10, 10, 0.05], material=mats["floor"])
        b.initial_pose = sapien.Pose(p=[0, 0, FLOOR_Z - 0.05])
        return b

    def _wall_builder(self, mats):
        b = self.scene.create_actor_builder()
        b.add_box_visual(half_size=[0.02, 3.0, 1.5], material=mats["wall"])
        b.add_box_visual(pose=sapien.Pose(p=[-2.8, 0, 0]), half_size=[0.02, 3.0, 1.5], material=mats["wall"])
        b.initial_pose = sapien.Pose(p=[1.2, 0, 0.5])
        return b

    def _table_builder(self, mats):
        b = self.scene.create_actor_builder()
        half = [0.6, 0.75, (0 - FLOOR_Z) / 2]
        b.add_box_collision(half_size=half)
        b.add_box_visual(half_size=half, material=mats["table"])
        b.initial_pose = sapien.Pose(p=[-0.2, 0, FLOOR_Z / 2])
        return b

    def _park_pose(self, slot: int, hz: float) -> sapien.Pose:
        return sapien.Pose(p=[PARK[0] + 0.25 * (slot % 8), PARK[1] + 0.25 * (slot // 8), FLOOR_Z + hz + 0.002])

    def _build_object(self, name, shape, size, colour, slot):
        b = self.scene.create_actor_builder()
        mat = _material(colour, 0.5)
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
        b.initial_pose = self._park_pose(slot, hz)
        actor = b.build(name=name)
        self.half_height[name] = hz
        return actor

    def _build_receptacle(self, name, size, colour, slot):
        b = self.scene.create_actor_builder()
        mat = _material(colour, 0.8)
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
        b.initial_pose = self._park_pose(40 + slot, hz)
        self.half_height[name] = hz
        return b.build_kinematic(name=name)

    def _cabinet_builder(self, mat):
        ab = self.scene.create_articulation_builder()
        handle_mat = _material((0.15, 0.15, 0.15), 0.3, 0.8)
        body = ab.create_link_builder()
        body.set_name("cabinet_body")

        def box(link, lo, hi, material=mat, collision=True):
            lo, hi = np.array(lo), np.array(hi)
            pose = sapien.Pose(p=((lo + hi) / 2).tolist())
            half = ((hi - lo) / 2).tolist()
            if collision:
                link.add_box_collision(pose=pose, half_size=half)
            link.add_box_visual(pose=pose, half_size=half, material=material)

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
        ab.initial_pose = sapien.Pose(p=[3.0, 3.0, FLOOR_Z])
        return ab

    # ---- episodes ---------------------------------------------------------------------------

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        """Set up each sub-environment of ``env_idx`` for its own episode.

        ``options["episodes"]`` holds one dict per entry of ``env_idx`` (``task``, ``layout``,
        ``variant``, ``placement_seed``; see :func:`scene_episode_options`); without it (the reset
        that ManiSkill does at construction) every sub-environment gets the default episode.
        Sub-environments are set up one at a time with ManiSkill's reset mask narrowed to that one,
        so every pose and joint write lands in its sub-scene only and others keep running.
        """
        options = options or {}
        indices = [int(i) for i in env_idx.tolist()]
        requests = options.get("episodes") or [scene_episode_options(None, {}) for _ in indices]
        if len(requests) != len(indices):
            raise ValueError(f"{len(indices)} sub-environments to reset but {len(requests)} episodes given")
        mask = self.scene._reset_mask
        try:
            for i, request in zip(indices, requests):
                self.scene._reset_mask = torch.zeros_like(mask)
                self.scene._reset_mask[i] = True
                self._initialize_one(i, request)
        finally:
            self.scene._reset_mask = mask

    def _initialize_one(self, i: int, request: dict[str, Any]) -> None:
        task = request["task"]
        ep = self.episodes[i] = SceneEpisode(task, dict(request["layout"] or self._default_layout(task)),
                                             dict(request["variant"]))
        rng = np.random.default_rng(request["placement_seed"])
        with torch.device(self.device):
            robot_xy = ep.layout.get("robot_xy", ROBOT_XY)
            self.agent.robot.set_pose(sapien.Pose(p=[robot_xy[0], robot_xy[1], 0.0]))
            qpos = self.agent.keyframes["rest"].qpos
            self.agent.reset(torch.tensor(qpos, dtype=torch.float32)[None])
            for slot, (name, actor) in enumerate(self.objects.items()):
                self._place(actor, self._park_pose(slot, self.half_height[name]))
            for slot, (name, actor) in enumerate(self.receptacles.items()):
                self._place(actor, self._park_pose(40 + slot, self.half_height[name]))
            for slot, actor in enumerate(self.distractors):
                self._place(actor, self._park_pose(20 + slot, self.half_height[actor.name]))
            self.cabinet.set_root_pose(sapien.Pose(p=[3.0, 3.0, FLOOR_Z]))
            self.cabinet.set_qpos(torch.zeros((1, 1)))
            self.cabinet.set_qvel(torch.zeros((1, 1)))
            ep.active = getattr(self, f"_setup_{TASK_INFO[task].family}")(i, ep)
            self._place_distractors(i, ep, rng)
            self._apply_appearance(i, ep.variant)

    @staticmethod
    def _default_layout(task: str) -> dict[str, Any]:
        from vlaeval.envs.simpler.episodes import task_layouts

        return task_layouts(task)[0]

    def _place(self, actor, pose: sapien.Pose):
        actor.set_pose(pose)
        if not actor.px_body_type == "kinematic" and hasattr(actor, "set_linear_velocity"):
            actor.set_linear_velocity(torch.zeros((1, 3)))
            actor.set_angular_velocity(torch.zeros((1, 3)))

    def actor(self, name: str):
        """A task object or receptacle by name."""
        return self.objects[name] if name in self.objects else self.receptacles[name]

    def _put(self, name: str, xy, yaw: float = 0.0, q=None):
        actor = self.actor(name)
        hz = self.half_height[name]
        if q is None:
            q = _quat_z(yaw)
        self._place(actor, sapien.Pose(p=[xy[0], xy[1], hz + 0.001], q=q))
        return actor

    def _setup_pick(self, i: int, ep: SceneEpisode) -> dict[str, Any]:
        lay = ep.layout
        xy = lay["obj_xy"]
        orientation = lay["orientation"]
        if orientation == "upright":
            actor = self._put("coke_can", xy)
        else:
            # laid on its side: cylinder axis along y ("horizontal") or along x ("vertical")
            r = OBJECTS["coke_can"][1][0]
            yaw = math.pi / 2 if orientation == "horizontal" else 0.0
            q = _quat_z(yaw)
            actor = self.objects["coke_can"]
            self._place(actor, sapien.Pose(p=[xy[0], xy[1], r + 0.001], q=_qmul(q, _LAY_DOWN)))
        return {"source": "coke_can", "z0": float(actor.pose.p[i, 2])}

    def _setup_move_near(self, i: int, ep: SceneEpisode) -> dict[str, Any]:
        lay = ep.layout
        for name, xy in zip(lay["objects"], lay["xy"]):
            self._put(name, xy)
        return {
            "objects": list(lay["objects"]),
            "source": lay["objects"][lay["source"]],
            "target": lay["objects"][lay["target"]],
            "start": {n: self._p(n, i).copy() for n in lay["objects"]},
        }

    def _setup_drawer(self, i: int, ep: SceneEpisode) -> dict[str, Any]:
        lay = ep.layout
        self.cabinet.set_root_pose(sapien.Pose(p=list(CABINET_POSE)))
        self.cabinet.set_qpos(torch.tensor([[float(lay.get("drawer_qpos", 0.0))]]))
        if ep.task != "place_apple_in_closed_drawer":
            return {}
        self._put("apple", lay["apple_xy"])
        return {"source": "apple"}

    def _setup_bridge(self, i: int, ep: SceneEpisode) -> dict[str, Any]:
        lay = ep.layout
        self._put(lay["target"], lay["target_xy"])
        self._put(lay["source"], lay["source_xy"], yaw=float(lay.get("source_yaw", 0.0)))
        return {"source": lay["source"], "target": lay["target"]}

    def _place_distractors(self, i: int, ep: SceneEpisode, rng: np.random.Generator):
        n = DISTRACTOR_COUNT[ep.variant["distractors"]]
        if n == 0:
            return
        occupied = [a.pose.p[i, :2].cpu().numpy() for a in (*self.objects.values(), *self.receptacles.values())
                    if float(a.pose.p[i, 2]) > FLOOR_Z + 0.2]
        if ep.task in ("open_drawer", "close_drawer", "place_apple_in_closed_drawer"):
            occupied.append(np.array([-0.2, 0.0]))
        for actor in self.distractors[:n]:
            for _ in range(200):
                xy = np.array([rng.uniform(-0.32, 0.02), rng.uniform(-0.3, 0.3)])
                if all(np.linalg.norm(xy - o) > 0.12 for o in occupied):
                    break
            occupied.append(xy)
            self._place(actor, sapien.Pose(p=[xy[0], xy[1], self.half_height[actor.name] + 0.001],
                                           q=_quat_z(rng.uniform(0, math.pi))))

    def _apply_appearance(self, i: int, v: dict[str, str]):
        bg = BACKGROUNDS[v["background"]]
        self.materials["wall"][i].base_color = [*bg["wall"], 1.0]
        self.materials["floor"][i].base_color = [*bg["floor"], 1.0]
        self.materials["table"][i].base_color = [*TABLES[v["table"]], 1.0]
        self.materials["cabinet"][i].base_color = [*CABINETS[v["cabinet"]], 1.0]
        scale = LIGHTING[v["lighting"]]
        rs = self.scene.sub_scenes[i].render_system
        rs.ambient_light = [0.3 * scale] * 3
        for light in rs.lights:
            light.color = [scale] * 3
        eye, target = CAMERAS[v["camera"]]
        self.cam_mount.set_pose(sapien_utils.look_at(eye, target))  # the reset mask selects sub-scene i

    # ---- evaluation -------------------------------------------------------------------------

    def _contact(self, a, b, i: int) -> float:
        return float(torch.linalg.norm(self.scene.get_pairwise_contact_forces(a, b), dim=-1)[i])

    def _p(self, name: str, i: int) -> np.ndarray:
        return self.actor(name).pose.p[i].cpu().numpy()

    def drawer_qpos(self, i: int) -> float:
        return float(self.cabinet.get_qpos()[i, 0])

    def evaluate(self) -> dict[str, Any]:
        """ManiSkill's per-step hook: nothing (no ``success`` key, so ManiSkill never terminates).

        The harness reads :meth:`evaluate_env` for the sub-environments whose episodes advanced.
        """
        return {}

    def evaluate_env(self, i: int) -> dict[str, Any]:
        """Per-step predicates of sub-environment ``i``'s task (numbers, not tensors): ``success_now``
        and ``grasped`` plus task-specific fields the harness aggregates over the episode."""
        ep = self.episodes[i]
        task, act = ep.task, ep.active
        out: dict[str, Any] = {"success_now": False, "grasped": False}
        family = TASK_INFO[task].family
        src = act.get("source")
        if src is not None:
            out["grasped"] = bool(self.agent.is_grasping(self.objects[src], max_angle=85)[i])
        if family == "pick":
            z = float(self._p(src, i)[2])
            touching = self._contact(self.objects[src], self.table, i) > 1e-6
            out["lift"] = z - act["z0"]
            out["success_now"] = out["grasped"] and not touching and z > act["z0"] + 0.01
        elif family == "move_near":
            out["success_now"] = self._move_near_success(i, act)
        elif family == "drawer":
            q = self.drawer_qpos(i)
            out["drawer_qpos"] = q
            q0 = float(ep.layout.get("drawer_qpos", 0.0))
            # partial success of open/close: the drawer moved >= 2 cm the right way
            out["drawer_moved"] = (q - q0 >= 0.02) if task != "close_drawer" else (q0 - q >= 0.02)
            if task == "open_drawer":
                out["success_now"] = q >= 0.15
            elif task == "close_drawer":
                out["success_now"] = q <= 0.05
            else:
                apple = self._p("apple", i)
                out["apple_on_drawer_floor"] = self._contact(self.objects["apple"], self.drawer_link, i) > 1e-6
                x0 = CABINET_POSE[0] + DRAWER_INNER[0] - q
                x1 = CABINET_POSE[0] + DRAWER_INNER[1] - q
                out["apple_in_drawer"] = bool(x0 <= apple[0] <= x1 and abs(apple[1] - CABINET_POSE[1]) <= DRAWER_INNER[2]
                                              and apple[2] < CABINET_POSE[2] + DRAWER_FLOOR_Z + 0.06)
                out["success_now"] = q >= 0.05 and out["apple_in_drawer"]
        else:
            out["success_now"] = self._on_target(src, act["target"], i)
        return out

    def _move_near_success(self, i: int, act: dict[str, Any]) -> bool:
        pos = {n: self._p(n, i) for n in act["objects"]}
        start = act["start"]
        src, tgt = act["source"], act["target"]
        moved = {n: float(np.linalg.norm(pos[n][:2] - start[n][:2])) for n in pos}
        for n in pos:
            drop = start[n][2] - pos[n][2]
            if drop > (0.15 if n in (src, tgt) else 0.02):
                return False
        if moved[src] < 0.03 or any(moved[src] <= moved[n] for n in pos if n != src):
            return False
        diag = {n: _half_diag(n) for n in pos}
        d_tgt = float(np.linalg.norm(pos[src][:2] - pos[tgt][:2]))
        if d_tgt > diag[src] + diag[tgt] + 0.10:
            return False
        others = [float(np.linalg.norm(pos[src][:2] - pos[n][:2])) for n in pos if n not in (src, tgt)]
        return all(d_tgt < d - 0.01 for d in others)

    def _on_target(self, src: str, tgt: str, i: int) -> bool:
        ps, pt = self._p(src, i), self._p(tgt, i)
        if tgt == "basket":
            hx, hy, hz = RECEPTACLES["basket"][0]
            inside = abs(ps[0] - pt[0]) <= hx and abs(ps[1] - pt[1]) <= hy
            return bool(inside and 0 < ps[2] - (pt[2] - hz) <= 0.06)
        if tgt == "plate":
            half_xy = RECEPTACLES["plate"][0][0]
            half_z = RECEPTACLES["plate"][0][1]
        elif tgt == "towel":
            half_xy = RECEPTACLES["towel"][0][0]
            half_z = RECEPTACLES["towel"][0][2]
        else:
            half_xy, half_z = 0.02, 0.02
        in_xy = np.all(np.abs(ps[:2] - pt[:2]) <= half_xy + 0.003)
        gap = ps[2] - pt[2] - half_z - self.half_height[src]
        on = bool(in_xy and 0 < gap + 0.005 <= 0.02)
        if tgt in ("plate", "yellow_cube"):  # must rest only on the target (SimplerEnv carrot/stack)
            on = on and self._contact(self.objects[src], self.table, i) <= 1e-6
        return on

    def _get_obs_extra(self, info: dict):
        return {}

    def compute_dense_reward(self, obs, action, info):
        return torch.zeros(self.num_envs, device=self.device)

    def compute_normalized_dense_reward(self, obs, action, info):
        return torch.zeros(self.num_envs, device=self.device)


def scene_episode_options(seed: int | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The harness's ``reset`` options -> what one sub-environment's ``_initialize_episode`` reads.

    Raises ``ValueError`` for an unknown task or variant, before anything is simulated, so a pool
    can fail that one slot and still reset the others.
    """
    task = options.get("task", "pick_coke_can")
    if task not in TASK_INFO:
        raise ValueError(f"unknown simpler task {task!r}; choose from {sorted(TASK_INFO)}")
    variant = dict(BASE_VARIANT) | dict(options.get("variant") or {})
    for axis, value in variant.items():
        if axis not in AXES or value not in AXES[axis]:
            raise ValueError(f"unknown variant {axis}={value!r}")
    return {"task": task, "layout": options.get("layout"), "variant": variant, "placement_seed": int(seed or 0)}


def _qmul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2]


_LAY_DOWN = [math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]  # a can laid down: its axis (local z) along x


def _half_diag(name: str) -> float:
    shape, size, _ = OBJECTS[name]
    if shape == "box":
        return float(np.hypot(size[0], size[1]))
    return float(size[0] * math.sqrt(2))


# ---- the harness-facing side: per-episode bookkeeping, N sub-environments, the Gymnasium env --


class EpisodeTracker:
    """SimplerEnv's episode rules for one sub-environment, fed the scene's per-step predicates.

    Step budget per task (``truncated``), success read at the last step (or the first, for smoke
    tests), partial success (source object grasped at some step; open/close drawer: the drawer
    moved >= 2 cm the right way at some step), pick_coke_can's "lifted on >= 5 steps" and the
    two-stage drawer task.  Both :class:`SimplerEnv` and the batched pool use it, so a slot of
    the pool and a single env score an episode identically.
    """

    def __init__(self, task: str = "pick_coke_can", instruction: str = "") -> None:
        self.task = task
        self.budget = TASK_INFO[task].budget
        self.steps = 0
        self.stage = 1
        self.instruction = instruction or TASK_INFO[task].instruction
        self.ever_partial = False
        self.lift_steps = 0
        self.apple_touched_floor = False

    @property
    def current_instruction(self) -> str:
        info = TASK_INFO[self.task]
        return info.stage2_instruction if self.stage == 2 and info.stage2_instruction else self.instruction

    def advance(self, ev: dict[str, Any], success_at: str) -> tuple[bool, bool]:
        """Count one step with predicates ``ev``; return ``(is_success, truncated)``."""
        self.steps += 1
        self._update(ev)
        success = self._success(ev)
        truncated = self.steps >= self.budget
        return bool(success and (truncated or success_at == "first_step")), truncated

    def _update(self, ev: dict[str, Any]) -> None:
        if self.task in ("open_drawer", "close_drawer"):
            self.ever_partial |= bool(ev.get("drawer_moved"))
        else:
            self.ever_partial |= bool(ev.get("grasped"))
        if ev.get("lift", 0.0) > 0.02:
            self.lift_steps += 1
        self.apple_touched_floor |= bool(ev.get("apple_on_drawer_floor"))
        info = TASK_INFO[self.task]
        if info.stage2_instruction and self.stage == 1 and (
                ev.get("drawer_qpos", 0.0) >= 0.15 or self.steps >= info.stage2_at):
            self.stage = 2

    def _success(self, ev: dict[str, Any]) -> bool:
        if self.task == "pick_coke_can":  # SimplerEnv: lifted now, or lifted > 2 cm on >= 5 steps
            return bool(ev["success_now"] or self.lift_steps >= 5)
        if self.task == "place_apple_in_closed_drawer":
            return bool(self.stage == 2 and ev["success_now"] and self.apple_touched_floor)
        return bool(ev["success_now"])

    def info(self, ev: dict[str, Any], success: bool, variant: dict[str, str]) -> dict[str, Any]:
        return {
            "is_success": bool(success),
            "success_now": bool(ev.get("success_now")),
            "partial_success": bool(self.ever_partial),
            "task": self.task,
            "stage": self.stage,
            "variant": dict(variant),
            "steps": self.steps,
            "budget": self.budget,
        }


#: One slot's step result, Gymnasium-shaped: (observation, reward, terminated, truncated, info).
StepResult = tuple[dict[str, Any], float, bool, bool, dict[str, Any]]


class SimplerBatch:
    """``num_envs`` sub-environments of one ManiSkill env, each playing its own episode ("slot").

    The one implementation of the harness-facing behaviour: :class:`SimplerEnv` is this with one
    slot, :class:`~vlaeval.envs.simpler.pool.SimplerBatchPool` with many on the GPU backend.
    ``reset`` resets only the requested slots (ManiSkill partial reset, ``options["env_idx"]``);
    ``step`` advances the episodes of the slots in ``actions`` only.  ManiSkill steps every
    sub-environment together, so a slot left out is driven with a hold action (no motion, its
    last gripper command) and its episode (steps, budget, predicates) does not move; the batched
    runner leaves out only slots whose episode is over, and resets them before they act again.

    Args: as :class:`SimplerEnv`, plus ``num_envs`` (more than 1 needs the GPU backend).
    """

    def __init__(self, num_envs: int = 1, *, render: bool = True, overlay: bool = False,
                 overlay_image: str | None = None, image_size: tuple[int, int] = (224, 224),
                 success_at: str = "last_step", sim_backend: str = "auto", render_mode: str | None = None) -> None:
        from vlaeval.envs.simpler.backend import resolve_sim_backend

        if success_at not in ("last_step", "first_step"):
            raise ValueError("success_at must be 'last_step' or 'first_step'")
        sim_backend = resolve_sim_backend(sim_backend)
        if num_envs > 1 and sim_backend != "gpu":
            raise ValueError(f"{num_envs} sub-environments need the GPU sim backend (ManiSkill runs one env on CPU)")
        self.num_envs = num_envs
        self.render_images = bool(render)
        self.overlay = bool(overlay) and self.render_images
        self.success_at = success_at
        obs_mode = ("rgb+segmentation" if self.overlay else "rgb") if self.render_images else "none"
        self.env = gymnasium.make(
            "vlaeval-SimplerScene-v0", obs_mode=obs_mode, control_mode="pd_ee_delta_pose",
            sim_backend=sim_backend, render_backend="cpu" if sim_backend == "cpu" else "gpu",
            image_size=tuple(image_size), num_envs=num_envs,
            render_mode="rgb_array" if render_mode else None,
        )
        self.scene_env: SimplerSceneEnv = self.env.unwrapped
        self.background = load_background(overlay_image) if self.overlay else None
        arm = self.scene_env.agent.controller.controllers["arm"]
        self._pos_scale, self._rot_scale = probe_scale(
            lambda a: arm._clip_and_scale_action(torch.as_tensor(np.asarray(a, dtype=np.float32))[None])[0].cpu().numpy(),
            ROT_BOUND,
        )
        high = np.array([0.1, 0.1, 0.1, ROT_BOUND, ROT_BOUND, ROT_BOUND, 1.0], dtype=np.float32)
        self.action_space = spaces.Box(-high, high, dtype=np.float32)
        obs_spaces = {
            "robot_state": spaces.Box(-10.0, 10.0, (8,), dtype=np.float32),
            "language": spaces.Text(MAX_INSTRUCTION_LENGTH, min_length=0, charset=string.printable),
        }
        if self.render_images:
            h, w = image_size
            obs_spaces["rgb"] = spaces.Box(0, 255, (h, w, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)
        self.trackers = [EpisodeTracker() for _ in range(num_envs)]
        self.keep_ids: list[set[int]] = [set() for _ in range(num_envs)]  # overlay foreground per slot
        self._hold = np.zeros((num_envs, 7), dtype=np.float32)  # zero motion + each slot's last gripper command
        self._hold[:, 6] = 1.0  # the rest pose's gripper is open

    def reset(self, requests: Mapping[int, tuple[int | None, Mapping[str, Any]]]) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
        """Start an episode in each requested slot (``{slot: (seed, options)}``); others keep running."""
        if not requests:
            return {}
        slots = sorted(requests)
        episodes = [scene_episode_options(requests[s][0], requests[s][1]) for s in slots]
        env_idx = torch.tensor(slots, dtype=torch.long, device=self.scene_env.device)
        obs, _ = self.env.reset(options={"env_idx": env_idx, "episodes": episodes})
        for slot, episode in zip(slots, episodes):
            self.trackers[slot] = EpisodeTracker(episode["task"], requests[slot][1].get("instruction", ""))
            self._hold[slot, 6] = 1.0  # the rest pose's gripper is open again
            if self.overlay:
                self.keep_ids[slot] = self._foreground_ids(slot)
        observations = self._observations(obs, slots)
        return {slot: (observations[slot], self.trackers[slot].info(self.scene_env.evaluate_env(slot), False,
                                                                    self.scene_env.episodes[slot].variant))
                for slot in slots}

    def step(self, actions: Mapping[int, np.ndarray]) -> dict[int, StepResult]:
        """One control step of every sub-environment; the episodes of the slots in ``actions`` advance."""
        if not actions:
            return {}
        ctrl = self._hold.copy()
        for slot, action in actions.items():
            ctrl[slot] = to_controller(action, self._pos_scale, self._rot_scale)
            self._hold[slot, 6] = ctrl[slot, 6]
        obs, _, _, _, _ = self.env.step(torch.as_tensor(ctrl, device=self.scene_env.device))
        observations = self._observations(obs, list(actions))
        out = {}
        for slot in actions:
            ev = self.scene_env.evaluate_env(slot)
            tracker = self.trackers[slot]
            is_success, truncated = tracker.advance(ev, self.success_at)
            info = tracker.info(ev, is_success, self.scene_env.episodes[slot].variant)
            out[slot] = observations[slot], float(is_success), False, truncated, info
        return out

    def _foreground_ids(self, slot: int) -> set[int]:
        env = self.scene_env
        active = env.episodes[slot].active
        ids = {int(link.per_scene_id[slot]) for link in env.agent.robot.links}
        names = {v for k, v in active.items() if k in ("source", "target") and isinstance(v, str)}
        names |= set(active.get("objects", ()))
        for n in names:
            ids.add(int(env.actor(n).per_scene_id[slot]))
        if TASK_INFO[self.trackers[slot].task].family == "drawer":
            ids |= {int(link.per_scene_id[slot]) for link in env.cabinet.links}
        return ids

    def _observations(self, obs: Any, slots: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The harness observations of ``slots``: each batched tensor (TCP pose, joints, camera)
        is indexed and copied off the device once for all of them, not once per slot."""
        env, rows = self.scene_env, list(slots)
        tcp = env.agent.tcp.pose
        qpos = env.agent.robot.get_qpos()[rows].cpu().numpy()
        states = np.concatenate([tcp.p[rows].cpu().numpy(), tcp.q[rows].cpu().numpy(),
                                 (qpos[:, -1] + qpos[:, -2])[:, None]], axis=1).astype(np.float32)
        if self.render_images:
            cam = obs["sensor_data"]["camera"]
            rgbs = cam["rgb"][rows].cpu().numpy()
            segmentations = cam["segmentation"][rows].cpu().numpy() if self.overlay else None
        out: dict[int, dict[str, Any]] = {}
        for k, slot in enumerate(rows):
            out[slot] = {"robot_state": states[k], "language": self.trackers[slot].current_instruction}
            if self.render_images:
                out[slot]["rgb"] = (composite(rgbs[k], segmentations[k], self.keep_ids[slot], self.background)
                                    if self.overlay else rgbs[k])
        return out

    def close(self) -> None:
        self.env.close()


class SimplerEnv(gymnasium.Env):
    """All ``simpler`` tasks behind one Gymnasium env (task chosen by ``reset(options=...)``).

    Args:
        render: render the camera (``rgb`` observation); False runs state-only (no Vulkan needed).
        overlay: composite ``overlay_image`` (default: the shipped background) behind the robot,
            the task objects and the cabinet (visual matching's greenscreen).
        overlay_image: path of a user-supplied background photo.
        image_size: (height, width) of the camera.
        success_at: ``"last_step"`` (SimplerEnv: the episode runs to the task's budget and
            ``info["is_success"]`` is the success predicate at that last step) or ``"first_step"``
            (stop at the first step where it holds; faster, for smoke tests and demonstrations).
        sim_backend: ``"auto"`` (GPU if available, else CPU), ``"cpu"`` or ``"gpu"`` (an error
            without CUDA).

    ``reset`` options (as listed by the suite): ``task``, ``layout``, ``variant``,
    ``instruction``; everything else is recorded but unused.  ``info`` carries ``is_success``
    (at the end of the episode), ``success_now``, ``partial_success`` (source object grasped at
    some step; open/close drawer: the drawer moved >= 2 cm the right way at some step), ``task``, ``variant`` and ``stage``.
    This is one slot of a :class:`SimplerBatch`, which holds the behaviour.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(self, render: bool = True, overlay: bool = False, overlay_image: str | None = None,
                 image_size: tuple[int, int] = (224, 224), success_at: str = "last_step",
                 sim_backend: str = "auto", render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.batch = SimplerBatch(1, render=render, overlay=overlay, overlay_image=overlay_image, image_size=image_size,
                                  success_at=success_at, sim_backend=sim_backend, render_mode=render_mode)
        self.scene_env: SimplerSceneEnv = self.batch.scene_env
        self.action_space = self.batch.action_space
        self.observation_space = self.batch.observation_space

    @property
    def task(self) -> str:
        return self.batch.trackers[0].task

    @property
    def current_instruction(self) -> str:
        return self.batch.trackers[0].current_instruction

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self.batch.reset({0: (seed, dict(options or {}))})[0]

    def step(self, action: np.ndarray):
        return self.batch.step({0: action})[0]

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.batch.env.render()[0].cpu().numpy()

    def close(self) -> None:
        self.batch.close()
