"""A plugin whose registration fails halfway: one hook succeeds, the next raises after registering."""

from __future__ import annotations

from typing import Any, Callable

import vlaeval
from vlaeval.results.metrics import MetricSpec


@vlaeval.hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    register("half-agent", "vlaeval_toy.agents:Solver", description="registered before the plugin failed")


@vlaeval.hookimpl
def vlaeval_register_metrics(register: Callable[..., None]) -> None:
    register(MetricSpec("half_metric", "vlaeval.results.metrics:task_success", "registered just before the hook raised"))
    raise RuntimeError("raised halfway through registering")


@vlaeval.hookimpl
def vlaeval_resolve_agent(uri: str, options: dict[str, Any]) -> Any:
    if uri.startswith("half://"):
        from vlaeval_toy.agents import Solver

        return Solver()
    return None
