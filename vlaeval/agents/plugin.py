"""Built-in plugin: the agents shipped with vlaeval and the agent URI schemes they understand."""

from __future__ import annotations

from typing import Any, Callable

from vlaeval.plugins.hookspecs import hookimpl


@hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    register("random", "vlaeval.agents.random:RandomAgent", description="uniform samples of the suite's action space (seeded)")
    register("expert", "vlaeval.agents.expert.agent:CalvinExpert", description="scripted CALVIN expert reading the simulator state (privileged)")


@hookimpl(trylast=True)
def vlaeval_resolve_agent(uri: str, options: dict[str, Any]) -> Any:
    """``package.module:AgentClass`` builds an unregistered agent class straight from its import path."""
    if "://" in uri or ":" not in uri:
        return None
    from vlaeval.agents.resolve import construct
    from vlaeval.plugins.registry import import_target

    return construct(import_target(uri, what="agent"), options, f"agent {uri!r}")
