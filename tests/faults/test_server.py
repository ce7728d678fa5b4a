"""Hostile clients of the policy server: declared sizes, connection churn, leaked internals.

The server must stay responsive (``GET /healthz`` answers while a hostile frame is handled), hold a
bounded number of agents whatever its clients do, and answer failures with an error frame that
names the exception but carries no traceback or server file path.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the remote extra is needed (pip install 'vlaeval[remote]')")

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from tests.agents.test_remote import CONTEXT, FAST, CounterAgent  # noqa: E402
from vlaeval.agents.remote.client import RemoteAgent, RemoteAgentError  # noqa: E402
from vlaeval.agents.remote.server import start_server_in_thread  # noqa: E402
from vlaeval.agents.remote.wire import (  # noqa: E402
    MAX_MESSAGE_BYTES,
    MAX_SPACE_BYTES,
    WireError,
    decode_context,
    encode_context,
    packb,
    unpackb,
)

pytestmark = pytest.mark.timeout(60)

#: The attack from the issue: 154 bytes that declare a 10^10-element float32 image.
BOX_BOMB = {
    "type": "bind", "suite": "calvin", "setting": "D->D", "action_type": "relative_ee", "observation_space": None,
    "action_space": {"space": "Box", "low": 0.0, "high": 1.0, "shape": [100_000, 100_000], "dtype": "<f4"},
}

#: A bomb small enough that building it would not hurt the machine (~1 GB), but over the limit.
MEMORY_BOMB = {**BOX_BOMB, "action_space": {**BOX_BOMB["action_space"], "shape": [8192, 8192]}}

OBS = {"state": np.zeros(3, dtype=np.float32)}


def nested(depth: int) -> dict[str, Any]:
    space: dict[str, Any] = {"space": "Discrete", "n": 2, "start": 0}
    for _ in range(depth):
        space = {"space": "Dict", "spaces": {"x": space}}
    return space


def wide(width: int) -> dict[str, Any]:
    return {"space": "Dict", "spaces": {f"k{i}": {"space": "Discrete", "n": 2, "start": 0} for i in range(width)}}


@contextmanager
def raw(uri: str) -> Iterator[ClientConnection]:
    """A bare protocol connection (past the metadata frame), to send frames no RemoteAgent would."""
    with connect(uri, open_timeout=5, close_timeout=1, compression=None, max_size=MAX_MESSAGE_BYTES, proxy=None) as ws:
        assert unpackb(ws.recv(timeout=5))["type"] == "metadata"
        yield ws


def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    ws.send(packb(message))
    return unpackb(ws.recv(timeout=10))


def healthz_seconds(port: int) -> float:
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
    return time.monotonic() - start


def still_works(ws: ClientConnection) -> None:
    assert request(ws, {"type": "bind", **encode_context(CONTEXT)}) == {"ok": True}
    assert request(ws, {"type": "seed", "seed": 0}) == {"ok": True}
    assert request(ws, {"type": "reset"}) == {"ok": True}
    assert request(ws, {"type": "act", "observation": OBS, "instruction": ""})["action"][0] == 1


# -- declared sizes ---------------------------------------------------------------------------


def test_huge_declared_box_is_refused_while_health_checks_keep_answering() -> None:
    assert len(packb(BOX_BOMB)) < 200
    with start_server_in_thread(CounterAgent) as server, raw(server.uri) as ws:
        ws.send(packb(BOX_BOMB))
        assert healthz_seconds(server.port) < 2.0  # while the bomb is being handled
        reply = unpackb(ws.recv(timeout=10))
        assert reply["error"].startswith("WireError: ")
        assert "40000000000 bytes" in reply["error"] and "limit" in reply["error"]
        assert healthz_seconds(server.port) < 2.0
        still_works(ws)


@pytest.mark.parametrize(
    "space, message",
    [(nested(400), "nest deeper than"), (wide(5000), "more than"),
     ({"space": "Box", "low": 0, "high": 1, "shape": [2, -3], "dtype": "<f4"}, "shape"),
     ({"space": "Box", "low": 0, "high": 1, "shape": [2], "dtype": "<U1000000000"}, "dtype")],
    ids=["depth-bomb", "width-bomb", "negative-shape", "string-dtype"],
)
def test_malformed_or_oversized_spaces_get_an_error_reply_and_the_connection_survives(space: Any, message: str) -> None:
    with start_server_in_thread(CounterAgent) as server, raw(server.uri) as ws:
        reply = request(ws, {"type": "bind", **encode_context(CONTEXT), "observation_space": space})
        assert reply["error"].startswith("WireError: ") and message in reply["error"]
        still_works(ws)


def test_spaces_are_measured_before_anything_is_allocated() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(WireError, match="limit"):
            decode_context(MEMORY_BOMB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_camera_sized_spaces_are_within_the_limit() -> None:
    cameras = {f"cam{i}": {"space": "Box", "low": 0, "high": 255, "shape": [1080, 1920, 3], "dtype": "|u1"} for i in range(4)}
    depth = {"space": "Box", "low": 0.0, "high": 10.0, "shape": [480, 640], "dtype": "<f4"}
    message = {**BOX_BOMB, "action_space": None,
               "observation_space": {"space": "Dict", "spaces": {"cams": {"space": "Dict", "spaces": cameras}, "depth": depth}}}
    context = decode_context(message)
    assert context.observation_space["cams"]["cam3"].shape == (1080, 1920, 3)
    over = {**message, "action_space": {"space": "Box", "low": 0.0, "high": 1.0, "shape": [MAX_SPACE_BYTES // 8], "dtype": "<f8"}}
    with pytest.raises(WireError, match="limit"):  # the limit is on the whole bind, action and observation together
        decode_context(over)


# -- agents held ------------------------------------------------------------------------------


class Ledger:
    """A factory that counts the agents it built and which of them were closed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.built: list[CounterAgent] = []
        self.closed: list[CounterAgent] = []
        self.peak = 0

    def factory(self) -> CounterAgent:
        with self.lock:
            self.built.append(TrackedAgent(self))
            self.peak = max(self.peak, self.held())
            return self.built[-1]

    def held(self) -> int:
        return len(self.built) - len(self.closed)


class TrackedAgent(CounterAgent):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def close(self) -> None:
        with self.ledger.lock:
            self.ledger.closed.append(self)


def wait_for(condition: Any, what: str, within_s: float = 5.0) -> None:
    """The server returns a closed connection's agent asynchronously: wait (bounded) until it has."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_connection_churn_holds_at_most_max_agents_and_closes_the_freed_ones() -> None:
    ledger, refusals, served = Ledger(), [], []
    with start_server_in_thread(ledger.factory, max_agents=3) as server:

        def churn(cycles: int) -> None:
            for _ in range(cycles):
                with connect(server.uri, open_timeout=5, close_timeout=1, proxy=None) as ws:
                    first = unpackb(ws.recv(timeout=5))
                    if "error" in first:
                        refusals.append(first["error"])
                        continue
                    assert request(ws, {"type": "reset"}) == {"ok": True}
                    served.append(1)

        threads = [threading.Thread(target=churn, args=(30,)) for _ in range(5)]  # 150 cycles, 5 at a time
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(45)
        wait_for(lambda: ledger.held() <= 1, "idle agents beyond the pool bound were not freed")
    assert len(served) + len(refusals) == 150 and served
    assert ledger.peak <= 3
    assert all("max-agents" in text for text in refusals)
    assert ledger.held() == 0 and sorted(map(id, ledger.closed)) == sorted(map(id, ledger.built))  # each closed once


def test_connections_beyond_max_agents_are_refused_clearly() -> None:
    ledger = Ledger()
    with start_server_in_thread(ledger.factory, max_agents=2) as server:
        holders = [RemoteAgent(server.uri, FAST) for _ in range(2)]
        with pytest.raises(RemoteAgentError, match=r"at capacity.*2.*--max-agents"):
            RemoteAgent(server.uri, FAST)
        with connect(server.uri, open_timeout=5, close_timeout=1, proxy=None) as ws:
            assert "--max-agents" in unpackb(ws.recv(timeout=5))["error"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013  # try again later
        assert ledger.held() == 2
        holders.pop().close()
        wait_for(lambda: served(server.uri), "the freed agent was not handed to the next connection")
        holders.pop().close()
    assert len(ledger.built) == 2 and ledger.held() == 0  # the freed agent was reused, not rebuilt


def test_a_silent_connection_is_closed_and_its_slot_freed() -> None:
    ledger = Ledger()
    with start_server_in_thread(ledger.factory, max_agents=1, idle_timeout_s=0.5) as server:
        with raw(server.uri) as ws:  # connects, takes the one agent, then says nothing
            assert not served(server.uri)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert "idle for 0.5s" in closed.value.rcvd.reason
        wait_for(lambda: served(server.uri), "the silent connection's agent was not freed")
        # a client that pauses longer than the timeout carries on: it reconnects and replays bind and seed
        client = RemoteAgent(server.uri, FAST)
        client.bind(CONTEXT)
        client.seed(0)
        client.reset()
        time.sleep(1.0)
        assert client.act(OBS, "")[0] == 1 and client.reconnects == 1
        client.close()
    assert len(ledger.built) == 1  # the freed agent was reused each time


def served(uri: str) -> bool:
    """Whether a new connection gets an agent now."""
    try:
        RemoteAgent(uri, FAST).close()
    except RemoteAgentError:
        return False
    return True


def test_a_shared_agent_serves_at_most_max_agents_connections() -> None:
    with start_server_in_thread(CounterAgent(), max_agents=1) as server:
        first = RemoteAgent(server.uri, FAST)
        with pytest.raises(RemoteAgentError, match="at capacity.*--max-agents"):
            RemoteAgent(server.uri, FAST)
        first.close()


def test_max_agents_must_be_positive() -> None:
    with pytest.raises(RuntimeError, match="max_agents"):
        start_server_in_thread(CounterAgent, max_agents=0)


# -- error replies ----------------------------------------------------------------------------


class LeakyAgent(CounterAgent):
    """Fails the way real agents do: with server paths in the exception and deep in a call stack."""

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        raise FileNotFoundError(2, "No such file or directory", "/srv/secret/weights/policy.bin")

    def bind(self, context: Any) -> None:
        raise RuntimeError(f"cannot read C:\\Users\\ops\\models\\cfg.json or /home/ops/models/cfg.json\nsecond line")


def test_error_replies_name_the_exception_without_traceback_or_paths(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="vlaeval.agents.remote.server"):
        with start_server_in_thread(LeakyAgent) as server, raw(server.uri) as ws:
            act = request(ws, {"type": "act", "observation": OBS, "instruction": ""})["error"]
            bind = request(ws, {"type": "bind", **encode_context(CONTEXT)})["error"]
            garbage = request(ws, {"type": "act"})["error"]
    assert act == "FileNotFoundError: [Errno 2] No such file or directory: 'policy.bin'"
    assert bind == "RuntimeError: cannot read cfg.json or cfg.json"
    assert garbage == "KeyError: 'observation'"
    for text in (act, bind, garbage):
        assert "Traceback" not in text and "/srv" not in text and "ops" not in text and ".py" not in text
    # The operator still gets the whole story.
    assert "Traceback" in caplog.text and "/srv/secret/weights/policy.bin" in caplog.text


def test_a_factory_failure_is_replied_without_its_traceback() -> None:
    built: list[CounterAgent] = []

    def factory() -> CounterAgent:
        if built:
            raise MemoryError("no room for a second copy in /dev/shm/pool")
        built.append(CounterAgent())
        return built[-1]

    with start_server_in_thread(factory) as server, raw(server.uri):
        with connect(server.uri, open_timeout=5, close_timeout=1, proxy=None) as ws:
            assert unpackb(ws.recv(timeout=5)) == {"error": "MemoryError: no room for a second copy in pool"}
