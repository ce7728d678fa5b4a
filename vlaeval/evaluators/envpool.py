"""How the runner lays out a worker's environments: which pool, in this process or one
subprocess each (the pools themselves are in :mod:`vlaeval.envs.pool`, where suites that bring
their own can use them)."""

from __future__ import annotations

from typing import Any, Callable

from vlaeval.envs.pool import AsyncEnvPool, SyncEnvPool
from vlaeval.errors import VlaevalError


def make_pool(mode: str, size: int, *, suite: str, setting: str, agent_spec: Any, action_type: str,
              make_env: Callable[[], Any]) -> SyncEnvPool | AsyncEnvPool:
    """``mode``: ``sync`` or ``async`` (already resolved from ``auto``)."""
    if mode == "async":
        return AsyncEnvPool(suite, setting, agent_spec, action_type, size)
    return SyncEnvPool(make_env, size)


def resolve_mode(mode: str, size: int, agent_spec: Any) -> str:
    """``auto``: subprocesses when there are several envs, unless the agent reads simulator state."""
    if mode not in ("auto", "sync", "async"):
        raise VlaevalError(f"env mode must be auto, sync or async, not {mode!r}")
    if mode == "auto":
        return "async" if size > 1 and not getattr(agent_spec, "privileged", False) else "sync"
    if mode == "async" and getattr(agent_spec, "privileged", False):
        raise VlaevalError("a privileged agent reads the simulator in its own process: use --env-mode sync")
    return mode
