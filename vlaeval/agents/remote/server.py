"""Serve any vlaeval agent over a websocket, so policies run in their own environment or machine.

Protocol (msgpack binary frames, :mod:`vlaeval.agents.remote.wire`).  On connect the server sends a
metadata frame ``{"type": "metadata", "protocol_version", "vlaeval_version", "agent", "spec",
"shared", "max_batch"}`` so clients adopt the agent's :class:`~vlaeval.conventions.AgentSpec` and the
harness checks conventions before the first step.  Every request then gets exactly one reply:

============================================================  ===================================
request                                                       reply
============================================================  ===================================
``{"type": "bind", suite, setting, action_type, ...spaces}``  ``{"ok": True}``
``{"type": "seed", "seed": n}``                               ``{"ok": True}``
``{"type": "reset"}``                                         ``{"ok": True}``
``{"type": "act", "observation": {...}, "instruction": s}``   ``{"action", "server_timing"}``
``{"type": "act_batch", "observations", "instructions"}``     ``{"actions", "server_timing"}``
============================================================  ===================================

Any failure (agent exception, bad frame, unknown type, declared spaces over the limits of
:func:`~vlaeval.agents.remote.wire.check_spaces`) is replied as ``{"error": "ExceptionType:
message"}`` and the connection stays usable.  The reply holds the first line of the message with
directories stripped from paths, never a traceback: anyone who reaches the port reads it, and
tracebacks map the server's files.  The server logs the whole traceback instead.  ``GET /healthz``
on the same port returns 200; the socket only listens once the agent is built, so 200 means ready.

Whose state is whose -- decided by what :func:`serve` is given:

* **An agent instance is shared by every connection.**  With one client this is exactly
  in-process behaviour.  With several, concurrent ``act`` requests are merged into one
  ``agent.act_batch`` call (at most ``max_batch``, waiting at most ``batch_wait_ms`` for
  stragglers, and never waiting once every open connection has a request queued), and any
  client's ``bind``/``seed``/``reset`` reaches the one agent.  That is correct only for agents whose
  action depends on nothing but the current observation and instruction.  A lone ``act`` is sent
  to ``agent.act``, never to a one-slot ``act_batch``, so batch-slot state is not disturbed.
* **A class or zero-argument factory gives each connection its own agent**, so per-episode state
  (history windows, chunk queues, RNGs) is isolated exactly as in-process.  A closed connection's
  agent is kept for the next one (clients always re-bind, re-seed and reset), so a client that
  reconnects does not reload weights; beyond ``max_idle`` idle agents, a closed connection's agent
  is closed (``agent.close()``) and dropped.  Requests from different connections are not merged;
  clients batch themselves by sending ``act_batch`` (vector envs), which goes to
  ``agent.act_batch`` with slot ``i`` = observation ``i``.

Clients cannot make the server hold more than ``max_agents`` agents, live and idle together (with
a shared instance: serve more than ``max_agents`` connections).  A connection beyond that gets an
error frame saying so instead of the metadata frame, and is closed with code 1013 (try again
later).  A connection that sends nothing for ``idle_timeout_s`` is closed (code 1001), so a client
that connects and goes quiet cannot hold a slot forever; vlaeval's client reconnects on its next
request and replays its bind and seed.

All agent calls, agent construction and ``close()`` run on one worker thread: models are rarely
thread-safe.  Decoding frames and rebuilding bind spaces run on other threads, so the event loop
stays free to answer health checks and keep-alive pings while the agent computes or a large frame
is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Sequence, Union

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from vlaeval.agents.base import Agent
from vlaeval.agents.remote.limits import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_AGENTS, DEFAULT_MAX_BATCH
from vlaeval.agents.remote.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    WireError,
    decode_context,
    packb,
    spec_to_dict,
    unpackb,
    vlaeval_version,
)
from vlaeval.conventions import AgentSpec

log = logging.getLogger(__name__)

#: An agent instance (shared by all connections) or a factory (one agent per connection).
AgentSource = Union[Agent, Callable[[], Agent]]

#: Directories of absolute POSIX, home-relative and Windows paths in an error message (not URLs).
_DIRECTORIES = re.compile(r"(?<![\w:/\\.~])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"/\\:]+[/\\])+")
#: Longest error message sent to a client.
_MAX_ERROR_CHARS = 300


def serve(
    agent: AgentSource,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_wait_ms: float = 2.0,
    max_agents: int = DEFAULT_MAX_AGENTS,
    max_idle: int = 1,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
) -> None:
    """Serve ``agent`` until interrupted (Ctrl-C).

    The default host is loopback: exposing a policy to the network is a deliberate choice
    (``host="0.0.0.0"``), since the protocol has no authentication.  ``max_agents``, ``max_idle``
    and ``idle_timeout_s`` bound the agents held (see the module docstring).
    """
    server = _AgentServer(
        agent, max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_agents=max_agents, max_idle=max_idle,
        idle_timeout_s=idle_timeout_s,
    )

    def announce(bound: int) -> None:
        log.info("serving %s on ws://%s:%d (health: http://%s:%d/healthz)", server.name, host, bound, host, bound)

    try:
        asyncio.run(server.run(host, port, on_listening=announce, stop=None))
    except KeyboardInterrupt:
        log.info("server stopped")


@dataclass
class ServerThread:
    """A server running on a background thread; stop it with :meth:`stop` or a ``with`` block."""

    host: str
    port: int
    _thread: threading.Thread = field(repr=False)
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _stop: asyncio.Event = field(repr=False)

    @property
    def uri(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close every connection, wait for in-flight agent calls, then close the agent(s)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"agent server on port {self.port} did not stop within {timeout_s}s")

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server_in_thread(
    agent: AgentSource,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_wait_ms: float = 2.0,
    max_agents: int = DEFAULT_MAX_AGENTS,
    max_idle: int = 1,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    startup_timeout_s: float = 30.0,
) -> ServerThread:
    """Start a server on a daemon thread and return once it listens (``port=0`` picks a free port).

    Meant for tests and notebooks; startup errors (port in use, agent fails to build) are raised
    here rather than lost on the thread.
    """
    started = threading.Event()
    outcome: dict[str, Any] = {}

    async def main() -> None:
        outcome["loop"] = asyncio.get_running_loop()
        outcome["stop"] = stop = asyncio.Event()
        server = _AgentServer(
            agent, max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_agents=max_agents, max_idle=max_idle,
            idle_timeout_s=idle_timeout_s,
        )

        def listening(bound: int) -> None:
            outcome["port"] = bound
            started.set()

        await server.run(host, port, on_listening=listening, stop=stop)

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the caller of start_server_in_thread
            outcome["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=target, name="vlaeval-agent-server", daemon=True)
    thread.start()
    if not started.wait(startup_timeout_s):
        raise TimeoutError(f"agent server did not start within {startup_timeout_s}s")
    if "error" in outcome:
        raise RuntimeError(f"agent server failed to start: {outcome['error']!r}") from outcome["error"]
    return ServerThread(host, outcome["port"], thread, outcome["loop"], outcome["stop"])


class _AtCapacity(Exception):
    """A new connection would need more agents (or connections) than ``max_agents`` allows."""


class _AgentServer:
    """Owns the agent(s), the worker thread and the batcher; one per listening socket."""

    def __init__(
        self, source: AgentSource, *, max_batch: int, batch_wait_ms: float, max_agents: int, max_idle: int,
        idle_timeout_s: float,
    ) -> None:
        if max_batch < 1 or batch_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and batch_wait_ms >= 0, got {max_batch}, {batch_wait_ms}")
        if not idle_timeout_s > 0:
            raise ValueError(f"need idle_timeout_s > 0, got {idle_timeout_s}")
        if not 1 <= max_idle <= max_agents:
            raise ValueError(f"need 1 <= max_idle <= max_agents, got max_idle={max_idle}, max_agents={max_agents}")
        self._factory: Callable[[], Agent] | None = source if _is_factory(source) else None
        # Build one agent now: it must exist before the socket listens (health 200 = ready) and
        # it tells the handshake which spec is served.
        first = self._factory() if self._factory else source
        spec = getattr(first, "spec", AgentSpec())
        if spec.privileged:
            raise ValueError(f"{type(first).__name__} reads the simulator (privileged) and cannot be served remotely")
        self.name: str = getattr(first, "name", type(first).__name__)
        self._shared: Agent | None = None if self._factory else first
        self._max_agents, self._max_idle, self._idle_timeout_s = max_agents, max_idle, idle_timeout_s
        # Factory agents: every one built and not yet closed (live and idle), the idle ones, and
        # how many are being built; the first three together never exceed max_agents.
        self._held: list[Agent] = [first] if self._factory else []
        self._idle: list[Agent] = [first] if self._factory else []
        self._building = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlaeval-agent")
        self._connections = 0
        self._batcher = _ActBatcher(self, self._shared, max_batch, batch_wait_ms / 1e3) if self._shared else None
        self._metadata = packb(
            {
                "type": "metadata",
                "protocol_version": PROTOCOL_VERSION,
                "vlaeval_version": vlaeval_version(),
                "agent": self.name,
                "spec": spec_to_dict(spec),
                "shared": self._shared is not None,
                "max_batch": max_batch,
            }
        )

    @property
    def open_connections(self) -> int:
        return self._connections

    async def run(
        self, host: str, port: int, *, on_listening: Callable[[int], None], stop: asyncio.Event | None
    ) -> None:
        """Listen until ``stop`` is set (or forever); always closes connections, then the agents."""
        batching = asyncio.create_task(self._batcher.run()) if self._batcher else None
        try:
            async with ws_serve(
                self._handle,
                host,
                port,
                process_request=_health,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
            ) as listener:
                on_listening(listener.sockets[0].getsockname()[1])
                await (stop.wait() if stop else listener.serve_forever())
        finally:
            if batching:
                batching.cancel()
            self._executor.shutdown(wait=True)
            for agent in [self._shared] if self._shared is not None else self._held:
                _close(agent)

    async def call(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """Run ``fn`` on the agent thread; returns its result and its own duration in ms."""

        def timed() -> tuple[Any, float]:
            start = time.perf_counter()
            result = fn(*args)
            return result, (time.perf_counter() - start) * 1e3

        return await asyncio.get_running_loop().run_in_executor(self._executor, timed)

    async def _handle(self, connection: ServerConnection) -> None:
        try:
            agent = await self._checkout()
        except _AtCapacity as exc:
            log.warning("refused a connection from %s: %s", connection.remote_address, exc)
            await _refuse(connection, str(exc), CloseCode.TRY_AGAIN_LATER, f"at capacity (--max-agents {self._max_agents})")
            return
        except Exception as exc:  # e.g. no memory for another copy: tell the client instead of dropping it
            log.error("could not build an agent for a connection from %s", connection.remote_address, exc_info=exc)
            await _refuse(connection, _client_error(exc), CloseCode.INTERNAL_ERROR, "could not build an agent")
            return
        self._connections += 1
        if self._shared is not None and self._connections == 2:
            log.warning(
                "%s is shared by several connections: their acts are batched together and any client's "
                "reset/seed reaches the one agent; serve a factory instead if the agent keeps state",
                self.name,
            )
        try:
            await connection.send(self._metadata)
            while True:
                try:
                    frame = await asyncio.wait_for(connection.recv(), self._idle_timeout_s)
                except TimeoutError:
                    log.info("closing a connection from %s: idle for %gs", connection.remote_address, self._idle_timeout_s)
                    await connection.close(CloseCode.GOING_AWAY, f"idle for {self._idle_timeout_s:g}s; reconnect to continue")
                    break
                await connection.send(await self._reply(agent, frame))
        except ConnectionClosed:
            pass  # the client went away; nothing left to answer
        finally:
            self._connections -= 1
            await self._checkin(agent)

    async def _checkout(self) -> Agent:
        """The agent for a new connection: the shared one, an idle one, or a new one within ``max_agents``."""
        if self._shared is not None:
            if self._connections >= self._max_agents:
                raise _AtCapacity(
                    f"server at capacity: {self._connections} connections are open, the most it serves "
                    f"(--max-agents {self._max_agents}); close a client or serve with a larger --max-agents"
                )
            return self._shared
        if self._idle:
            return self._idle.pop()
        if len(self._held) + self._building >= self._max_agents:
            raise _AtCapacity(
                f"server at capacity: open connections hold every agent it may build (--max-agents "
                f"{self._max_agents}); close a client or serve with a larger --max-agents"
            )
        self._building += 1
        try:
            agent, _ = await self.call(self._factory)
        finally:
            self._building -= 1
        self._held.append(agent)
        return agent

    async def _checkin(self, agent: Agent) -> None:
        """Keep a closed connection's agent for the next one, or close it when enough are idle."""
        if self._shared is not None:
            return
        if len(self._idle) < self._max_idle:
            self._idle.append(agent)
            return
        try:
            await self.call(_close, agent)
        finally:
            self._held.remove(agent)  # only now: until close() returns, its memory is still held

    async def _reply(self, agent: Agent, frame: bytes | str) -> bytes:
        received = time.perf_counter()
        kind = None
        try:
            if isinstance(frame, str):
                raise WireError("text frame received; send msgpack-encoded binary frames")
            # Off the event loop: a frame of up to MAX_MESSAGE_BYTES takes a while to decode.
            message = await asyncio.to_thread(unpackb, frame)
            kind = message.get("type") if isinstance(message, dict) else None
            if kind not in _REQUESTS:
                raise WireError(f"unknown request type {kind!r}; expected one of {', '.join(_REQUESTS)}")
            reply = await getattr(self, f"_on_{kind}")(agent, message)
            if "server_timing" in reply:
                reply["server_timing"]["total_ms"] = (time.perf_counter() - received) * 1e3
            return packb(reply)
        except WireError as exc:  # the client's mistake: no server internals to log
            log.warning("%s: bad %s request: %s", self.name, kind or "unknown", exc)
            return packb({"error": _client_error(exc)})
        except Exception as exc:
            log.error("%s failed on %s", self.name, kind, exc_info=exc)
            return packb({"error": _client_error(exc)})

    async def _on_bind(self, agent: Agent, message: dict) -> dict:
        context = await asyncio.to_thread(decode_context, message)  # checks, then builds, the declared spaces
        await self.call(agent.bind, context)
        return {"ok": True}

    async def _on_seed(self, agent: Agent, message: dict) -> dict:
        await self.call(agent.seed, int(message["seed"]))
        return {"ok": True}

    async def _on_reset(self, agent: Agent, message: dict) -> dict:
        await self.call(agent.reset)
        return {"ok": True}

    async def _on_act(self, agent: Agent, message: dict) -> dict:
        observation, instruction = message["observation"], message["instruction"]
        if self._batcher:
            action, infer_ms, size = await self._batcher.submit(observation, instruction)
        else:
            action, infer_ms = await self.call(agent.act, observation, instruction)
            size = 1
        return {"action": np.asarray(action), "server_timing": {"infer_ms": infer_ms, "batch_size": size}}

    async def _on_act_batch(self, agent: Agent, message: dict) -> dict:
        observations, instructions = message["observations"], message["instructions"]
        actions, infer_ms = await self.call(_act_batch, agent, observations, instructions)
        return {"actions": actions, "server_timing": {"infer_ms": infer_ms, "batch_size": len(observations)}}


_REQUESTS = ("bind", "seed", "reset", "act", "act_batch")


def _is_factory(source: AgentSource) -> bool:
    # Agents need not subclass Agent, so "has an act method and is not a class" marks an instance.
    return isinstance(source, type) or not hasattr(source, "act")


def _client_error(exc: BaseException) -> str:
    """What a client is told about ``exc``: its type and the first line of its message, without
    directories, since anyone who reaches the port reads it and paths map the server's disk."""
    lines = str(exc).strip().splitlines()
    message = _DIRECTORIES.sub("", lines[0])[:_MAX_ERROR_CHARS] if lines else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


async def _refuse(connection: ServerConnection, error: str, code: CloseCode, reason: str) -> None:
    """Answer the handshake with an error frame instead of metadata, then close."""
    try:
        await connection.send(packb({"error": error}))
        await connection.close(code, reason)
    except ConnectionClosed:
        pass  # the client did not wait for the answer


def _close(agent: Agent) -> None:
    """Free ``agent`` if it can be freed; a failure is logged, since the server carries on."""
    close = getattr(agent, "close", None)  # optional for duck-typed agents
    if callable(close):
        try:
            close()
        except Exception:
            log.exception("closing %s failed", type(agent).__name__)


def _health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None  # anything else proceeds with the websocket handshake


def _act_batch(agent: Agent, observations: Sequence[Any], instructions: Sequence[str]) -> np.ndarray:
    if len(observations) != len(instructions):
        raise ValueError(f"{len(observations)} observations but {len(instructions)} instructions")
    actions = np.asarray(agent.act_batch(observations, instructions))
    if len(actions) != len(observations):
        raise ValueError(f"act_batch returned {len(actions)} actions for {len(observations)} observations")
    return actions


@dataclass
class _PendingAct:
    observation: Any
    instruction: str
    future: asyncio.Future


class _ActBatcher:
    """Merges concurrent ``act`` requests on the shared agent into ``act_batch`` calls."""

    def __init__(self, server: _AgentServer, agent: Agent, max_batch: int, wait_s: float) -> None:
        self._server = server
        self._agent = agent
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._queue: asyncio.Queue[_PendingAct] = asyncio.Queue()

    async def submit(self, observation: Any, instruction: str) -> tuple[np.ndarray, float, int]:
        """Queue one request; returns its action, the agent time in ms and the batch size used."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_PendingAct(observation, instruction, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self._wait_s
            # Each connection has at most one request in flight, so once every open connection is
            # in the batch nobody else can join: dispatch instead of sitting out the wait.
            while len(batch) < min(self._max_batch, self._server.open_connections):
                remaining = deadline - time.monotonic()
                try:
                    if remaining > 0:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                    else:
                        batch.append(self._queue.get_nowait())
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            await self._dispatch(batch)

    async def _dispatch(self, batch: list[_PendingAct]) -> None:
        agent = self._agent
        try:
            if len(batch) == 1:
                action, infer_ms = await self._server.call(agent.act, batch[0].observation, batch[0].instruction)
                actions = [action]
            else:
                actions, infer_ms = await self._server.call(
                    _act_batch, agent, [p.observation for p in batch], [p.instruction for p in batch]
                )
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exception=exc)
                return
            # One client's bad observation must not fail the others: rerun each request alone.
            for pending in batch:
                await self._dispatch([pending])
            return
        for pending, action in zip(batch, actions):
            _settle(pending.future, result=(action, infer_ms, len(batch)))


def _settle(future: asyncio.Future, *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the waiting connection was torn down
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
