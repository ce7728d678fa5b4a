"""Remote agents: serve any vlaeval agent over a websocket and evaluate it as ``ws://host:port``;
evaluate a policy served by openpi's ``websocket_policy_server`` the same way.

Serving keeps a policy's heavy, conflicting dependencies (JAX, a CUDA build, a model repository)
in their own environment or machine while the harness and simulators run elsewhere; the wire
format is openpi's msgpack-numpy convention, and which protocol a server speaks is read from its
first frame (:func:`vlaeval.agents.remote.client.connect`).  This module stays import-light because
:func:`resolve_uri` is consulted for every agent reference that is not a registered name; the
``websockets`` dependency (extra ``vlaeval[remote]``) is imported only for ``ws://`` URIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlaeval.agents.remote.client import OpenpiAgent, RemoteAgent

__all__ = ["resolve_uri"]


def resolve_uri(uri: str, options: dict[str, Any]) -> RemoteAgent | OpenpiAgent | None:
    """Connect to the policy served at a ``ws://`` or ``wss://`` URI; None for any other reference.

    ``options`` are the agent options (``--agent-opt``): ``protocol``, the client's timeouts and
    retries, and for openpi servers the observation keys and ``replan``.
    """
    if not uri.lower().startswith(("ws://", "wss://")):
        return None
    from vlaeval.errors import VlaevalError

    try:
        from vlaeval.agents.remote.client import RemoteAgentError, connect
    except ImportError as exc:
        raise VlaevalError(f"evaluating {uri} needs the remote extra: pip install 'vlaeval[remote]'") from exc
    try:
        return connect(uri, options)
    except (RemoteAgentError, ValueError) as exc:  # unreachable server, bad option: the user's to fix
        raise VlaevalError(str(exc)) from exc
