"""``vlaeval/Simpler-v0``: every ``simpler`` task behind one Gymnasium env, chosen per episode.

On CPU the simulation uses ``sim_backend="cpu"`` and one environment; rendering needs a Vulkan
driver (Mesa lavapipe >= 24.3 on machines without a GPU).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from vlaeval.envs.simpler.batch import SimplerBatch
from vlaeval.envs.simpler.catalogue import CONTROL_FREQ
from vlaeval.envs.simpler.scene import SimplerSceneEnv


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
    This is one slot of a :class:`~vlaeval.envs.simpler.batch.SimplerBatch`, which holds the behaviour.
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
