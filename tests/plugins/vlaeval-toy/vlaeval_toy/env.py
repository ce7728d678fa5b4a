"""ToyReach: a point on a line must reach one goal per subtask (a miniature CALVIN chain)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

GOALS = {"reach_left": -0.6, "reach_right": 0.6, "reach_center": 0.0}
TOLERANCE = 0.05


class ToyReachEnv(gym.Env):
    """Action: 7-d relative command (only the first entry moves the point, by 0.1 per unit).

    Observation: ``state`` = (position, goal of the current subtask).  ``fail_on_make`` lets a
    test simulate a suite whose simulator cannot start.
    """

    metadata = {"render_modes": []}

    def __init__(self, fail_on_make: bool = False) -> None:
        if fail_on_make:
            raise RuntimeError("simulated simulator start-up failure")
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-2.0, 2.0, (2,), np.float32)})
        self.tasks: list[str] = []
        self.subtask = 0
        self.x = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = options or {}
        self.tasks = list(options.get("tasks", ["reach_right"]))
        self.subtask = 0
        self.x = float(options.get("start", self.np_random.uniform(-0.3, 0.3)))
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self.x = float(np.clip(self.x + 0.1 * float(action[0]), -2.0, 2.0))
        task = self.tasks[self.subtask]
        success = abs(self.x - GOALS[task]) < TOLERANCE
        info = {"is_success": success, "task": task, "subtask_index": self.subtask}
        terminated = False
        if success:
            self.subtask += 1
            terminated = self.subtask == len(self.tasks)
            self.subtask = min(self.subtask, len(self.tasks) - 1)
        return self._obs(), float(success), terminated, False, info

    def _obs(self) -> dict:
        goal = GOALS[self.tasks[self.subtask]] if self.tasks else 0.0
        return {"state": np.array([self.x, goal], dtype=np.float32)}
