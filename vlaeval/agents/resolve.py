"""Turning an agent reference (registered name or URI) into an agent instance."""

from __future__ import annotations

from typing import Any, Mapping

from vlaeval.errors import VlaevalError


def make_agent(ref: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build the agent a user named.

    Registered names win; anything else goes to the ``vlaeval_resolve_agent`` hook, where plugins
    claim URIs (``ws://host:port``, ``module:attr``, engine paths).  Constructor failures become
    one-line errors because they are almost always a bad option or a missing file.
    """
    from vlaeval.plugins.manager import plugin_manager, registries

    options = dict(options or {})
    agents = registries().agent
    if ref in agents:
        entry = agents.get(ref)
        factory = entry.load()
        return construct(factory, options, f"agent {ref!r}")
    agent = plugin_manager().hook.vlaeval_resolve_agent(uri=ref, options=options)
    if agent is None:
        agents.get(ref)  # raises the did-you-mean error
    return agent


def agent_spec_of(agent: Any) -> Any:
    """The :class:`~vlaeval.conventions.AgentSpec` an agent declares (default: accepts anything)."""
    from vlaeval.conventions import AgentSpec

    spec = getattr(agent, "spec", None)
    if spec is None:
        return AgentSpec()
    if not isinstance(spec, AgentSpec):
        raise VlaevalError(f"{type(agent).__name__}.spec must be a vlaeval.AgentSpec, not {type(spec).__name__}")
    return spec


def construct(factory: Any, options: dict[str, Any], what: str) -> Any:
    try:
        agent = factory(**options)
    except TypeError as exc:
        raise VlaevalError(f"cannot create {what} with options {options}: {exc}") from exc
    except VlaevalError:
        raise
    except (OSError, ValueError) as exc:
        raise VlaevalError(f"cannot create {what}: {exc}") from exc
    missing = [m for m in ("act", "reset") if not callable(getattr(agent, m, None))]
    if missing:
        raise VlaevalError(f"{what} ({type(agent).__name__}) lacks {', '.join(missing)}(); agents must implement the vlaeval.Agent contract")
    return agent
