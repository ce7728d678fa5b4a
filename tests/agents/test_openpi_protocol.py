"""The ``ws://`` agent against openpi's policy server protocol: detection, chunks, replanning, faults.

The server is :mod:`tests.agents.openpi_spec_server`, written from openpi's spec rather than from
vlaeval's server.  Its policy plans a chunk of four toy actions from the observed state, each
action tagged with its position in the chunk and the state it was planned from, so the actions
the environment received say which chunk step they were.  Every run is compared with
:func:`reference`: the toy environment stepped directly with the chunks, played in order, at most
``replan`` steps each, and dropped at every subtask start.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("websockets", reason="the remote extra is needed (pip install 'vlaeval[remote]')")

import vlaeval  # noqa: E402
from tests.agents.openpi_spec_server import SpecServer  # noqa: E402
from tests.agents.test_remote import CounterAgent  # noqa: E402
from vlaeval.agents.base import AgentContext  # noqa: E402
from vlaeval.agents.remote import resolve_uri  # noqa: E402
from vlaeval.agents.remote.client import (  # noqa: E402
    ClientOptions,
    OpenpiAgent,
    OpenpiOptions,
    RemoteAgent,
    RemoteAgentError,
    connect,
)
from vlaeval.agents.remote.server import start_server_in_thread  # noqa: E402
from vlaeval.errors import VlaevalError  # noqa: E402

pytestmark = pytest.mark.timeout(120)

FAST = ClientOptions(connect_timeout_s=2.0, request_timeout_s=10.0, retries=1, backoff_s=0.05)
CHUNK = 4
TOY_KEYS = {"observation/state": "state"}
TOY_CONTEXT = AgentContext("toy", "default", "relative_ee", gym.spaces.Box(-1.0, 1.0, (7,), np.float32), None)


def toy_chunk(observation: dict[str, Any]) -> dict[str, Any]:
    """Four steps towards the goal, growing: action 0 moves the point, 1 is the step's position in
    the chunk, 2 the position the chunk was planned from."""
    x, goal = (float(v) for v in observation["observation/state"])
    actions = np.zeros((CHUNK, 7), dtype=np.float32)
    actions[:, 0] = float(np.clip((goal - x) / 0.1, -1.0, 1.0)) * np.arange(1, CHUNK + 1) / CHUNK
    actions[:, 1] = np.arange(CHUNK)
    actions[:, 2] = x
    actions[:, 6] = 1.0
    return {"actions": actions}


@dataclass
class Expected:
    """What a correct client makes happen (see the module docstring)."""

    actions: list[np.ndarray] = field(default_factory=list)  # every action the env received, in order
    queries: list[tuple[int, int, int, np.ndarray, str]] = field(default_factory=list)  # (episode, position, step, state, prompt)
    rows: list[tuple[int, int, bool, int]] = field(default_factory=list)  # (episode, position, success, steps)
    dropped: int = 0  # subtasks that ended with part of a chunk unplayed


def reference(episodes: int, replan: int = 0) -> Expected:
    from vlaeval_toy.env import ToyReachEnv
    from vlaeval_toy.suite import TOY_CHAIN_SPEC, ToyChainSuite

    out = Expected()
    for episode in ToyChainSuite().episodes("default", TOY_CHAIN_SPEC.protocol.seed)[:episodes]:
        env = ToyReachEnv()
        obs, _ = env.reset(seed=episode.seed, options=dict(episode.options))
        for position, instruction in enumerate(episode.instructions, start=1):
            plan: list[np.ndarray] = []
            steps, success = 0, False
            while steps < TOY_CHAIN_SPEC.protocol.max_steps and not success:
                if not plan:
                    out.queries.append((episode.index, position, steps, obs["state"].copy(), instruction))
                    plan = list(toy_chunk({"observation/state": obs["state"]})["actions"][: replan or None])
                action = plan.pop(0)
                obs, _, _, _, info = env.step(action)
                out.actions.append(action)
                steps += 1
                success = info["is_success"]
            out.rows.append((episode.index, position, success, steps))
            out.dropped += bool(plan)
            if not success:
                break
    return out


def rows(results: pd.DataFrame) -> list[tuple[int, int, bool, int]]:
    ordered = results.sort_values(["episode", "position"])
    return [(int(r.episode), int(r.position), bool(r.success), int(r.steps)) for r in ordered.itertuples()]


def received(server: SpecServer) -> list[tuple[np.ndarray, str]]:
    return [(request["observation/state"], request["prompt"]) for request in server.requests]


def assert_queries(server: SpecServer, expected: list[tuple[int, int, int, np.ndarray, str]]) -> None:
    got = received(server)
    assert len(got) == len(expected)
    for (state, prompt), (*_, want_state, want_prompt) in zip(got, expected):
        np.testing.assert_array_equal(state, want_state)
        assert prompt == want_prompt


class Recording(OpenpiAgent):
    """Logs what ``act`` returns, which is what the runner steps the environment with."""

    def __init__(self, uri: str, openpi: OpenpiOptions) -> None:
        super().__init__(uri, FAST, openpi)
        self.played: list[np.ndarray] = []

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        self.played.append(super().act(observation, instruction))
        return self.played[-1]


def evaluate(agent: Any, tmp_path: Path, episodes: int, **options: Any) -> pd.DataFrame:
    result = vlaeval.evaluate(agent, "toy-chain", episodes=episodes, out=tmp_path, progress=False, agent_options=options or None)
    return result.results


# -- detection and options ----------------------------------------------------------------------


def test_the_protocol_is_read_from_the_servers_first_frame() -> None:
    with SpecServer(toy_chunk, {"policy": "toy", "action_horizon": CHUNK}) as openpi, \
            start_server_in_thread(CounterAgent()) as ours:
        with urllib.request.urlopen(f"http://127.0.0.1:{openpi.port}/healthz", timeout=5) as response:
            assert response.status == 200
        agent = connect(openpi.uri, {"keys": TOY_KEYS})
        assert isinstance(agent, OpenpiAgent)
        assert agent.metadata == {"policy": "toy", "action_horizon": CHUNK}
        assert agent.spec.observation_keys == ("state",)  # the suite renders and checks what is sent
        agent.close()
        default = connect(openpi.uri, {"protocol": "openpi"})
        assert default.spec.observation_keys == ("rgb_static", "rgb_gripper", "robot_obs")
        default.close()
        remote = connect(ours.uri, {})
        assert isinstance(remote, RemoteAgent) and remote.spec == CounterAgent.spec
        remote.close()
        with pytest.raises(RemoteAgentError, match="is a vlaeval agent server, not an openpi one; drop protocol=openpi"):
            connect(ours.uri, {"protocol": "openpi"})
        with pytest.raises(RemoteAgentError, match="is not a vlaeval agent server.*drop protocol=vlaeval"):
            connect(openpi.uri, {"protocol": "vlaeval"})
        with pytest.raises(ValueError, match="option.s. replan apply to openpi servers; .* is a vlaeval agent server"):
            connect(ours.uri, {"replan": 5})
        assert openpi.connections == 3 and openpi.requests == []  # one connection per agent, detection included


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "grpc"}, "protocol='grpc' is not one of auto, vlaeval, openpi"),
        ({"replan": -1}, "replan=-1 is out of range"),
        ({"replan": "often"}, "replan='often' must be of type int"),
        ({"keys": "state"}, "keys must map openpi input names to observation entries"),
        ({"keys": {"prompt": "state"}}, "prompt_key='prompt' is also one of the keys"),
        ({"chunk": 4}, "unknown remote agent option.s. chunk; valid: protocol, .*keys, prompt_key, replan"),
    ],
)
def test_bad_options_are_one_line_errors_before_connecting(options: dict[str, Any], message: str) -> None:
    with pytest.raises(VlaevalError, match=message):
        resolve_uri("ws://127.0.0.1:9", options)  # nothing listens there: options are checked first


# -- chunks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("replan", [0, 2])
def test_chunks_play_in_order_and_each_subtask_starts_a_new_one(tmp_path: Path, replan: int) -> None:
    expected = reference(episodes=3, replan=replan)
    assert expected.dropped > 0  # some subtask ended mid-chunk: reset() had something to drop
    with SpecServer(toy_chunk) as server:
        agent = Recording(server.uri, OpenpiOptions(keys=TOY_KEYS, replan=replan))
        results = evaluate(agent, tmp_path, episodes=3)  # an instance plays in this process
        agent.close()
    np.testing.assert_array_equal(np.stack(agent.played), np.stack(expected.actions))
    positions = {int(a[1]) for a in agent.played}
    assert positions == set(range(replan or CHUNK))  # whole chunks, or the first `replan` steps of each
    assert_queries(server, expected.queries)
    assert rows(results) == expected.rows and results["error"].isna().all()
    assert set(agent.server_timing) == {"infer_ms", "prev_total_ms"} and agent.reconnects == 0


def test_an_openpi_server_is_evaluated_from_worker_processes(tmp_path: Path) -> None:
    expected = reference(episodes=3)
    with SpecServer(toy_chunk) as server:
        results = evaluate(server.uri, tmp_path, episodes=3, keys=TOY_KEYS)  # protocol detected in the worker
    assert rows(results) == expected.rows and results["error"].isna().all()
    assert_queries(server, expected.queries)
    assert server.connections == 1


def test_replies_are_checked_and_a_single_action_is_a_chunk_of_one() -> None:
    replies = {
        "one": lambda: {"actions": np.full(7, 0.5, dtype=np.float32)},
        "none": lambda: {"action": np.zeros(7)},
        "empty": lambda: {"actions": np.zeros((0, 7))},
        "wide": lambda: {"actions": np.zeros((CHUNK, 6))},
    }
    with SpecServer(lambda obs: replies[obs["prompt"]]()) as server:
        agent = OpenpiAgent(server.uri, FAST, OpenpiOptions(keys=TOY_KEYS))
        agent.bind(TOY_CONTEXT)
        obs = {"state": np.zeros(2, dtype=np.float32)}
        for _ in range(2):
            np.testing.assert_array_equal(agent.act(obs, "one"), np.full(7, 0.5))
        assert len(server.requests) == 2  # asked again at every step
        with pytest.raises(RemoteAgentError, match=r"replied without 'actions' \(keys: 'action', 'server_timing'\)"):
            agent.act(obs, "none")
        with pytest.raises(RemoteAgentError, match=r"replied with actions of shape \(0, 7\)"):
            agent.act(obs, "empty")
        with pytest.raises(RemoteAgentError, match=r"returns actions of shape \(6,\), suite 'toy' takes \(7,\)"):
            agent.act(obs, "wide")
        agent.close()


def test_a_declared_action_dim_is_checked_before_the_first_step(tmp_path: Path) -> None:
    with SpecServer(toy_chunk, {"action_dim": 6}) as server:
        agent = OpenpiAgent(server.uri, FAST, OpenpiOptions(keys=TOY_KEYS))
        with pytest.raises(VlaevalError, match=r"declares action_dim=6 in its metadata, suite 'toy-chain' takes actions of shape \(7,\)"):
            evaluate(agent, tmp_path, episodes=2)
        agent.close()
    assert server.requests == []


# -- faults ---------------------------------------------------------------------------------------


def test_a_policy_error_fails_its_episode_and_the_next_one_reconnects(tmp_path: Path) -> None:
    expected = reference(episodes=3)
    first_of_episode_1 = next(i for i, query in enumerate(expected.queries) if query[0] == 1)
    failing = first_of_episode_1 + 1  # the 0-based index of episode 1's second request
    episode, position, steps, *_ = expected.queries[failing]
    assert episode == 1  # mid-episode, after some steps of it were played
    with SpecServer(toy_chunk, fail_at={failing + 1}) as server:
        results = evaluate(server.uri, tmp_path, episodes=3, keys=TOY_KEYS, protocol="openpi", retries=1)
        connections = server.connections
    got = {(r[0], r[1]): r for r in rows(results)}
    errors = results.set_index(["episode", "position"])["error"]
    want = [r for r in expected.rows if r[0] != 1 or r[1] < position] + [(1, position, False, steps)]
    assert sorted(got.values()) == sorted(want)
    assert errors.drop(index=(1, position)).isna().all()
    error = errors[(1, position)]
    assert error.startswith("agent raised in act(): ServedAgentError: policy served at ws://")
    assert error.endswith(f"failed: RuntimeError: policy failed on request {failing + 1}")  # one line, no traceback
    assert connections == 2  # the connection the server closed was replaced for episode 2


def test_a_dropped_connection_is_reopened_and_the_observation_sent_again(tmp_path: Path) -> None:
    expected = reference(episodes=2)
    with SpecServer(toy_chunk, drop_at={3}) as server:
        agent = OpenpiAgent(server.uri, FAST, OpenpiOptions(keys=TOY_KEYS))
        results = evaluate(agent, tmp_path, episodes=2)
        agent.close()
    assert rows(results) == expected.rows and results["error"].isna().all()
    resent = expected.queries[:3] + expected.queries[2:]  # the server keeps no state: nothing else is lost
    assert_queries(server, resent)
    assert agent.reconnects == 1 and server.connections == 2


def test_a_server_that_goes_away_fails_the_remaining_episodes_quickly(tmp_path: Path) -> None:
    expected = reference(episodes=3)
    vanish = next(i for i, query in enumerate(expected.queries) if query[0] == 1) + 2  # episode 1's second request
    assert expected.queries[vanish - 1][0] == 1
    with SpecServer(toy_chunk, vanish_at=vanish) as server:
        agent = OpenpiAgent(server.uri, FAST, OpenpiOptions(keys=TOY_KEYS))
        start = time.monotonic()
        results = evaluate(agent, tmp_path, episodes=3)
        elapsed = time.monotonic() - start
        agent.close()
    by_episode = results.groupby("episode")
    assert rows(results[results["episode"] == 0]) == [r for r in expected.rows if r[0] == 0]
    for episode in (1, 2):
        last = by_episode.get_group(episode).sort_values("position").iloc[-1]
        assert not last["success"]
        assert "unreachable after 2 attempts" in last["error"] and str(server.port) in last["error"]
    assert elapsed < 20  # bounded retries: no episode waits on a server that is gone


def test_a_reply_that_comes_after_the_step_timeout_is_never_played(tmp_path: Path) -> None:
    expected = reference(episodes=2)
    asked: list[int] = []

    def slow_first(observation: dict[str, Any]) -> dict[str, Any]:
        asked.append(1)
        if len(asked) == 1:
            time.sleep(1.5)  # past the step timeout: the reply arrives while episode 1 is playing
        return toy_chunk(observation)

    with SpecServer(slow_first) as server:
        agent = OpenpiAgent(server.uri, FAST, OpenpiOptions(keys=TOY_KEYS))
        result = vlaeval.evaluate(agent, "toy-chain", episodes=2, out=tmp_path, progress=False, step_timeout=0.5)
        agent.close()
    first, *rest = rows(result.results)
    assert first == (0, 1, False, 0) and "timeout" in result.results.sort_values("episode")["error"].iloc[0]
    assert rest == [r for r in expected.rows if r[0] == 1]
    assert_queries(server, expected.queries[:1] + [q for q in expected.queries if q[0] == 1])
