"""Agents for the toy suites, including deliberately broken ones."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vlaeval import Agent, AgentSpec


class Solver(Agent):
    """Moves straight to the goal; ``skill`` < 1 makes it sometimes push the wrong way (seeded)."""

    spec = AgentSpec(action_type="relative_ee", observation_keys=("state",))

    def __init__(self, skill: float = 1.0, checkpoint: str | None = None) -> None:
        if checkpoint is not None:  # written by `vlaeval train toy`
            skill = json.loads((Path(checkpoint) / "toy.json").read_text())["skill"]
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


class BatchSolver(Agent):
    """:class:`Solver` as a batched agent: one state and one seeded generator per batch slot.

    Slot ``i`` behaves exactly like a Solver seeded and reset at the same moments, so batched
    runs must reproduce sequential ones row for row.  ``batch_sizes`` records every call's size.
    """

    spec = Solver.spec

    def __init__(self, skill: float = 1.0) -> None:
        self.skill = skill
        self.rngs: dict[int, np.random.Generator] = {}
        self.wrong: dict[int, bool] = {}
        self.batch_sizes: list[int] = []
        self.slot_resets = 0

    def seed(self, seed: int) -> None:
        self.seed_slot(0, seed)

    def seed_slot(self, slot: int, seed: int) -> None:
        self.rngs[slot] = np.random.default_rng(seed)

    def reset(self) -> None:
        self.wrong.clear()
        self.reset_slot(0)

    def reset_slot(self, slot: int) -> None:
        self.slot_resets += 1
        rng = self.rngs.setdefault(slot, np.random.default_rng(0))
        self.wrong[slot] = rng.random() > self.skill

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        return self.act_batch([observation], [instruction])[0]

    def act_batch(self, observations, instructions) -> np.ndarray:
        self.batch_sizes.append(len(observations))
        states = np.stack([o["state"] for o in observations])
        signs = np.array([-1.0 if self.wrong.get(i, False) else 1.0 for i in range(len(observations))])
        out = np.zeros((len(observations), 7), dtype=np.float32)
        out[:, 0] = np.clip((states[:, 1] - states[:, 0]) / 0.1, -1, 1) * signs
        out[:, 6] = 1
        return out


class Dier(Solver):
    """A solver whose process dies (``os._exit``) at its ``after``-th step, once per ``marker`` file:
    the first process to get there creates the marker and dies; later ones carry on."""

    def __init__(self, marker: str = "", after: int = 40) -> None:
        super().__init__()
        self.marker, self.after, self.steps = marker, after, 0

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        self.steps += 1
        if self.marker and self.steps == self.after:
            import os

            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(17)
        return super().act(observation, instruction)
