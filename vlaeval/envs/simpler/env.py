"""``vlaeval/Simpler-v0``: every ``simpler`` task in one ManiSkill3 scene, chosen per episode.

Two layers:

* :class:`SimplerSceneEnv` (ManiSkill id ``vlaeval-SimplerScene-v0``) builds, once, a table, a
  background wall, a one-drawer cabinet (articulation builder), every task object (cans, cubes,
  apple, orange, sponge, spoon, carrot, eggplant, plate, towel, basket) and a distractor pool, all
  from primitives; ``_initialize_episode`` places the objects of the episode's task and parks the
  others out of view, and applies the variant (colours, lights, distractors, camera pose) without
  reconfiguring, so one instance serves every task and variant.
* :class:`SimplerEnv` (Gymnasium id ``vlaeval/Simpler-v0``) wraps it for the harness: suite action
  convention (:mod:`vlaeval.envs.simpler.actions`), numpy observations, per-task step budget
  (``truncated``), SimplerEnv's "success read at the last step" and partial success ("grasped at
  some step"), the two-stage drawer task, and the greenscreen overlay.

On CPU the simulation uses ``sim_backend="cpu"`` and one environment; rendering needs a Vulkan
driver (Mesa lavapipe >= 24.3 on machines without a GPU).
"""

from __future__ import annotations

import math
import string
from typing import Any

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
from mani_skill.utils.structs.pose import Pose
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


@register_env("vlaeval-SimplerScene-v0", max_episode_steps=None)
class SimplerSceneEnv(BaseEnv):
    SUPPORTED_ROBOTS = ["panda_simpler"]

    def __init__(self, *args, robot_uids="panda_simpler", image_size=(224, 224), **kwargs):
        self.image_size = tuple(image_size)
        self.task = "pick_coke_can"
        self.layout: dict[str, Any] = {}
        self.variant: dict[str, str] = dict(BASE_VARIANT)
        self.active: dict[str, Any] = {}
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

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
        scene = self.scene
        self.materials = {
            "wall": _material(BACKGROUNDS["base"]["wall"], 0.9),
            "floor": _material(BACKGROUNDS["base"]["floor"], 0.9),
            "table": _material(TABLES["base"], 0.6),
            "cabinet": _material(CABINETS["base"], 0.5),
        }
        b = scene.create_actor_builder()
        b.add_box_collision(half_size=[10, 10, 0.05])
        b.add_box_visual(half_size=[10, 10, 0.05], material=self.materials["floor"])
        b.initial_pose = sapien.Pose(p=[0, 0, FLOOR_Z - 0.05])
        self.floor = b.build_static(name="floor")
        b = scene.create_actor_builder()
        b.add_box_visual(half_size=[0.02, 3.0, 1.5], material=self.materials["wall"])
        b.add_box_visual(pose=sapien.Pose(p=[-2.8, 0, 0]), half_size=[0.02, 3.0, 1.5], material=self.materials["wall"])
        b.initial_pose = sapien.Pose(p=[1.2, 0, 0.5])
        self.wall = b.build_static(name="wall")  # one wall in front of the robot, one behind it
        b = scene.create_actor_builder()
        half = [0.6, 0.75, (0 - FLOOR_Z) / 2]
        b.add_box_collision(half_size=half)
        b.add_box_visual(half_size=half, material=self.materials["table"])
        b.initial_pose = sapien.Pose(p=[-0.2, 0, FLOOR_Z / 2])
        self.table = b.build_static(name="table")

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
        self.cabinet = self._build_cabinet()
        self.drawer_link = next(link for link in self.cabinet.links if link.name == "drawer")
        b = scene.create_actor_builder()
        b.initial_pose = sapien_utils.look_at(*CAMERAS["base"])
        self.cam_mount = b.build_kinematic(name="camera_mount")

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

    def _build_cabinet(self):
        ab = self.scene.create_articulation_builder()
        mat = self.materials["cabinet"]
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
        return ab.build(name="cabinet", fix_root_link=True)

    # ---- episodes ---------------------------------------------------------------------------

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        options = options or {}
        self.task = options.get("task", self.task)
        if self.task not in TASK_INFO:
            raise ValueError(f"unknown simpler task {self.task!r}")
        self.layout = dict(options.get("layout") or self._default_layout(self.task))
        self.variant = dict(BASE_VARIANT) | dict(options.get("variant") or {})
        for axis, value in self.variant.items():
            if axis not in AXES or value not in AXES[axis]:
                raise ValueError(f"unknown variant {axis}={value!r}")
        rng = np.random.default_rng(options.get("placement_seed", 0))
        with torch.device(self.device):
            robot_xy = self.layout.get("robot_xy", ROBOT_XY)
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
            self.active = {}
            getattr(self, f"_setup_{TASK_INFO[self.task].family}")()
            self._place_distractors(rng)
            self._apply_appearance()

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

    def _setup_pick(self):
        lay = self.layout
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
        self.active = {"source": "coke_can", "z0": float(actor.pose.p[0, 2])}

    def _setup_move_near(self):
        lay = self.layout
        for name, xy in zip(lay["objects"], lay["xy"]):
            self._put(name, xy)
        self.active = {
            "objects": list(lay["objects"]),
            "source": lay["objects"][lay["source"]],
            "target": lay["objects"][lay["target"]],
            "start": {n: self.objects[n].pose.p[0].cpu().numpy().copy() for n in lay["objects"]},
        }

    def _setup_drawer(self):
        lay = self.layout
        self.cabinet.set_root_pose(sapien.Pose(p=list(CABINET_POSE)))
        self.cabinet.set_qpos(torch.tensor([[float(lay.get("drawer_qpos", 0.0))]]))
        self.active = {"source": "apple"} if self.task == "place_apple_in_closed_drawer" else {}
        if self.task == "place_apple_in_closed_drawer":
            self._put("apple", lay["apple_xy"])

    def _setup_bridge(self):
        lay = self.layout
        self._put(lay["target"], lay["target_xy"])
        self._put(lay["source"], lay["source_xy"], yaw=float(lay.get("source_yaw", 0.0)))
        self.active = {"source": lay["source"], "target": lay["target"]}

    def _place_distractors(self, rng: np.random.Generator):
        n = DISTRACTOR_COUNT[self.variant["distractors"]]
        if n == 0:
            return
        occupied = [a.pose.p[0, :2].cpu().numpy() for a in (*self.objects.values(), *self.receptacles.values())
                    if float(a.pose.p[0, 2]) > FLOOR_Z + 0.2]
        if self.task in ("open_drawer", "close_drawer", "place_apple_in_closed_drawer"):
            occupied.append(np.array([-0.2, 0.0]))
        for actor in self.distractors[:n]:
            for _ in range(200):
                xy = np.array([rng.uniform(-0.32, 0.02), rng.uniform(-0.3, 0.3)])
                if all(np.linalg.norm(xy - o) > 0.12 for o in occupied):
                    break
            occupied.append(xy)
            self._place(actor, sapien.Pose(p=[xy[0], xy[1], self.half_height[actor.name] + 0.001],
                                           q=_quat_z(rng.uniform(0, math.pi))))

    def _apply_appearance(self):
        v = self.variant
        bg = BACKGROUNDS[v["background"]]
        self.materials["wall"].base_color = [*bg["wall"], 1.0]
        self.materials["floor"].base_color = [*bg["floor"], 1.0]
        self.materials["table"].base_color = [*TABLES[v["table"]], 1.0]
        self.materials["cabinet"].base_color = [*CABINETS[v["cabinet"]], 1.0]
        scale = LIGHTING[v["lighting"]]
        for sub in self.scene.sub_scenes:
            rs = sub.render_system
            rs.ambient_light = [0.3 * scale] * 3
            for light in rs.lights:
                light.color = [scale] * 3
        eye, target = CAMERAS[v["camera"]]
        self.cam_mount.set_pose(sapien_utils.look_at(eye, target))

    # ---- evaluation -------------------------------------------------------------------------

    def _contact(self, a, b) -> float:
        return float(torch.linalg.norm(self.scene.get_pairwise_contact_forces(a, b), dim=-1)[0])

    def _p(self, name) -> np.ndarray:
        actor = self.actor(name)
        return actor.pose.p[0].cpu().numpy()

    def drawer_qpos(self) -> float:
        return float(self.cabinet.get_qpos()[0, 0])

    def evaluate(self) -> dict[str, Any]:
        """Per-step predicates of the current task (numbers, not tensors): ``success_now`` and
        ``grasped`` plus task-specific fields the wrapper aggregates over the episode."""
        task, act = self.task, self.active
        out: dict[str, Any] = {"success_now": False, "grasped": False}
        family = TASK_INFO[task].family
        src = act.get("source")
        if src is not None:
            out["grasped"] = bool(self.agent.is_grasping(self.objects[src], max_angle=85)[0])
        if family == "pick":
            z = float(self._p(src)[2])
            touching = self._contact(self.objects[src], self.table) > 1e-6
            out["lift"] = z - act["z0"]
            out["success_now"] = out["grasped"] and not touching and z > act["z0"] + 0.01
        elif family == "move_near":
            out["success_now"] = self._move_near_success()
        elif family == "drawer":
            q = self.drawer_qpos()
            out["drawer_qpos"] = q
            q0 = float(self.layout.get("drawer_qpos", 0.0))
            # partial success of open/close: the drawer moved >= 2 cm the right way
            out["drawer_moved"] = (q - q0 >= 0.02) if task != "close_drawer" else (q0 - q >= 0.02)
            if task == "open_drawer":
                out["success_now"] = q >= 0.15
            elif task == "close_drawer":
                out["success_now"] = q <= 0.05
            else:
                apple = self._p("apple")
                out["apple_on_drawer_floor"] = self._contact(self.objects["apple"], self.drawer_link) > 1e-6
                x0 = CABINET_POSE[0] + DRAWER_INNER[0] - q
                x1 = CABINET_POSE[0] + DRAWER_INNER[1] - q
                out["apple_in_drawer"] = bool(x0 <= apple[0] <= x1 and abs(apple[1] - CABINET_POSE[1]) <= DRAWER_INNER[2]
                                              and apple[2] < CABINET_POSE[2] + DRAWER_FLOOR_Z + 0.06)
                out["success_now"] = q >= 0.05 and out["apple_in_drawer"]
        else:
            out["success_now"] = self._on_target(src, act["target"])
        return out

    def _move_near_success(self) -> bool:
        act = self.active
        pos = {n: self._p(n) for n in act["objects"]}
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

    def _on_target(self, src: str, tgt: str) -> bool:
        ps, pt = self._p(src), self._p(tgt)
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
            on = on and self._contact(self.objects[src], self.table) <= 1e-6
        return on

    def _get_obs_extra(self, info: dict):
        return {}

    def compute_dense_reward(self, obs, action, info):
        return torch.zeros(1, device=self.device)

    def compute_normalized_dense_reward(self, obs, action, info):
        return torch.zeros(1, device=self.device)


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


# ---- the harness-facing Gymnasium env ------------------------------------------------------


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
        sim_backend: ``"auto"`` (GPU if available, else CPU), ``"cpu"`` or ``"gpu"``.

    ``reset`` options (as listed by the suite): ``task``, ``layout``, ``variant``,
    ``instruction``; everything else is recorded but unused.  ``info`` carries ``is_success``
    (at the end of the episode), ``success_now``, ``partial_success`` (source object grasped at
    some step; open/close drawer: the drawer moved >= 2 cm the right way at some step), ``task``, ``variant`` and ``stage``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(self, render: bool = True, overlay: bool = False, overlay_image: str | None = None,
                 image_size: tuple[int, int] = (224, 224), success_at: str = "last_step",
                 sim_backend: str = "auto", render_mode: str | None = None) -> None:
        if success_at not in ("last_step", "first_step"):
            raise ValueError("success_at must be 'last_step' or 'first_step'")
        if sim_backend == "auto":
            sim_backend = "gpu" if torch.cuda.is_available() else "cpu"
        self.render_images = bool(render)
        self.overlay = bool(overlay) and self.render_images
        self.success_at = success_at
        self.render_mode = render_mode
        obs_mode = ("rgb+segmentation" if self.overlay else "rgb") if self.render_images else "none"
        self._env = gymnasium.make(
            "vlaeval-SimplerScene-v0", obs_mode=obs_mode, control_mode="pd_ee_delta_pose",
            sim_backend=sim_backend, render_backend="cpu" if sim_backend == "cpu" else "gpu",
            image_size=tuple(image_size), num_envs=1,
            render_mode="rgb_array" if render_mode else None,
        )
        self.scene_env: SimplerSceneEnv = self._env.unwrapped
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
        self._keep_ids: set[int] = set()
        self._reset_stats("pick_coke_can", "")

    # ---- bookkeeping ------------------------------------------------------------------------

    def _reset_stats(self, task: str, instruction: str) -> None:
        self.task = task
        self.budget = TASK_INFO[task].budget
        self.steps = 0
        self.stage = 1
        self.instruction = instruction or TASK_INFO[task].instruction
        self.ever_grasped = False
        self.ever_partial = False
        self.lift_steps = 0
        self.apple_touched_floor = False

    @property
    def current_instruction(self) -> str:
        info = TASK_INFO[self.task]
        return info.stage2_instruction if self.stage == 2 and info.stage2_instruction else self.instruction

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        task = options.get("task", "pick_coke_can")
        if task not in TASK_INFO:
            raise ValueError(f"unknown simpler task {task!r}; choose from {sorted(TASK_INFO)}")
        self._reset_stats(task, options.get("instruction", ""))
        ms_options = {
            "task": task,
            "layout": options.get("layout"),
            "variant": options.get("variant"),
            "placement_seed": int(seed or 0),
        }
        obs, _ = self._env.reset(seed=seed, options=ms_options)
        if self.overlay:
            self._keep_ids = self._foreground_ids()
        info = self._info(self.scene_env.evaluate(), success=False)
        return self._observation(obs), info

    def step(self, action: np.ndarray):
        ctrl = to_controller(action, self._pos_scale, self._rot_scale)
        obs, _, _, _, ev = self._env.step(torch.as_tensor(ctrl)[None])  # ev: SimplerSceneEnv.evaluate()
        self.steps += 1
        if "success_now" not in ev:
            ev = self.scene_env.evaluate()
        self._update(ev)
        success = self._success(ev)
        truncated = self.steps >= self.budget
        if self.success_at == "last_step":
            is_success = bool(success and truncated)
        else:
            is_success = bool(success)
        obs = self._observation(obs)
        return obs, float(is_success), False, truncated, self._info(ev, is_success)

    def _update(self, ev: dict[str, Any]) -> None:
        self.ever_grasped |= bool(ev.get("grasped"))
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

    def _info(self, ev: dict[str, Any], success: bool) -> dict[str, Any]:
        return {
            "is_success": bool(success),
            "success_now": bool(ev.get("success_now")),
            "partial_success": bool(self.ever_partial),
            "task": self.task,
            "stage": self.stage,
            "variant": dict(self.scene_env.variant),
            "steps": self.steps,
            "budget": self.budget,
        }

    def _foreground_ids(self) -> set[int]:
        env = self.scene_env
        ids = {int(link.per_scene_id[0]) for link in env.agent.robot.links}
        names = {v for k, v in env.active.items() if k in ("source", "target") and isinstance(v, str)}
        names |= set(env.active.get("objects", ()))
        for n in names:
            ids.add(int(env.actor(n).per_scene_id[0]))
        if TASK_INFO[self.task].family == "drawer":
            ids |= {int(link.per_scene_id[0]) for link in env.cabinet.links}
        return ids

    def _observation(self, obs: Any) -> dict[str, Any]:
        env = self.scene_env
        tcp = env.agent.tcp.pose
        qpos = env.agent.robot.get_qpos()[0].cpu().numpy()
        state = np.concatenate([tcp.p[0].cpu().numpy(), tcp.q[0].cpu().numpy(), [qpos[-1] + qpos[-2]]]).astype(np.float32)
        out: dict[str, Any] = {"robot_state": state, "language": self.current_instruction}
        if self.render_images:
            cam = obs["sensor_data"]["camera"]
            rgb = cam["rgb"][0].cpu().numpy()
            if self.overlay:
                rgb = composite(rgb, cam["segmentation"][0].cpu().numpy(), self._keep_ids, self.background)
            out["rgb"] = rgb
        return out

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._env.render()[0].cpu().numpy()

    def close(self) -> None:
        self._env.close()
