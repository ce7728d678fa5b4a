"""openpi's websocket policy server, written from its description in the peer-harness notes.

``../shared/specs/peer-harnesses.md`` §3 ("openpi websocket policy server and client") is the only
source: an asyncio ``websockets`` server (``compression=None``, ``max_size=None``, ``GET /healthz``
answering 200) that sends the policy's metadata as the first frame of every connection, then
answers each msgpack observation with the policy's action dict plus ``server_timing{infer_ms,
prev_total_ms}``; on an exception it sends the traceback as a text frame and closes with
INTERNAL_ERROR.  No envelope, type field or sequence number.  Its msgpack-numpy codec is written
here too (ndarrays as ``{b"__ndarray__", b"data", b"dtype": dtype.str, b"shape"}``, numpy scalars
as ``{b"__npgeneric__", b"data", b"dtype"}``, void, object and complex dtypes refused), so the
client is checked against the format, not against vlaeval's own codec.

It runs on a daemon thread of the test process, listening on localhost, so runner workers in
other processes reach it too.  Faults the client must survive are injected by request number
(counted over the whole server, from 1): ``fail_at`` raises in the policy, ``drop_at`` cuts the
connection without a word, and ``vanish_at`` shuts the whole server down.
"""

from __future__ import annotations

import asyncio
import http
import threading
import time
import traceback
from typing import Any, Callable, Collection

import msgpack
import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

#: A policy: observation dict in, action dict (``{"actions": (chunk, action_dim)}``) out.
Policy = Callable[[dict[str, Any]], dict[str, Any]]

_REFUSED_KINDS = ("V", "O", "c")


def _pack_numpy(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"unsupported dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot pack a {type(obj).__name__}")


def _unpack_numpy(obj: dict[Any, Any]) -> Any:
    if b"__ndarray__" in obj or b"__npgeneric__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in _REFUSED_KINDS:
            raise ValueError(f"unsupported dtype {dtype}")
        if b"__ndarray__" in obj:
            return np.ndarray(buffer=obj[b"data"], dtype=dtype, shape=obj[b"shape"])
        return dtype.type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack_numpy, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_unpack_numpy)


def _health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


class SpecServer:
    """The server on a daemon thread; use as a context manager.

    Attributes:
        requests: every observation received, decoded, in arrival order.
        connections: connections accepted so far.
    """

    def __init__(self, policy: Policy, metadata: dict[str, Any] | None = None, *, fail_at: Collection[int] = (),
                 drop_at: Collection[int] = (), vanish_at: int | None = None) -> None:
        self.policy = policy
        self.metadata = metadata or {}
        self.fail_at, self.drop_at, self.vanish_at = set(fail_at), set(drop_at), vanish_at
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: Server | None = None

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> SpecServer:
        listening = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(listening)), daemon=True, name="openpi-spec-server")
        self._thread.start()
        if not listening.wait(10):
            raise TimeoutError("the openpi spec server did not start within 10 s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self, listening: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None, process_request=_health) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            listening.set()
            await self._stop.wait()

    async def _handle(self, websocket: ServerConnection) -> None:
        self.connections += 1
        await websocket.send(packb(self.metadata))
        prev_total_ms: float | None = None
        while True:
            try:
                frame = await websocket.recv()
            except ConnectionClosed:
                return
            start = time.monotonic()
            try:
                observation = unpackb(frame)
                self.requests.append(observation)
                number = len(self.requests)
                if number == self.vanish_at:
                    assert self._server is not None
                    self._server.close()  # stop listening and close every connection
                    return
                if number in self.drop_at:
                    websocket.transport.abort()
                    return
                if number in self.fail_at:
                    raise RuntimeError(f"policy failed on request {number}")
                infer_start = time.monotonic()
                action = self.policy(observation)
                action["server_timing"] = {"infer_ms": (time.monotonic() - infer_start) * 1e3}
                if prev_total_ms is not None:
                    action["server_timing"]["prev_total_ms"] = prev_total_ms
                await websocket.send(packb(action))
                prev_total_ms = (time.monotonic() - start) * 1e3
            except ConnectionClosed:
                return
            except Exception:
                await websocket.send(traceback.format_exc())
                await websocket.close(CloseCode.INTERNAL_ERROR, "Internal server error. Traceback included in previous frame.")
                return
