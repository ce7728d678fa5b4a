"""Remote agents: wire codec, server semantics and a client that never hangs."""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import msgpack
import numpy as np
import pytest

from vlaeval.errors import VlaevalError

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.agents.remote import resolve_uri
from vlaeval.agents.remote.client import ClientOptions, RemoteAgent, RemoteAgentError, ServedAgentError
from vlaeval.agents.remote.server import ServerThread, serve, start_server_in_thread
from vlaeval.agents.remote.wire import (
    WireError,
    decode_context,
    encode_context,
    packb,
    unpackb,
)
from vlaeval.conventions import AgentSpec

pytestmark = pytest.mark.timeout(30)

FAST = ClientOptions(connect_timeout_s=2.0, request_timeout_s=5.0, retries=2, backoff_s=0.05)

CONTEXT = AgentContext(
    suite="calvin",
    setting="ABC->D",
    action_type="relative_ee",
    action_space=gym.spaces.Box(-10.0, 10.0, shape=(3,), dtype=np.float32),
    observation_space=gym.spaces.Dict(
        {
            "state": gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32),
            "rgb": gym.spaces.Box(0, 255, shape=(4, 4, 3), dtype=np.uint8),
        }
    ),
)


class CounterAgent(Agent):
    """Deterministic and stateful: the action depends on bind, seed, reset and the step count."""

    spec = AgentSpec(action_type="relative_ee", gripper="open_positive", observation_keys=("state",))

    def bind(self, context: AgentContext) -> None:
        super().bind(context)
        self.low, self.high = context.action_space.low, context.action_space.high

    def seed(self, seed: int) -> None:
        self.offset = seed / 100

    def reset(self) -> None:
        self.steps = 0

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        self.steps += 1
        if instruction == "explode":
            raise ValueError(f"boom at step {self.steps}")
        raw = observation["state"] * 4 + self.steps + self.offset + len(instruction)
        return np.clip(raw, self.low, self.high).astype(np.float32)


class StatelessAgent(Agent):
    """Safe to share between connections; records the size of every act_batch call."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        if instruction == "explode":
            raise ValueError("boom")
        return observation["state"] + 1

    def act_batch(self, observations: Any, instructions: Any) -> np.ndarray:
        self.batch_sizes.append(len(observations))
        return super().act_batch(observations, instructions)


class SlowAgent(Agent):
    def act(self, observation: Any, instruction: str) -> np.ndarray:
        time.sleep(1.0)
        return np.zeros(3)


def observations(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"state": rng.uniform(-1, 1, 3).astype(np.float32), "rgb": rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)}
        for _ in range(n)
    ]


def rollout(agent: Agent) -> list[np.ndarray]:
    """What the runner does: bind, then per episode seed, reset and act; plus one batched call."""
    agent.bind(CONTEXT)
    actions = []
    for episode in range(2):
        agent.seed(episode)
        agent.reset()
        actions += [agent.act(obs, "push the red block") for obs in observations(6, seed=episode)]
    actions.append(agent.act_batch(observations(3, seed=9), ["a", "bb", "ccc"]))
    return actions


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """A server for the agent source given by indirect parametrisation (default: a shared CounterAgent)."""
    source = getattr(request, "param", CounterAgent())
    with start_server_in_thread(source) as server:
        yield server


@pytest.fixture
def client(served: ServerThread) -> Iterator[RemoteAgent]:
    agent = RemoteAgent(served.uri, FAST)
    yield agent
    agent.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- wire -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(60, dtype=np.uint8).reshape(4, 5, 3),
        np.linspace(-1, 1, 7, dtype=np.float32),
        np.random.default_rng(0).normal(size=(2, 3)),
        np.array(7, dtype=np.int64),
        np.array([True, False, True]),
        np.arange(6, dtype=np.float16).reshape(3, 2),
        np.arange(4, dtype=">i4"),
        np.zeros((0, 3), dtype=np.float32),
        np.arange(20, dtype=np.int16).reshape(4, 5)[:, ::2],  # non-contiguous
        np.array([b"ab", b"c"]),
    ],
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)
def test_wire_round_trips_arrays(array: np.ndarray) -> None:
    decoded = unpackb(packb({"x": array, "nested": [array, {"y": array}]}))
    for got in (decoded["x"], decoded["nested"][0], decoded["nested"][1]["y"]):
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
        assert got.flags.writeable  # agents may modify observations in place, as in-process


def test_wire_round_trips_numpy_scalars_and_plain_values() -> None:
    message = {"i": np.int32(-5), "f": np.float32(1.5), "b": np.bool_(True), "s": "go", "n": None, "l": [1, 2.5]}
    decoded = unpackb(packb(message))
    assert decoded == message
    assert type(decoded["i"]) is np.int32 and type(decoded["f"]) is np.float32 and type(decoded["b"]) is np.bool_


def test_wire_matches_hand_built_openpi_frames() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    openpi_array = {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": array.shape}
    openpi_scalar = {b"__npgeneric__": True, b"data": 3, b"dtype": np.dtype(np.int64).str}
    openpi_frame = msgpack.packb({"actions": openpi_array, "k": openpi_scalar}, use_bin_type=True)
    # Byte-identical in both directions, so openpi peers read our frames and we read theirs.
    assert packb({"actions": array, "k": np.int64(3)}) == openpi_frame
    decoded = unpackb(openpi_frame)
    np.testing.assert_array_equal(decoded["actions"], array)
    assert decoded["k"] == 3 and type(decoded["k"]) is np.int64
    # Reimplementations with str markers are read too.
    str_keys = {"__ndarray__": True, "data": array.tobytes(), "dtype": "<f4", "shape": [2, 3]}
    np.testing.assert_array_equal(unpackb(msgpack.packb(str_keys)), array)


@pytest.mark.parametrize("dtype", ["|O8", "|V8", "<c8", "<c16"])
def test_wire_rejects_unsafe_dtypes_on_decode(dtype: str) -> None:
    frame = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 16, b"dtype": dtype, b"shape": [1]})
    with pytest.raises(WireError, match="not allowed"):
        unpackb(frame)


@pytest.mark.parametrize(
    "bad",
    [
        {b"__ndarray__": True, b"data": b"\0" * 3, b"dtype": "<f4", b"shape": [1]},  # short data
        {b"__ndarray__": True, b"data": b"\0" * 4, b"dtype": [["a", "<f4"]], b"shape": [1]},  # record dtype
        {b"__ndarray__": True, b"data": b"\0" * 4, b"dtype": "<f4", b"shape": [-4]},
    ],
)
def test_wire_rejects_malformed_arrays(bad: dict) -> None:
    with pytest.raises(WireError):
        unpackb(msgpack.packb(bad))


def test_wire_refuses_to_send_object_arrays_and_garbage_frames() -> None:
    with pytest.raises(ValueError, match="object"):
        packb(np.array([{"a": 1}], dtype=object))
    with pytest.raises(WireError):
        unpackb(b"\xc1 not msgpack")


def test_wire_bounds_the_entries_a_frame_may_decode_into() -> None:
    from vlaeval.agents.remote.wire import MAX_CONTAINER_ITEMS, MAX_ITEMS

    # One byte per nil: a 256 MiB frame like these would decode into 2 GB of list slots.
    flat = b"\xdd" + (MAX_ITEMS + 1).to_bytes(4, "big") + b"\xc0" * (MAX_ITEMS + 1)
    with pytest.raises(WireError, match=f"a list or map in the frame holds more than {MAX_CONTAINER_ITEMS} entries"):
        unpackb(flat)
    with pytest.raises(WireError, match=f"a list or map in the frame holds more than {MAX_CONTAINER_ITEMS} entries"):
        unpackb(msgpack.packb({str(i): 0 for i in range(MAX_CONTAINER_ITEMS + 1)}))
    nested = msgpack.packb([[None] * 1000] * (MAX_ITEMS // 1000 + 1))  # every list small, the frame not
    with pytest.raises(WireError, match=f"frame holds more than {MAX_ITEMS} list and map entries"):
        unpackb(nested)
    # an image sent as nested lists instead of an ndarray still fits
    image = np.zeros((224, 224, 3), np.uint8).tolist()
    assert np.array_equal(np.asarray(unpackb(packb({"obs": {"rgb": image}}))["obs"]["rgb"]), np.zeros((224, 224, 3)))


def test_bind_context_keeps_spaces() -> None:
    context = decode_context(unpackb(packb(encode_context(CONTEXT))))
    assert context.action_space == CONTEXT.action_space
    assert context.observation_space == CONTEXT.observation_space
    assert (context.suite, context.setting, context.action_type) == ("calvin", "ABC->D", "relative_ee")


# -- served agents ----------------------------------------------------------------------------


@pytest.mark.parametrize("served", [CounterAgent(), CounterAgent], ids=["shared", "per-connection"], indirect=True)
def test_remote_actions_equal_in_process_actions(client: RemoteAgent) -> None:
    remote, local = rollout(client), rollout(CounterAgent())
    assert len(remote) == len(local)
    for got, want in zip(remote, local):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert client.server_timing["batch_size"] == 3 and client.server_timing["infer_ms"] >= 0


def test_health_endpoint_and_loopback_default(served: ServerThread) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz", timeout=5) as response:
        assert response.status == 200
    assert served.host == "127.0.0.1"
    for function in (serve, start_server_in_thread):
        assert inspect.signature(function).parameters["host"].default == "127.0.0.1"


def test_handshake_adopts_the_served_spec(client: RemoteAgent) -> None:
    assert client.spec == CounterAgent.spec
    assert client.metadata["agent"] == "CounterAgent" and client.metadata["protocol_version"] == 1


@pytest.mark.parametrize("served", [CounterAgent], indirect=True)
def test_each_connection_gets_its_own_agent_from_a_factory(served: ServerThread) -> None:
    first, second = RemoteAgent(served.uri, FAST), RemoteAgent(served.uri, FAST)
    for agent in (first, second):
        agent.bind(CONTEXT)
        agent.seed(0)
        agent.reset()
    obs = {"state": np.zeros(3, dtype=np.float32)}
    steps = [first.act(obs, "")[0], first.act(obs, "")[0], second.act(obs, "")[0], first.act(obs, "")[0]]
    assert steps == [1, 2, 1, 3]  # the second client's act did not advance the first's counter
    first.close()
    second.close()


def test_concurrent_clients_are_batched_and_get_their_own_answers() -> None:
    agent, clients, steps = StatelessAgent(), 4, 15
    results: dict[int, list[np.ndarray]] = {}
    # A long wait makes batching certain even on a loaded machine; it costs nothing because a batch is
    # dispatched as soon as every open connection has a request in it.
    with start_server_in_thread(agent, max_batch=8, batch_wait_ms=2000) as server:
        remotes = [RemoteAgent(server.uri, FAST) for _ in range(clients)]
        barrier = threading.Barrier(clients)

        def drive(index: int) -> None:
            barrier.wait()
            results[index] = [
                remotes[index].act({"state": np.full(2, 100.0 * index + step)}, "go") for step in range(steps)
            ]

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(clients)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        for remote in remotes:
            remote.close()
    for index in range(clients):
        assert [float(a[0]) for a in results[index]] == [100.0 * index + step + 1 for step in range(steps)]
    assert max(agent.batch_sizes) == clients
    assert time.monotonic() - start < 10  # batches did not sit out the 2 s wait


def test_one_failing_request_does_not_fail_its_batch_mates() -> None:
    agent = StatelessAgent()
    # As above, a long wait makes the three requests one batch however loaded the machine is.
    with start_server_in_thread(agent, batch_wait_ms=2000) as server:
        remotes = [RemoteAgent(server.uri, FAST) for _ in range(3)]
        barrier = threading.Barrier(3)
        outcomes: dict[int, Any] = {}

        def drive(index: int) -> None:
            barrier.wait()
            try:
                outcomes[index] = remotes[index].act({"state": np.zeros(1)}, "explode" if index == 0 else "go")
            except ServedAgentError as exc:
                outcomes[index] = exc

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        for remote in remotes:
            remote.close()
    assert agent.batch_sizes == [3]  # they were batched: one act_batch call for all three, which failed ...
    assert isinstance(outcomes[0], ServedAgentError)
    assert [outcomes[1][0], outcomes[2][0]] == [1.0, 1.0]  # ... and the two good requests were answered one by one


def test_agent_errors_are_raised_with_the_server_side_exception(client: RemoteAgent) -> None:
    client.bind(CONTEXT)
    client.seed(0)
    client.reset()
    with pytest.raises(ServedAgentError, match=r"ValueError: boom at step 1"):
        client.act({"state": np.zeros(3, dtype=np.float32)}, "explode")
    # The connection stays usable and the agent's state carried on.
    assert client.act({"state": np.zeros(3, dtype=np.float32)}, "")[0] == 2
    assert client.reconnects == 0


def test_unknown_requests_get_an_error_reply(client: RemoteAgent) -> None:
    with pytest.raises(ServedAgentError, match="unknown request type 'jump'"):
        client._request({"type": "jump"})


def test_killed_server_raises_remote_agent_error_without_hanging() -> None:
    port = free_port()
    code = (
        "import sys; from tests.agents.test_remote import CounterAgent; "
        "from vlaeval.agents.remote.server import serve; serve(CounterAgent(), port=int(sys.argv[1]))"
    )
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-c", code, str(port)], cwd=repo)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "server subprocess did not start"
                time.sleep(0.05)
        agent = RemoteAgent(f"ws://127.0.0.1:{port}", FAST)
        agent.bind(CONTEXT)
        agent.reset()
        agent.seed(1)
        agent.act({"state": np.zeros(3, dtype=np.float32)}, "go")
        process.kill()
        process.wait(5)
        start = time.monotonic()
        with pytest.raises(RemoteAgentError, match=f"ws://127.0.0.1:{port} unreachable after 3 attempts"):
            agent.act({"state": np.zeros(3, dtype=np.float32)}, "go")
        assert time.monotonic() - start < 3.0
    finally:
        process.kill()
        process.wait(5)


def test_stopped_server_mid_run_raises_and_restart_is_replayed() -> None:
    port = free_port()
    obs = {"state": np.zeros(3, dtype=np.float32)}
    with start_server_in_thread(CounterAgent, port=port):
        agent = RemoteAgent(f"ws://127.0.0.1:{port}", FAST)
        agent.bind(CONTEXT)
        agent.seed(0)
        agent.reset()
        assert agent.act(obs, "")[0] == 1
    with pytest.raises(RemoteAgentError, match="unreachable"):
        agent.act(obs, "")
    with start_server_in_thread(CounterAgent, port=port):
        # bind, seed and reset are replayed on the new server, so the agent restarts the episode.
        assert agent.act(obs, "")[0] == 1
        assert agent.reconnects == 1
        agent.close()


def test_slow_agent_hits_the_request_timeout() -> None:
    with start_server_in_thread(SlowAgent()) as server:
        agent = RemoteAgent(server.uri, ClientOptions(request_timeout_s=0.2, retries=0))
        start = time.monotonic()
        with pytest.raises(RemoteAgentError, match="did not answer 'act' within 0.2s"):
            agent.act({"state": np.zeros(3)}, "go")
        assert time.monotonic() - start < 1.0
        agent.close()


def test_unreachable_server_fails_fast_with_a_helpful_message() -> None:
    uri = f"ws://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(RemoteAgentError, match=rf"{uri} unreachable after 2 attempts.*healthz"):
        RemoteAgent.from_uri(uri, retries="1", backoff_s="0.01", connect_timeout_s="1")
    assert time.monotonic() - start < 3.0


def test_resolve_uri_claims_only_websocket_uris(served: ServerThread) -> None:
    for reference in ("kosmos-lstm", "trt:///engines/kosmos.plan", "http://127.0.0.1:8000"):
        assert resolve_uri(reference, {}) is None
    agent = resolve_uri(served.uri, {"request_timeout_s": "5", "retries": "1"})
    assert isinstance(agent, RemoteAgent)
    assert agent.options.request_timeout_s == 5.0 and agent.options.retries == 1
    agent.close()
    with pytest.raises(VlaevalError, match="unknown remote agent option.*timeout"):
        resolve_uri(served.uri, {"timeout": 5})


def test_privileged_agents_are_not_served() -> None:
    class Expert(CounterAgent):
        spec = AgentSpec(privileged=True)

    with pytest.raises(RuntimeError, match="privileged"):
        start_server_in_thread(Expert())


def test_startup_errors_surface_in_the_caller(served: ServerThread) -> None:
    with pytest.raises(RuntimeError, match="failed to start"):
        start_server_in_thread(CounterAgent(), port=served.port)  # port taken


def test_factory_agents_are_pooled_across_connections() -> None:
    built: list[CounterAgent] = []

    def factory() -> CounterAgent:
        built.append(CounterAgent())
        return built[-1]

    with start_server_in_thread(factory) as server:
        for _ in range(3):  # sequential clients reuse one agent instead of reloading weights
            RemoteAgent(server.uri, FAST).close()
        together = [RemoteAgent(server.uri, FAST) for _ in range(2)]
        for remote in together:
            remote.close()
    assert len(built) == 2


def test_a_factory_that_fails_for_a_new_connection_is_reported() -> None:
    built: list[CounterAgent] = []

    def factory() -> CounterAgent:
        if built:
            raise MemoryError("no room for a second copy")
        built.append(CounterAgent())
        return built[-1]

    with start_server_in_thread(factory) as server:
        first = RemoteAgent(server.uri, FAST)
        with pytest.raises(RemoteAgentError, match="could not provide an agent(.|\n)*no room for a second copy"):
            RemoteAgent(server.uri, FAST)
        first.close()
