"""Evaluate an agent served by :mod:`vlaeval.agents.remote.server` as if it ran in-process.

The harness talks to :class:`RemoteAgent` like any agent.  What remote-ness adds is failure, so
every wait is bounded: connecting (``connect_timeout_s``), each request (``request_timeout_s``) and
the number of reconnects (``retries``, with exponential backoff).  Once those are spent the call
raises :class:`RemoteAgentError`, which the runner records as that episode's error instead of
stalling the whole evaluation.

After a reconnect the server holds a fresh (or pooled) agent, so the client replays the last
``bind``, ``seed`` and ``reset`` before resending the request.  The agent then restarts from the
episode's initial state: any history it had accumulated in the current episode is lost, which is
logged and counted in :attr:`RemoteAgent.reconnects` so such episodes can be told apart.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.agents.remote.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    WireError,
    encode_context,
    packb,
    spec_from_dict,
    unpackb,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Failures a reconnect can cure; TimeoutError (an OSError) covers connects that never complete.
_TRANSIENT = (OSError, ConnectionClosed, InvalidHandshake)

#: Requests whose effect a fresh server-side agent must see again after a reconnect.
_REPLAYED = ("bind", "seed", "reset")

_CLOSE_TIMEOUT_S = 1.0


class RemoteAgentError(RuntimeError):
    """The served agent could not be reached or answered, after bounded retries."""


class ServedAgentError(RemoteAgentError):
    """The served agent raised; the message carries the server-side exception type and message."""


@dataclass(frozen=True)
class ClientOptions:
    """Bounds on every wait; set from the command line as ``--agent-opt request_timeout_s=30``.

    Attributes:
        connect_timeout_s: limit for opening a connection and receiving the metadata frame.
        request_timeout_s: limit for one reply; generous because a first inference may compile.
        retries: reconnect attempts after a failure before giving up.
        backoff_s: pause before the first retry; doubles on each further one.
        max_backoff_s: ceiling on that pause.
    """

    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # A zero timeout would fail every call; zero retries or backoff are legitimate.
            if value < 0 or (value == 0 and f.name.endswith("timeout_s")):
                raise ValueError(f"remote agent option {f.name}={value} is out of range")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ClientOptions:
        """Parse options that may arrive as strings (``--agent-opt k=v``); unknown names are errors."""
        defaults = cls()
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(
                f"unknown remote agent option(s) {', '.join(unknown)}; "
                f"valid: {', '.join(f.name for f in fields(cls))}"
            )
        return cls(**{k: type(getattr(defaults, k))(v) for k, v in options.items()})


class RemoteAgent(Agent):
    """An agent that forwards every call to a vlaeval agent server.

    Connects on construction, because the harness compares :attr:`spec` (adopted from the
    server's metadata frame) with the suite's conventions before the first episode.

    Attributes:
        uri: the server, ``ws://host:port`` or ``wss://host:port``.
        metadata: the server's metadata frame (agent name, versions, whether the agent is shared).
        server_timing: timings the server reported for the last act (``infer_ms``, ``total_ms``, ...).
        reconnects: how many times the connection was re-established after the first.
    """

    def __init__(self, uri: str, options: ClientOptions = ClientOptions()) -> None:
        if not uri.lower().startswith(("ws://", "wss://")):
            raise ValueError(f"remote agent URI must start with ws:// or wss://, got {uri!r}")
        self.uri = uri
        self.options = options
        self.metadata: dict[str, Any] = {}
        self.server_timing: dict[str, float] = {}
        self.reconnects = 0
        self._connection: ClientConnection | None = None
        self._closer = ExitStack()  # closes the current connection
        self._replay: dict[str, dict[str, Any]] = {}
        self._with_retries(lambda: None)

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> RemoteAgent:
        """Connect to ``uri``; ``options`` are :class:`ClientOptions` fields, possibly as strings."""
        return cls(uri, ClientOptions.from_mapping(options))

    def bind(self, context: AgentContext) -> None:
        super().bind(context)
        self._replay.clear()  # a new environment: the previous episode's seed no longer applies
        self._request({"type": "bind", **encode_context(context)})

    def seed(self, seed: int) -> None:
        self._request({"type": "seed", "seed": int(seed)})

    def reset(self) -> None:
        self._request({"type": "reset"})

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        reply = self._request({"type": "act", "observation": observation, "instruction": instruction})
        return reply["action"]

    def act_batch(self, observations: Sequence[Mapping[str, Any]], instructions: Sequence[str]) -> np.ndarray:
        reply = self._request(
            {"type": "act_batch", "observations": list(observations), "instructions": list(instructions)}
        )
        return reply["actions"]

    def close(self) -> None:
        self._disconnect()

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        reply = self._with_retries(lambda: self._exchange(message))
        if message["type"] in _REPLAYED:
            self._replay[message["type"]] = message
        self.server_timing = reply.get("server_timing", self.server_timing)
        return reply

    def _with_retries(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` on a live connection, reconnecting on transient failures (bounded)."""
        failures = 0
        delay = self.options.backoff_s
        while True:
            try:
                if self._connection is None:
                    self._connect()
                return operation()
            except _TRANSIENT as exc:
                self._disconnect()
                failures += 1
                if failures > self.options.retries:
                    raise RemoteAgentError(
                        f"agent server {self.uri} unreachable after {failures} attempts "
                        f"(last error: {type(exc).__name__}: {exc}). Check that the server is running and "
                        f"that GET /healthz on its port returns 200, or raise the retries / connect_timeout_s "
                        f"agent options."
                    ) from exc
                log.warning("agent server %s: %s: %s; retrying in %.2fs", self.uri, type(exc).__name__, exc, delay)
                time.sleep(delay)
                delay = min(2 * delay, self.options.max_backoff_s)

    def _connect(self) -> None:
        reconnecting = bool(self.metadata)
        # Entered as a context manager, the form websockets supports across versions.
        connection = self._closer.enter_context(
            connect(
                self.uri,
                open_timeout=self.options.connect_timeout_s,
                close_timeout=_CLOSE_TIMEOUT_S,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                proxy=None,  # a served policy is addressed directly, never through an HTTP proxy
            )
        )
        self._connection = connection
        try:
            self._adopt(connection.recv(timeout=self.options.connect_timeout_s))
            for message in self._replay.values():
                self._exchange(message)
        except BaseException:
            self._disconnect()
            raise
        self.reconnects += reconnecting
        if self._replay:
            log.warning(
                "reconnected to %s and replayed %s; the agent's state within the current episode was lost",
                self.uri,
                ", ".join(self._replay),
            )

    def _adopt(self, frame: bytes | str) -> None:
        """Take the served agent's spec, refusing servers that are not (or no longer) the same agent."""
        try:
            metadata = unpackb(frame) if isinstance(frame, bytes) else None
        except WireError:
            metadata = None
        if isinstance(metadata, dict) and "error" in metadata:
            raise RemoteAgentError(f"agent server {self.uri} could not provide an agent:\n{metadata['error']}")
        if not isinstance(metadata, dict) or metadata.get("type") != "metadata":
            raise RemoteAgentError(
                f"{self.uri} is not a vlaeval agent server (its first frame is not a metadata frame); "
                f"serve the policy with vlaeval.agents.remote.server.serve"
            )
        if metadata.get("protocol_version") != PROTOCOL_VERSION:
            raise RemoteAgentError(
                f"{self.uri} speaks protocol {metadata.get('protocol_version')} (vlaeval "
                f"{metadata.get('vlaeval_version')}), this client speaks {PROTOCOL_VERSION}; "
                f"install the same vlaeval version on both sides"
            )
        spec = spec_from_dict(metadata["spec"])
        if self.metadata and (metadata["agent"], spec) != (self.metadata["agent"], self.spec):
            raise RemoteAgentError(
                f"{self.uri} now serves {metadata['agent']!r} with {spec}, not the {self.metadata['agent']!r} "
                f"this evaluation started with; restart the evaluation"
            )
        self.metadata = metadata
        self.spec = spec

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self._connection is not None
        self._connection.send(packb(message))
        try:
            frame = self._connection.recv(timeout=self.options.request_timeout_s)
        except TimeoutError:
            # A late reply would be mistaken for the next request's: start over on a new connection.
            self._disconnect()
            raise RemoteAgentError(
                f"agent server {self.uri} did not answer {message['type']!r} within "
                f"{self.options.request_timeout_s}s; it may be overloaded or stuck "
                f"(raise the request_timeout_s agent option if inference is legitimately slow)"
            ) from None
        try:
            reply = unpackb(frame) if isinstance(frame, bytes) else {"error": frame}
        except WireError as exc:
            raise RemoteAgentError(f"agent server {self.uri} sent an undecodable reply: {exc}") from exc
        if not isinstance(reply, dict):
            raise RemoteAgentError(f"agent server {self.uri} replied with a {type(reply).__name__}, not a map")
        if "error" in reply:
            raise ServedAgentError(f"agent served at {self.uri} failed on {message['type']!r}:\n{reply['error']}")
        return reply

    def _disconnect(self) -> None:
        self._connection = None
        self._closer.close()
