"""Faults that must stay inside their episode: agents that kill, hang or poison their worker.

Agent code runs only in supervised worker processes (:mod:`vlaeval.evaluators.workers`); these
tests attack that from inside the agent and check that the run finishes, every episode is stored
exactly once, the culprit's row says what happened, and its neighbours are untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vlaeval
from vlaeval.envs.suite import episode_seed
from vlaeval.errors import VlaevalError
from vlaeval.results.store import read_manifest

HOSTILE = "tests.faults.hostile_agents"


def _seeds(*indices: int) -> list[int]:
    return [episode_seed(0, i) for i in indices]  # the toy suite's protocol seed is 0


def _run(tmp_path: Path, agent: str, episodes: int = 4, **kw: Any) -> vlaeval.RunResult:
    return vlaeval.evaluate(f"{HOSTILE}:{agent}", "toy", episodes=episodes, out=tmp_path, progress=False, run_id="r", **kw)


def _errors(result: Any) -> dict[int, Any]:
    frame = result.results
    return {int(i): (None if e is None or e != e else e) for i, e in zip(frame["episode"], frame["error"])}  # NaN -> None


@pytest.mark.parametrize("how, cause", [
    ("sigkill", "was killed by SIGKILL"),
    ("os_exit", "exited with status 3"),
    ("system_exit", "the agent raised SystemExit(4)"),
    ("keyboard_interrupt", "the agent raised KeyboardInterrupt()"),
])
def test_an_episode_that_kills_its_worker_every_time_is_failed_and_the_run_finishes(tmp_path: Path, how: str, cause: str) -> None:
    result = _run(tmp_path, "Killer", agent_options={"how": how, "seeds": _seeds(1)})
    errors = _errors(result)
    assert sorted(errors) == [0, 1, 2, 3]  # every episode stored, exactly once
    assert errors[1].startswith("the agent killed its worker 2 times (last: ") and cause in errors[1]
    assert [errors[i] for i in (0, 2, 3)] == [None] * 3
    assert result.results.set_index("episode")["success"].to_dict() == {0: True, 1: False, 2: True, 3: True}
    manifest = read_manifest(result.run_dir)
    assert manifest["status"] == "finished"
    assert len(manifest["sessions"][-1]["retries"]) == 2  # one replacement worker per death


def test_an_episode_that_kills_its_worker_once_is_retried_and_counts(tmp_path: Path) -> None:
    result = _run(tmp_path, "Killer", agent_options={"how": "sigkill", "seeds": _seeds(2), "marker": str(tmp_path / "died")})
    assert result.results["success"].all() and result.results["error"].isna().all()
    assert (tmp_path / f"died-{_seeds(2)[0]}").exists()  # it did die once
    assert "retrying episode(s) [2]" in read_manifest(result.run_dir)["sessions"][-1]["retries"][0]


def test_with_several_episodes_in_flight_only_the_culprit_is_charged(tmp_path: Path) -> None:
    """Lock-step environments: the worker dies with 3 episodes in flight; the innocent ones are
    retried alone and finish normally, the culprit is failed after its second death."""
    result = _run(tmp_path, "Killer", episodes=6, envs_per_worker=3, env_mode="sync",
                  agent_options={"how": "os_exit", "seeds": _seeds(4)})
    errors = _errors(result)
    assert sorted(errors) == list(range(6))
    assert errors[4].startswith("the agent killed its worker 2 times")
    assert all(errors[i] is None for i in (0, 1, 2, 3, 5))


def test_a_hang_that_swallows_the_timeout_is_cut_from_outside(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _run(tmp_path, "Swallower", step_timeout=0.5, agent_options={"seconds": 120, "seeds": _seeds(0, 3)})
    assert time.monotonic() - started < 60  # the agent would hang 240 s
    errors = _errors(result)
    for i in (0, 3):
        assert errors[i] == ("agent.act() did not return within the 0.5 s step timeout (--step-timeout), "
                             "and ignored it: the worker was killed and replaced")
    assert errors[1] is None and errors[2] is None


@pytest.mark.parametrize("where, what", [("init", "agent construction"), ("bind", "agent.bind()")])
def test_agent_setup_has_its_own_timeout(tmp_path: Path, where: str, what: str) -> None:
    started = time.monotonic()
    with pytest.raises(VlaevalError) as info:
        _run(tmp_path, "SlowSetup", setup_timeout=1.0, agent_options={"where": where, "seconds": 120})
    assert time.monotonic() - started < 60
    assert str(info.value) == (f"agent '{HOSTILE}:SlowSetup': {what} did not finish within the 1 s setup timeout "
                               f"(--setup-timeout; 0 = none)")
    assert not (tmp_path / "r").exists()  # a run whose agent never got ready leaves nothing behind


def test_named_agents_never_run_in_the_process_that_owns_the_results(tmp_path: Path) -> None:
    path = tmp_path / "pid"
    _run(tmp_path, "PidRecorder", episodes=1, agent_options={"path": str(path)})
    assert int(path.read_text()) != os.getpid()


@pytest.mark.parametrize("value, error", [
    (np.array([0, 0, 0, 0, 0, 0, 1j]), "agent returned a non-real action (ndarray of dtype complex128"),
    (["0.1", "0", "0", "0", "0", "0", "1"], "agent returned a non-real action (list of dtype <U3"),
    (None, "agent returned None instead of an action"),
    (np.ones(7, dtype=bool), "agent returned a non-real action (ndarray of dtype bool"),
    ({"x": 1}, "agent returned a non-real action (dict of dtype object"),
])
def test_actions_must_be_real_numbers(tmp_path: Path, value: Any, error: str) -> None:
    from tests.faults.hostile_agents import Returns

    agent = Returns(value=value, seeds=_seeds(1))  # an instance: played in this process, same checks
    result = vlaeval.evaluate(agent, "toy", episodes=3, out=tmp_path, progress=False)
    errors = _errors(result)
    assert errors[1].startswith(error), errors[1]
    assert errors[0] is None and errors[2] is None
