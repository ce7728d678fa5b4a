"""``vlaeval-SimplerScene-v0``: the ManiSkill3 env in which every ``simpler`` task is played.

It holds every task's bodies in each of its ``num_envs`` sub-scenes (:mod:`.build`), and at a
reset sets up each reset sub-environment for its own task and variant by moving, parking and
recolouring bodies, never reconfiguring (except the CPU rebuild in :meth:`SimplerSceneEnv.reset`),
so one instance serves every task and variant and its sub-environments can all play different
ones.  Where things go and what counts is not decided here but by the task rules
(:mod:`.tasks`) and the variants (:mod:`.appearance`), which act through :class:`SubScene`.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlaeval.envs.simpler.vulkan import use_software_vulkan_if_needed

use_software_vulkan_if_needed()  # before SAPIEN loads Vulkan

import numpy as np  # noqa: E402
import sapien  # noqa: E402
import torch  # noqa: E402
from mani_skill.agents.registration import register_agent  # noqa: E402
from mani_skill.agents.robots.panda.panda import Panda  # noqa: E402
from mani_skill.envs.sapien_env import BaseEnv  # noqa: E402
from mani_skill.sensors.camera import CameraConfig  # noqa: E402
from mani_skill.utils import sapien_utils  # noqa: E402
from mani_skill.utils.registration import register_env  # noqa: E402
from mani_skill.utils.structs.actor import Actor  # noqa: E402
from mani_skill.utils.structs.articulation import Articulation  # noqa: E402
from mani_skill.utils.structs.types import SimConfig  # noqa: E402

from vlaeval.envs.simpler.actions import ROT_BOUND  # noqa: E402
from vlaeval.envs.simpler.appearance import apply_appearance, place_distractors  # noqa: E402
from vlaeval.envs.simpler.build import SceneBodies, build_scene, park_pose  # noqa: E402
from vlaeval.envs.simpler.catalogue import AMBIENT, CABINET_PARK, CAMERAS, CONTROL_FREQ, ROBOT_XY, SIM_FREQ  # noqa: E402
from vlaeval.envs.simpler.options import scene_episode_options  # noqa: E402
from vlaeval.envs.simpler.tasks import rules_for  # noqa: E402
from vlaeval.envs.simpler.view import SceneEpisode  # noqa: E402


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
    """Every task's objects in every sub-scene; each sub-environment plays its own task and variant.

    All sub-scenes hold the same bodies (tasks differ only by which objects are placed and which
    are parked), so one batched GPU scene serves any mix of tasks.
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

    @property
    def cabinet(self) -> Articulation:
        return self.bodies.cabinet

    def actor(self, name: str) -> Actor:
        """A task object, receptacle or distractor by name."""
        return self.bodies.actor(name)

    def view(self, i: int) -> SubScene:
        """Sub-environment ``i`` as the task rules and variants see it."""
        return SubScene(self, i)

    # ---- configuration ----------------------------------------------------------------------

    @property
    def _default_sim_config(self):
        return SimConfig(sim_freq=SIM_FREQ, control_freq=CONTROL_FREQ)

    @property
    def _default_sensor_configs(self):
        h, w = self.image_size
        return [CameraConfig("camera", pose=sapien.Pose(), width=w, height=h, fov=1.0, near=0.01, far=10.0,
                             mount=self.bodies.cam_mount)]

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at(*CAMERAS["base"])
        return CameraConfig("render_camera", pose=pose, width=448, height=448, fov=1.0, near=0.01, far=10.0)

    def _load_agent(self, options: dict):
        super()._load_agent(options, sapien.Pose(p=[*ROBOT_XY, 0.0]))

    def _load_lighting(self, options: dict):
        self.scene.set_ambient_light([AMBIENT] * 3)
        self.scene.add_directional_light([1, 1, -1], [1, 1, 1], shadow=False, shadow_scale=5, shadow_map_size=2048)
        self.scene.add_directional_light([0, 0, -1], [1, 1, 1])

    def _load_scene(self, options: dict):
        self.bodies: SceneBodies = build_scene(self.scene, self.num_envs)

    # ---- episodes ---------------------------------------------------------------------------

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        """Set up each sub-environment of ``env_idx`` for its own episode.

        ``options["episodes"]`` holds one dict per entry of ``env_idx`` (``task``, ``layout``,
        ``variant``, ``placement_seed``; see :func:`~vlaeval.envs.simpler.options.scene_episode_options`);
        without it (the reset that ManiSkill does at construction) every sub-environment gets the
        default episode.  Sub-environments are set up one at a time with ManiSkill's reset mask
        narrowed to that one, so every pose and joint write lands in its sub-scene only and others
        keep running.
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
            for name, actor in self.bodies.movable():
                self._place(actor, park_pose(name, self.bodies.half_height[name]))
            self.cabinet.set_root_pose(sapien.Pose(p=list(CABINET_PARK)))
            self.cabinet.set_qpos(torch.zeros((1, 1)))
            self.cabinet.set_qvel(torch.zeros((1, 1)))
            view = self.view(i)
            ep.active = rules_for(task).setup(view, ep)
            place_distractors(view, task, ep.variant, rng)
            apply_appearance(view, ep.variant)

    @staticmethod
    def _default_layout(task: str) -> dict[str, Any]:
        from vlaeval.envs.simpler.episodes import task_layouts

        return task_layouts(task)[0]

    def _place(self, actor: Actor, pose: sapien.Pose) -> None:
        actor.set_pose(pose)
        if not actor.px_body_type == "kinematic" and hasattr(actor, "set_linear_velocity"):
            actor.set_linear_velocity(torch.zeros((1, 3)))
            actor.set_angular_velocity(torch.zeros((1, 3)))

    # ---- evaluation -------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """ManiSkill's per-step hook: nothing (no ``success`` key, so ManiSkill never terminates).

        The harness reads :meth:`evaluate_env` for the sub-environments whose episodes advanced.
        """
        return {}

    def evaluate_env(self, i: int) -> dict[str, Any]:
        """Per-step predicates of sub-environment ``i``'s task (numbers, not tensors), by its rules."""
        ep = self.episodes[i]
        return rules_for(ep.task).predicates(self.view(i), ep)

    def _get_obs_extra(self, info: dict):
        return {}

    def compute_dense_reward(self, obs, action, info):
        return torch.zeros(self.num_envs, device=self.device)

    def compute_normalized_dense_reward(self, obs, action, info):
        return torch.zeros(self.num_envs, device=self.device)


class SubScene:
    """Sub-environment ``i`` of a :class:`SimplerSceneEnv` behind the plain
    :class:`~vlaeval.envs.simpler.view.SceneView` interface.

    Writes act on every sub-scene that ManiSkill's reset mask selects, which
    :meth:`SimplerSceneEnv._initialize_episode` narrows to ``i`` while it sets one up.
    """

    def __init__(self, env: SimplerSceneEnv, i: int) -> None:
        self.env = env
        self.i = i

    def _body(self, name: str) -> Any:
        if name == "table":
            return self.env.bodies.table
        if name == "drawer":
            return self.env.bodies.drawer_link
        return self.env.actor(name)

    def place(self, name: str, p: Sequence[float], q: Sequence[float]) -> None:
        self.env._place(self.env.actor(name), sapien.Pose(p=list(p), q=list(q)))

    def position(self, name: str) -> np.ndarray:
        return self.env.actor(name).pose.p[self.i].cpu().numpy()

    def half_height(self, name: str) -> float:
        return self.env.bodies.half_height[name]

    def grasped(self, name: str) -> bool:
        return bool(self.env.agent.is_grasping(self.env.actor(name), max_angle=85)[self.i])

    def contact(self, a: str, b: str) -> float:
        forces = self.env.scene.get_pairwise_contact_forces(self._body(a), self._body(b))
        return float(torch.linalg.norm(forces, dim=-1)[self.i])

    def drawer_qpos(self) -> float:
        return float(self.env.cabinet.get_qpos()[self.i, 0])

    def set_cabinet(self, p: Sequence[float], qpos: float) -> None:
        self.env.cabinet.set_root_pose(sapien.Pose(p=list(p)))
        self.env.cabinet.set_qpos(torch.tensor([[float(qpos)]]))

    def set_colour(self, part: str, rgb: Sequence[float]) -> None:
        self.env.bodies.materials[part][self.i].base_color = [*rgb, 1.0]

    def set_lighting(self, ambient: float, directional: float) -> None:
        rs = self.env.scene.sub_scenes[self.i].render_system
        rs.ambient_light = [ambient] * 3
        for light in rs.lights:
            light.color = [directional] * 3

    def set_camera(self, eye: Sequence[float], target: Sequence[float]) -> None:
        self.env.bodies.cam_mount.set_pose(sapien_utils.look_at(eye, target))
