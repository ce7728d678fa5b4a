"""ReplayAgent: replaying recorded expert chains reproduces them row by row (the suite is
deterministic), holds still once a subtask's actions run out, and bad references are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import vlaeval
from tests.conftest import run_cli
from vlaeval.agents.replay import ReplayAgent
from vlaeval.errors import VlaevalError

COLUMNS = ["episode", "position", "task", "success", "steps", "error"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    """The expert's first two official chains, recorded state-only, and the expert's own run."""
    root = tmp_path_factory.mktemp("replay")
    data = root / "data"
    assert run_cli("record", "--agent", "expert", "--suite", "calvin", "--episodes", "2", "--cameras", "",
                   "--valid-fraction", "0", "--out", str(data), "--no-progress") == 0
    expert = vlaeval.evaluate("expert", "calvin", episodes=2, out=root / "runs", progress=False)
    return data, expert.results


def test_replaying_the_recorded_episodes_reproduces_them(recorded, tmp_path) -> None:
    data, expert = recorded
    replay = vlaeval.evaluate(ReplayAgent(data), "calvin", episodes=2, out=tmp_path, progress=False).results
    assert expert["success"].sum() >= 5  # something substantial was replayed
    assert replay[COLUMNS].reset_index(drop=True).equals(expert[COLUMNS].reset_index(drop=True))


def test_a_subtask_whose_actions_ran_out_holds_still(recorded) -> None:
    data, _ = recorded
    agent = ReplayAgent(data, demo="demo_0")
    agent.seed(12345)  # any episode: a fixed demo ignores seeds
    agent.reset()
    recorded_steps = [agent.act({}, "") for _ in range(int((agent._subtask_of_step == 0).sum()))]
    hold = agent.act({}, "")
    assert np.all(hold[:6] == 0) and hold[6] == recorded_steps[-1][6]
    agent.reset()  # next subtask: its own first recorded action
    np.testing.assert_array_equal(agent.act({}, ""), agent._actions[agent._subtask_of_step == 1][0])


def test_unmatched_episodes_and_bad_files_are_clear_errors(recorded, tmp_path) -> None:
    data, _ = recorded
    with pytest.raises(VlaevalError, match="no demo recorded from the episode with seed 7"):
        ReplayAgent(data).seed(7)
    with pytest.raises(VlaevalError, match="has no demo 'demo_9'"):
        ReplayAgent(data, demo="demo_9")
    (tmp_path / "demos.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(VlaevalError, match="not a readable vlaeval demonstration file"):
        ReplayAgent(tmp_path)
    # Through the CLI: an episode without a demo is that episode's error, the run goes on.
    assert run_cli("run", "--agent", "replay", "--agent-opt", f"data={data}", "--suite", "calvin", "--episodes", "3",
                   "--out", str(tmp_path / "runs"), "--run-id", "r", "--no-progress") == 0
    rows = vlaeval.load_results(tmp_path / "runs" / "r")
    third = rows[rows["episode"] == 2]
    assert len(third) == 1 and "no demo recorded" in third["error"].iloc[0]
