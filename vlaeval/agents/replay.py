"""``ReplayAgent``: plays a recorded demonstration back, open loop.

The sanity baseline between ``random`` and a learned policy: the suites are deterministic, so
replaying the actions recorded from an episode, in the same episode, must reproduce its outcome
step for step. A replay that diverges points at non-determinism in the suite or at a dataset that
was recorded under other conditions (another suite version, scene or action mode); a replay in
other episodes measures how much of a task open-loop motion solves.

Episodes are matched to demos by their seed (``vlaeval record`` stores it), so recording a
suite's protocol episodes (``vlaeval record --suite S --agent A --episodes N``) and evaluating
``replay`` on the same episodes replays each one; ``demo=NAME`` plays one demo in every episode
instead. The runner resets the agent at every chained subtask, and each reset moves on to the
demo's next recorded subtask. When a subtask's recorded actions run out the agent holds still:
no motion for relative actions, the last pose for absolute ones, the gripper as last recorded.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from vlaeval.agents.base import Agent
from vlaeval.conventions import ANY, AgentSpec
from vlaeval.errors import VlaevalError


class ReplayAgent(Agent):
    """Replays the actions of a ``vlaeval record`` dataset.

    Args:
        data: dataset directory (or its ``demos.hdf5``).
        demo: replay this demo (e.g. ``demo_3``) in every episode instead of matching by seed.
    """

    def __init__(self, data: str | os.PathLike[str], demo: str | None = None) -> None:
        import h5py

        from vlaeval.training.demos import demo_path, read_demo

        path = demo_path(data)
        try:
            with h5py.File(path, "r") as f:
                header = json.loads(f["data"].attrs.get("vlaeval", "{}"))
                if demo is not None and demo not in f["data"]:
                    raise VlaevalError(f"{path} has no demo {demo!r}; it holds demo_0 .. demo_{len(f['data']) - 1}")
                recorded = {name: read_demo(f["data"][name], keys=()) for name in ([demo] if demo is not None else f["data"])}
        except (OSError, KeyError) as exc:
            raise VlaevalError(f"{path} is not a readable vlaeval demonstration file ({exc}); re-record it") from exc
        self._demos = {name: (d.actions, d.subtask) for name, d in recorded.items()}
        self._by_seed = {d.seed: name for name, d in recorded.items()}
        self._fixed = demo
        self._relative = header.get("action_type", "relative_ee") == "relative_ee"
        self.spec = AgentSpec(action_type=header.get("action_type", ANY))
        self._actions: np.ndarray = np.zeros((0, 0), np.float32)
        self._subtask_of_step: np.ndarray = np.zeros(0, np.int64)
        self._subtask = -1
        self._queue: np.ndarray = np.zeros((0, 0), np.float32)
        self._cursor = 0
        self._path = path
        if demo is not None:
            self._actions, self._subtask_of_step = self._demos[demo]

    def seed(self, seed: int) -> None:
        """Pick the demo recorded from the episode with this seed."""
        name = self._fixed or self._by_seed.get(int(seed))
        if name is None:
            raise VlaevalError(f"{self._path} holds no demo recorded from the episode with seed {seed}; record this "
                               "suite's protocol episodes (vlaeval record without --scenes) or pass --agent-opt demo=NAME")
        self._actions, self._subtask_of_step = self._demos[name]
        self._subtask = -1

    def reset(self) -> None:
        """Move on to the demo's next subtask (the runner resets the agent at each one)."""
        self._subtask += 1
        self._queue = self._actions[self._subtask_of_step == self._subtask]
        self._cursor = 0

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        if self._cursor < len(self._queue):
            self._cursor += 1
            return self._queue[self._cursor - 1].astype(np.float32)
        return self._hold()

    def _hold(self) -> np.ndarray:
        last = self._queue[-1] if len(self._queue) else (self._actions[-1] if len(self._actions) else None)
        if last is None:
            raise VlaevalError(f"{self._path}: the selected demo has no recorded actions")
        action = np.array(last, dtype=np.float32)
        if self._relative:
            action[:-1] = 0.0
        return action
