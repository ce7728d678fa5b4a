"""Agents that attack the process they run in, for the worker-supervision fault tests.

They are referenced as ``tests.faults.hostile_agents:Name`` agent URIs, so spawned workers import
them the way they import any third-party agent.  Each misbehaves only in the episodes whose seeds
it is given (``seeds``), so the tests can check that neighbouring episodes are untouched.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Sequence

import numpy as np


class _Base:
    """Moves toward the toy suite's goal, like the toy solver, so innocent episodes succeed."""

    def __init__(self, seeds: Sequence[int] = (), marker: str = "") -> None:
        self.seeds = {int(s) for s in seeds}
        self.marker = marker
        self.current = -1

    def seed(self, seed: int) -> None:
        self.current = seed

    def reset(self) -> None:
        pass

    def hostile(self) -> bool:
        """This episode is one to misbehave in (once per ``marker`` file, when one is given)."""
        if self.current not in self.seeds:
            return False
        if not self.marker:
            return True
        try:
            os.close(os.open(f"{self.marker}-{self.current}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        x, goal = observation["state"]
        return np.array([np.clip((goal - x) / 0.1, -1, 1), 0, 0, 0, 0, 0, 1], dtype=np.float32)


class Killer(_Base):
    """Ends its own process from ``act`` in its episodes, in one of several ways."""

    def __init__(self, how: str = "sigkill", **kw: Any) -> None:
        super().__init__(**kw)
        self.how = how

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        if self.hostile():
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.how == "os_exit":
                os._exit(3)
            elif self.how == "system_exit":
                raise SystemExit(4)
            elif self.how == "keyboard_interrupt":
                raise KeyboardInterrupt
        return super().act(observation, instruction)


class Swallower(_Base):
    """Hangs in ``act`` for ``seconds`` and swallows every exception raised to stop it."""

    def __init__(self, seconds: float = 120.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.seconds = seconds

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        if self.hostile():
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                try:
                    time.sleep(0.01)
                except BaseException:  # noqa: BLE001 - the point of this agent
                    pass
        return super().act(observation, instruction)


class SlowSetup(_Base):
    """Takes ``seconds`` to construct (``where="init"``) or to bind (``where="bind"``)."""

    def __init__(self, where: str = "init", seconds: float = 120.0) -> None:
        super().__init__()
        self.where, self.seconds = where, seconds
        if where == "init":
            time.sleep(seconds)

    def bind(self, context: Any) -> None:
        if self.where == "bind":
            time.sleep(self.seconds)


class PidRecorder(_Base):
    """Writes the id of the process its ``act`` runs in to ``path``."""

    def __init__(self, path: str = "") -> None:
        super().__init__()
        self.path = path

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        with open(self.path, "w") as fh:
            fh.write(str(os.getpid()))
        return super().act(observation, instruction)


class Returns(_Base):
    """Returns ``value`` (whatever it is) as its action in its episodes."""

    def __init__(self, value: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.value = value

    def act(self, observation: Any, instruction: str) -> Any:
        if self.hostile():
            return self.value
        return super().act(observation, instruction)
