"""Evaluate a served policy as if it ran in-process: a vlaeval agent server, or an openpi one.

Two protocols share the transport (msgpack-numpy frames over a websocket, the first frame of a
connection being the server's metadata) and differ in everything after it:

* **vlaeval** (:mod:`vlaeval.agents.remote.server`, :class:`RemoteAgent`): every agent call
  (``bind``, ``seed``, ``reset``, ``act``, ``act_batch``) is a request with one reply, so the served
  agent behaves exactly as it would in-process.
* **openpi** (``websocket_policy_server``, :class:`OpenpiAgent`): each request is an observation
  dict and each reply a chunk of actions; there are no session messages.  The client keeps the
  chunk and plays it one step per ``act``, as openpi's own ``ActionChunkBroker`` does.

:func:`connect` reads which one a server speaks from its first frame: vlaeval's metadata frame
says ``"type": "metadata"``, an openpi server sends its policy's metadata map, which does not.

What remote-ness adds is failure, so every wait is bounded: connecting (``connect_timeout_s``),
each request (``request_timeout_s``) and the number of reconnects (``retries``, with exponential
backoff).  Once those are spent the call raises :class:`RemoteAgentError`, which the runner
records as that episode's error instead of stalling the whole evaluation.

After a reconnect a vlaeval server holds a fresh (or pooled) agent, so the client replays the last
``bind``, ``seed`` and ``reset`` before resending the request.  The agent then restarts from the
episode's initial state: any history it had accumulated in the current episode is lost, which is
logged and counted in :attr:`RemoteAgent.reconnects` so such episodes can be told apart.  An
openpi server keeps nothing between requests, so its client simply resends the observation.
"""

from __future__ import annotations

import collections
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

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
from vlaeval.conventions import AgentSpec
from vlaeval.errors import VlaevalError

log = logging.getLogger(__name__)

T = TypeVar("T")
Opts = TypeVar("Opts")

#: Failures a reconnect can cure; TimeoutError (an OSError) covers connects that never complete.
_TRANSIENT = (OSError, ConnectionClosed, InvalidHandshake)

#: Requests whose effect a fresh server-side agent must see again after a reconnect.
_REPLAYED = ("bind", "seed", "reset")

_CLOSE_TIMEOUT_S = 1.0

#: What the ``protocol`` option may say: detect it from the server's first frame, or insist on one.
PROTOCOLS = ("auto", "vlaeval", "openpi")

#: openpi input -> vlaeval observation entry, by default.  The input names are those of openpi's
#: LIBERO example (a static camera, a wrist camera, proprioception), filled from CALVIN's entries
#: because CALVIN is the suite with both cameras; other suites need ``keys``.
DEFAULT_OPENPI_KEYS = {
    "observation/image": "rgb_static",
    "observation/wrist_image": "rgb_gripper",
    "observation/state": "robot_obs",
}


class RemoteAgentError(RuntimeError):
    """The served policy could not be reached, or answered something that cannot be played."""


class ServedAgentError(RemoteAgentError):
    """The served policy raised; the message carries the server-side exception type and message."""


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


@dataclass(frozen=True)
class OpenpiOptions:
    """How vlaeval's observations and instructions become an openpi policy's inputs.

    openpi's input names are policy-specific (each policy's input transform reads its own), so
    they are configurable: ``--agent-opt 'keys={"observation/state": "state"}'``.

    Attributes:
        keys: openpi input name -> vlaeval observation entry sent under it.  Replaces the default
            (:data:`DEFAULT_OPENPI_KEYS`) entirely; its values become the agent's observation keys,
            which the suite checks it provides and renders.
        prompt_key: the input that carries the instruction.
        replan: play at most this many steps of each chunk before asking again (openpi's LIBERO
            example replans every 5); 0 plays every chunk to its end.
    """

    keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OPENPI_KEYS))
    prompt_key: str = "prompt"
    replan: int = 0

    def __post_init__(self) -> None:
        keys = self.keys
        if not (isinstance(keys, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items())):
            raise ValueError(
                f"remote agent option keys must map openpi input names to observation entries, e.g. "
                f"keys='{{\"observation/state\": \"robot_obs\"}}', not {keys!r}"
            )
        if self.prompt_key in keys:
            raise ValueError(
                f"remote agent option prompt_key={self.prompt_key!r} is also one of the keys; the instruction would replace it"
            )
        if self.replan < 0:
            raise ValueError(f"remote agent option replan={self.replan} is out of range (0 plays whole chunks)")
        object.__setattr__(self, "keys", dict(keys))


#: Every option :func:`connect` understands, for its error on a name it does not.
_OPTION_NAMES = ("protocol", *(f.name for f in fields(ClientOptions)), *(f.name for f in fields(OpenpiOptions)))


def connect(uri: str, options: Mapping[str, Any]) -> RemoteAgent | OpenpiAgent:
    """The agent served at ``uri``, speaking the protocol its server speaks.

    ``options`` are agent options (``--agent-opt``), possibly as strings: ``protocol`` (``auto``,
    ``vlaeval`` or ``openpi``), the :class:`ClientOptions` bounds and, for openpi servers, the
    :class:`OpenpiOptions`.  Detection keeps the connection it read the first frame from, so a
    server sees one connection per agent whichever way the protocol was decided.
    """
    values = dict(options)
    protocol = values.pop("protocol", "auto")
    if protocol not in PROTOCOLS:
        raise ValueError(f"remote agent option protocol={protocol!r} is not one of {', '.join(PROTOCOLS)}")
    openpi_names = {f.name for f in fields(OpenpiOptions)}
    openpi_values = {name: values.pop(name) for name in list(values) if name in openpi_names}
    unknown = sorted(set(values) - {f.name for f in fields(ClientOptions)})
    if unknown:
        raise ValueError(f"unknown remote agent option(s) {', '.join(unknown)}; valid: {', '.join(_OPTION_NAMES)}")
    openpi = _options(OpenpiOptions, openpi_values)  # checked before anything is opened
    link = _Link(uri, _options(ClientOptions, values))
    if protocol == "auto":
        link.call(lambda: None)
        try:
            protocol = "vlaeval" if _is_vlaeval(_metadata(uri, link.greeting)) else "openpi"
        except BaseException:
            link.close()
            raise
    if protocol == "openpi":
        return OpenpiAgent(uri, link.options, openpi, link=link)
    if openpi_values:
        link.close()
        raise ValueError(
            f"remote agent option(s) {', '.join(openpi_values)} apply to openpi servers; {uri} is a vlaeval agent server"
        )
    return RemoteAgent(uri, link.options, link=link)


def _options(cls: type[Opts], values: Mapping[str, Any]) -> Opts:
    """``cls`` from option values that may arrive as strings (``--agent-opt``, Python callers)."""
    defaults = cls()
    converted = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if isinstance(default, (int, float, str)):
            try:
                value = type(default)(value)
            except (TypeError, ValueError):
                raise ValueError(f"remote agent option {name}={value!r} must be of type {type(default).__name__}") from None
        converted[name] = value
    return cls(**converted)


def _metadata(uri: str, frame: bytes | str | None) -> dict[str, Any]:
    """A connection's first frame, which both protocols make a map of the server's metadata."""
    try:
        metadata = unpackb(frame) if isinstance(frame, bytes) else None
    except WireError:
        metadata = None
    if isinstance(metadata, dict) and "error" in metadata:  # a vlaeval server refusing the connection
        raise RemoteAgentError(f"agent server {uri} could not provide an agent:\n{metadata['error']}")
    if not isinstance(metadata, dict):
        raise RemoteAgentError(
            f"{uri} is not a policy server: its first frame is not a msgpack map of metadata, as vlaeval "
            f"and openpi servers send"
        )
    return metadata


def _is_vlaeval(metadata: Mapping[str, Any]) -> bool:
    """vlaeval's metadata frame says what it is; openpi's is whatever map the policy declares."""
    return metadata.get("type") == "metadata"


class _Link:
    """One websocket to a policy server: every wait bounded, transient failures reconnected.

    ``greet`` checks the first frame of every connection (the server's metadata) and may exchange
    requests on it before it is used (a vlaeval client's replay); a connection it refuses is closed.
    """

    def __init__(self, uri: str, options: ClientOptions) -> None:
        if not uri.lower().startswith(("ws://", "wss://")):
            raise ValueError(f"remote agent URI must start with ws:// or wss://, got {uri!r}")
        self.uri = uri
        self.options = options
        self.reconnects = 0
        self.greeting: bytes | str | None = None  # the current connection's first frame
        self._greet: Callable[[bytes | str], None] = lambda frame: None
        self._connected_before = False
        self._connection: ClientConnection | None = None
        self._closer = ExitStack()  # closes the current connection

    def open(self, greet: Callable[[bytes | str], None]) -> None:
        """Check every connection's first frame with ``greet``, starting with the current one's."""
        self._greet = greet
        if self._connection is None:
            self.call(lambda: None)
            return
        try:
            greet(self.greeting)
        except BaseException:
            self.close()
            raise

    def call(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` on a live connection, reconnecting on transient failures (bounded)."""
        failures = 0
        delay = self.options.backoff_s
        while True:
            try:
                if self._connection is None:
                    self._connect()
                return operation()
            except _TRANSIENT as exc:
                self.close()
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

    def exchange(self, frame: bytes, what: str) -> bytes | str:
        """Send ``frame`` and return the reply; ``what`` names the request in a timeout's error."""
        assert self._connection is not None
        try:
            self._connection.send(frame)
            return self._connection.recv(timeout=self.options.request_timeout_s)
        except BaseException as exc:
            # Whatever ended the wait (no reply in time, the runner's step deadline, a lost
            # connection), a late reply would be mistaken for the next request's: start over.
            self.close()
            if not isinstance(exc, TimeoutError):
                raise
            raise RemoteAgentError(
                f"agent server {self.uri} did not answer {what!r} within "
                f"{self.options.request_timeout_s}s; it may be overloaded or stuck "
                f"(raise the request_timeout_s agent option if inference is legitimately slow)"
            ) from None

    def close(self) -> None:
        """Drop the connection; the next :meth:`call` opens a new one."""
        self._connection = None
        self._closer.close()

    def _connect(self) -> None:
        # Entered as a context manager, the form websockets supports across versions.
        connection = self._closer.enter_context(
            ws_connect(
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
            self.greeting = connection.recv(timeout=self.options.connect_timeout_s)
            self._greet(self.greeting)
        except BaseException:
            self.close()
            raise
        self.reconnects += self._connected_before
        self._connected_before = True


def _reply(uri: str, frame: bytes) -> dict[str, Any]:
    try:
        reply = unpackb(frame)
    except WireError as exc:
        raise RemoteAgentError(f"agent server {uri} sent an undecodable reply: {exc}") from exc
    if not isinstance(reply, dict):
        raise RemoteAgentError(f"agent server {uri} replied with a {type(reply).__name__}, not a map")
    return reply


class _LinkedAgent(Agent):
    """What both protocols' agents expose about their connection (one :class:`_Link` each)."""

    _link: _Link

    @property
    def uri(self) -> str:
        return self._link.uri

    @property
    def options(self) -> ClientOptions:
        return self._link.options

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established after the first."""
        return self._link.reconnects

    def close(self) -> None:
        self._link.close()


class RemoteAgent(_LinkedAgent):
    """An agent that forwards every call to a vlaeval agent server.

    Connects on construction, because the harness compares :attr:`spec` (adopted from the
    server's metadata frame) with the suite's conventions before the first episode.  ``link`` is
    an open connection to ``uri`` to adopt instead (:func:`connect` hands over the one it detected
    the protocol on).

    Attributes:
        metadata: the server's metadata frame (agent name, versions, whether the agent is shared).
        server_timing: timings the server reported for the last act (``infer_ms``, ``total_ms``, ...).
    """

    def __init__(self, uri: str, options: ClientOptions = ClientOptions(), *, link: _Link | None = None) -> None:
        self.metadata: dict[str, Any] = {}
        self.server_timing: dict[str, float] = {}
        self._replay: dict[str, dict[str, Any]] = {}
        self._link = link or _Link(uri, options)
        self._link.open(self._greet)

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> RemoteAgent:
        """Connect to ``uri``; ``options`` are :class:`ClientOptions` fields, possibly as strings."""
        agent = connect(uri, {**options, "protocol": "vlaeval"})
        assert isinstance(agent, RemoteAgent)
        return agent

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


    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        reply = self._link.call(lambda: self._exchange(message))
        if message["type"] in _REPLAYED:
            self._replay[message["type"]] = message
        self.server_timing = reply.get("server_timing", self.server_timing)
        return reply

    def _greet(self, frame: bytes | str) -> None:
        """Adopt a new connection's metadata, then bring its agent to where the last one was."""
        self._adopt(frame)
        for message in self._replay.values():
            self._exchange(message)
        if self._replay:
            log.warning(
                "reconnected to %s and replayed %s; the agent's state within the current episode was lost",
                self.uri,
                ", ".join(self._replay),
            )

    def _adopt(self, frame: bytes | str) -> None:
        """Take the served agent's spec, refusing servers that are not (or no longer) the same agent."""
        metadata = _metadata(self.uri, frame)
        if not _is_vlaeval(metadata):
            raise RemoteAgentError(
                f"{self.uri} is not a vlaeval agent server (its first frame is not a vlaeval metadata frame); "
                f"for an openpi policy server drop protocol=vlaeval, else serve the policy with `vlaeval serve`"
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
        frame = self._link.exchange(packb(message), message["type"])
        reply = _reply(self.uri, frame) if isinstance(frame, bytes) else {"error": frame}
        if "error" in reply:
            raise ServedAgentError(f"agent served at {self.uri} failed on {message['type']!r}:\n{reply['error']}")
        return reply


class OpenpiAgent(_LinkedAgent):
    """A policy served by openpi's ``websocket_policy_server`` (or any server of its wire format).

    Each request is one observation dict (:class:`OpenpiOptions` says which entries go under which
    names, and where the instruction goes); each reply holds ``"actions"`` of shape ``(chunk,
    action_dim)`` (a single ``(action_dim,)`` action is a chunk of one).  :meth:`act` plays the
    chunk one step per call, in order, and asks again when it is used up or after ``replan``
    steps.  :meth:`reset`, which the runner calls at every episode start and every chained
    subtask, drops the rest of the chunk: its actions were planned for the previous instruction.

    openpi has no ``reset`` or ``seed`` message, so neither reaches the server: a stochastic
    policy (flow matching, sampling) is not seeded by the run's seeds.  An openpi server closes
    the connection after an inference error (sending the traceback as a text frame); that fails
    the request with the traceback's last line, and the next request opens a new connection.

    Attributes:
        metadata: the policy's metadata, as the server sent it on connect.  An integer
            ``action_dim`` in it is checked against the suite's action space at :meth:`bind`.
        server_timing: timings the server reported for the last inference (``infer_ms``, ...).
    """

    def __init__(self, uri: str, options: ClientOptions = ClientOptions(), openpi: OpenpiOptions = OpenpiOptions(),
                 *, link: _Link | None = None) -> None:
        self.openpi = openpi
        self.spec = AgentSpec(observation_keys=tuple(dict.fromkeys(openpi.keys.values())))
        self.metadata: dict[str, Any] = {}
        self.server_timing: dict[str, float] = {}
        self._greeting: bytes | str | None = None
        self._chunk: collections.deque[np.ndarray] = collections.deque()
        self._action_shape: tuple[int, ...] | None = None
        self._link = link or _Link(uri, options)
        self._link.open(self._adopt)

    def bind(self, context: AgentContext) -> None:
        """Learn the suite's action shape; a policy whose metadata declares another fails here, before step 1."""
        super().bind(context)
        self._chunk.clear()
        self._action_shape = tuple(context.action_space.shape)
        declared = self.metadata.get("action_dim")
        if declared is not None and (declared,) != self._action_shape:
            raise VlaevalError(
                f"the openpi policy at {self.uri} declares action_dim={declared!r} in its metadata, suite "
                f"{context.suite!r} takes actions of shape {self._action_shape}; serve a policy trained for it"
            )

    def reset(self) -> None:
        self._chunk.clear()

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        if not self._chunk:
            inputs = {name: observation[entry] for name, entry in self.openpi.keys.items()}
            inputs[self.openpi.prompt_key] = instruction
            request = packb(inputs)
            chunk = self._link.call(lambda: self._infer(request))
            self._chunk.extend(chunk[: self.openpi.replan or None])
        return self._chunk.popleft()


    def _adopt(self, frame: bytes | str) -> None:
        """Take the policy's metadata, refusing a vlaeval server and a server that changed policy."""
        metadata = _metadata(self.uri, frame)
        if _is_vlaeval(metadata):
            raise RemoteAgentError(f"{self.uri} is a vlaeval agent server, not an openpi one; drop protocol=openpi")
        if self._greeting is not None and frame != self._greeting:
            raise RemoteAgentError(
                f"{self.uri} now serves a policy with other metadata than the one this evaluation started "
                f"with; restart the evaluation"
            )
        self._greeting = frame
        self.metadata = metadata

    def _infer(self, request: bytes) -> np.ndarray:
        """One inference: the reply's action chunk, shaped ``(steps, *action shape)``."""
        frame = self._link.exchange(request, "infer")
        if isinstance(frame, str):  # openpi's error report: a traceback, then the server closes
            self._link.close()
            log.error("the policy served at %s failed:\n%s", self.uri, frame)
            lines = frame.strip().splitlines()
            raise ServedAgentError(f"policy served at {self.uri} failed: {lines[-1] if lines else 'no message'}")
        reply = _reply(self.uri, frame)
        self.server_timing = reply.get("server_timing", self.server_timing)
        expected = "an openpi policy replies {'actions': array of shape (chunk, action_dim), ...}"
        if "actions" not in reply:
            raise RemoteAgentError(
                f"policy served at {self.uri} replied without 'actions' (keys: {', '.join(map(repr, reply))}); {expected}"
            )
        actions = np.asarray(reply["actions"])
        if actions.ndim not in (1, 2) or not actions.size:
            raise RemoteAgentError(f"policy served at {self.uri} replied with actions of shape {actions.shape}; {expected}")
        chunk = np.atleast_2d(actions)
        if self._action_shape is not None and chunk.shape[1:] != self._action_shape:
            raise RemoteAgentError(
                f"policy served at {self.uri} returns actions of shape {chunk.shape[1:]}, suite "
                f"{self.context.suite!r} takes {self._action_shape}; serve a policy trained for its action space"
            )
        return chunk
