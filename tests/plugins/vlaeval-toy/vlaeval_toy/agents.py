"""Agents for the toy suites, including deliberately broken ones."""

from __future__ import annotations

import time

import numpy as np

from vlaeval import Agent, AgentSpec


class Solver(Agent):
    """Moves straight to the goal; ``skill`` < 1 makes it sometimes push the wrong way (seeded)."""

    spec = AgentSpec(action_type="relative_ee", observation_keys=("state",))

    def __init__(self, skill: float = 1.0) -> None:
        self.skill = skill
        self.rng = np.random.default_rng(0)
        self.resets = 0

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.resets += 1
        self.wrong = self.rng.random() > self.skill

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        x, goal = observation["state"]
        step = np.clip((goal - x) / 0.1, -1, 1) * (-1 if self.wrong else 1)
        return np.array([step, 0, 0, 0, 0, 0, 1], dtype=np.float32)


class Crasher(Solver):
    """Raises on its first step of every subtask."""

    def reset(self) -> None:
        super().reset()
        self.steps = 0

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        self.steps += 1
        if self.steps == 1:
            raise RuntimeError("policy exploded")
        return super().act(observation, instruction)


class NaNAgent(Solver):
    def act(self, observation: dict, instruction: str) -> np.ndarray:
        return np.full(7, np.nan, dtype=np.float32)


class WrongShape(Solver):
    def act(self, observation: dict, instruction: str) -> np.ndarray:
        return np.zeros(6, dtype=np.float32)


class Sleeper(Solver):
    """Hangs (sleeps ``seconds``) on the first step of every episode."""

    def __init__(self, seconds: float = 30.0) -> None:
        super().__init__()
        self.seconds = seconds

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        time.sleep(self.seconds)
        return super().act(observation, instruction)


class Slow(Solver):
    """A solver that takes ``delay`` seconds per step (for kill-and-resume tests)."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.delay = delay

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        time.sleep(self.delay)
        return super().act(observation, instruction)


class AbsoluteAgent(Solver):
    """Declares absolute end-effector actions and a closing-positive gripper: a convention mismatch."""

    spec = AgentSpec(action_type="absolute_ee", gripper="close_positive", observation_keys=("state", "rgb_static"))
