"""The harness-facing side of the ``simpler`` scene: ``num_envs`` episodes ("slots") at once.

The one implementation of what an episode looks like from outside (suite action convention,
numpy observations, episode rules, greenscreen), so :class:`~vlaeval.envs.simpler.env.SimplerEnv`
(one slot, CPU or GPU) and :class:`~vlaeval.envs.simpler.pool.SimplerBatchPool` (many slots, GPU)
cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from vlaeval.envs.simpler.actions import ROT_BOUND, probe_scale, to_controller
from vlaeval.envs.simpler.backend import resolve_sim_backend
from vlaeval.envs.simpler.observation import foreground_ids, obs_mode, observation_space, read_observations
from vlaeval.envs.simpler.options import scene_episode_options
from vlaeval.envs.simpler.overlay import load_background
from vlaeval.envs.simpler.scene import SimplerSceneEnv
from vlaeval.envs.simpler.tracker import EpisodeTracker

#: One slot's step result, Gymnasium-shaped: (observation, reward, terminated, truncated, info).
StepResult = tuple[dict[str, Any], float, bool, bool, dict[str, Any]]


class SimplerBatch:
    """``num_envs`` sub-environments of one ManiSkill env, each playing its own episode ("slot").

    ``reset`` resets only the requested slots (ManiSkill partial reset, ``options["env_idx"]``);
    ``step`` advances the episodes of the slots in ``actions`` only.  ManiSkill steps every
    sub-environment together, so a slot left out is driven with a hold action (no motion, its
    last gripper command) and its episode (steps, budget, predicates) does not move; the batched
    runner leaves out only slots whose episode is over, and resets them before they act again.

    Args: as :class:`~vlaeval.envs.simpler.env.SimplerEnv`, plus ``num_envs`` (more than 1 needs
    the GPU backend).
    """

    def __init__(self, num_envs: int = 1, *, render: bool = True, overlay: bool = False,
                 overlay_image: str | None = None, image_size: tuple[int, int] = (224, 224),
                 success_at: str = "last_step", sim_backend: str = "auto", render_mode: str | None = None) -> None:
        if success_at not in ("last_step", "first_step"):
            raise ValueError("success_at must be 'last_step' or 'first_step'")
        sim_backend = resolve_sim_backend(sim_backend)
        if num_envs > 1 and sim_backend != "gpu":
            raise ValueError(f"{num_envs} sub-environments need the GPU sim backend (ManiSkill runs one env on CPU)")
        self.num_envs = num_envs
        self.render_images = bool(render)
        self.overlay = bool(overlay) and self.render_images
        self.success_at = success_at
        self.env = gymnasium.make(
            "vlaeval-SimplerScene-v0", obs_mode=obs_mode(self.render_images, self.overlay),
            control_mode="pd_ee_delta_pose", sim_backend=sim_backend,
            render_backend="cpu" if sim_backend == "cpu" else "gpu",
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
        self.observation_space = observation_space(self.render_images, image_size)
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
                self.keep_ids[slot] = foreground_ids(self.scene_env, slot, episode["task"])
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

    def _observations(self, obs: Any, slots: list[int]) -> dict[int, dict[str, Any]]:
        return read_observations(self.scene_env, obs, slots, [self.trackers[s].current_instruction for s in slots],
                                 render=self.render_images, background=self.background if self.overlay else None,
                                 keep_ids=self.keep_ids)

    def close(self) -> None:
        self.env.close()
