"""Several environments stepped in lock-step: in this process, or one subprocess each.

This is Gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` idea with what the evaluation loop
needs and Gymnasium's vector API lacks: each environment is reset with its *own* seed and options
whenever its episode starts (no auto-reset), and only the environments that have an episode in
flight are stepped.  The async pool runs each environment in a subprocess started with
``python -m vlaeval.envs._envproc`` (not ``multiprocessing``, so it also works inside Ray
workers and other hosts whose ``__main__`` must not be re-imported) and talks to it over a socket
pair; stepping sends every action first and then collects every result, so the simulators run in
parallel while the caller waits (cpu-performance.md §4: about 1.7x for 2 envs of ~8 ms steps).

It lives with the suites, below the runner, because a suite that simulates many environments in
one batched simulator (``simpler`` on the GPU) or must keep one per process (``calvin-upstream``)
offers its own pool through :meth:`~vlaeval.envs.suite.Suite.batched_pool`, and a suite may not
import the runner's layer.

Environment exceptions are returned per slot as ``(False, "Type: message")`` so the caller fails
only that episode, exactly as the sequential loop does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, Callable, Mapping, Protocol

from vlaeval.errors import VlaevalError

#: ``(ok, payload)``: payload is the result, or ``"Type: message"`` of the exception.
Outcome = tuple[bool, Any]


class EnvPool(Protocol):
    """What the batched runner steps: ``size`` slots, each playing its own episode.

    ``reset`` takes ``{slot: (seed, options)}`` and returns ``{slot: (True, observation)}``;
    ``step`` takes ``{slot: action}`` and returns ``{slot: (True, (observation, is_success,
    terminated, truncated))}``; a slot whose env raised gets ``(False, "Type: message")``.
    ``kind`` names the pool in the run manifest (``env_mode``).
    """

    kind: str
    action_space: Any
    observation_space: Any

    @property
    def size(self) -> int: ...

    def unwrapped(self, slot: int) -> Any:
        """The env of ``slot`` for privileged agents, or None where it is not in this process."""

    def reset(self, requests: Mapping[int, tuple[int, Mapping[str, Any]]]) -> dict[int, Outcome]: ...

    def step(self, actions: Mapping[int, Any]) -> dict[int, Outcome]: ...

    def close(self) -> None: ...


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def step_outcome(env: Any, action: Any) -> Outcome:
    """``env.step`` reduced to what the runner reads: (obs, is_success, terminated, truncated)."""
    try:
        obs, _, terminated, truncated, info = env.step(action)
    except Exception as exc:
        return False, describe(exc)
    return True, (obs, bool(info.get("is_success")), bool(terminated), bool(truncated))


def reset_outcome(env: Any, seed: int, options: Mapping[str, Any]) -> Outcome:
    try:
        obs, _ = env.reset(seed=seed, options=dict(options))
    except Exception as exc:
        return False, describe(exc)
    return True, obs
class SyncEnvPool:
    """The environments live in this process and are stepped one after the other."""

    kind = "sync"

    def __init__(self, make_env: Callable[[], Any], size: int) -> None:
        self.envs: list[Any] = []
        try:
            for _ in range(size):
                self.envs.append(make_env())
        except BaseException:
            self.close()
            raise
        self.action_space = self.envs[0].action_space
        self.observation_space = self.envs[0].observation_space

    @property
    def size(self) -> int:
        return len(self.envs)

    def unwrapped(self, slot: int) -> Any:
        return self.envs[slot].unwrapped

    def reset(self, requests: Mapping[int, tuple[int, Mapping[str, Any]]]) -> dict[int, Outcome]:
        return {slot: reset_outcome(self.envs[slot], seed, options) for slot, (seed, options) in requests.items()}

    def step(self, actions: Mapping[int, Any]) -> dict[int, Outcome]:
        return {slot: step_outcome(self.envs[slot], action) for slot, action in actions.items()}

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:
                pass
        self.envs = []


class AsyncEnvPool:
    """One subprocess per environment; resets and steps of different slots run in parallel.

    Args:
        suite: registered suite name; the subprocess builds its env with the suite's ``make_env``.
        setting, agent_spec, action_type: as for :meth:`Suite.make_env`.
        size: number of environments.
    """

    kind = "async"

    def __init__(self, suite: str, setting: str, agent_spec: Any, action_type: str, size: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conns: list[Connection] = []
        env = dict(os.environ)
        # Simulators are single-threaded; keep numeric libraries from oversubscribing the cores.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, "1")
        try:
            for _ in range(size):
                parent, child = socket.socketpair()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "vlaeval.envs._envproc", str(child.fileno())],
                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env,
                )
                child.close()
                self.procs.append(proc)
                self.conns.append(Connection(parent.detach()))
            for conn in self.conns:
                conn.send(("make", suite, setting, agent_spec, action_type))
            spaces = [self._recv(slot) for slot in range(size)]
        except BaseException:
            self.close()
            raise
        self.action_space, self.observation_space = spaces[0]

    @property
    def size(self) -> int:
        return len(self.conns)

    def unwrapped(self, slot: int) -> Any:
        return None  # lives in another process: privileged agents need the sync pool

    def reset(self, requests: Mapping[int, tuple[int, Mapping[str, Any]]]) -> dict[int, Outcome]:
        for slot, (seed, options) in requests.items():
            self._send(slot, ("reset", seed, dict(options)))
        return {slot: self._recv(slot) for slot in requests}

    def step(self, actions: Mapping[int, Any]) -> dict[int, Outcome]:
        for slot, action in actions.items():
            self._send(slot, ("step", action))
        return {slot: self._recv(slot) for slot in actions}

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close",))
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []

    def _send(self, slot: int, message: tuple[Any, ...]) -> None:
        try:
            self.conns[slot].send(message)
        except OSError as exc:
            raise self._died(slot, exc) from None

    def _recv(self, slot: int) -> Any:
        try:
            kind, payload = self.conns[slot].recv()
        except (EOFError, OSError) as exc:
            raise self._died(slot, exc) from None
        if kind == "fatal":
            raise VlaevalError(payload)
        return payload

    def _died(self, slot: int, exc: BaseException) -> VlaevalError:
        code = self.procs[slot].poll()
        return VlaevalError(
            f"environment process {slot} died (exit code {code}, {type(exc).__name__}); "
            f"finished episodes are saved, resume the run with --resume"
        )
