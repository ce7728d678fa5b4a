"""The runner: results, workers, misbehaving agents, conventions, manifest, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import vlaeval
from vlaeval.errors import VlaevalError
from vlaeval.results.store import EPISODES_FILE, ResultStore, load_results, read_manifest

STABLE = ["agent", "suite", "suite_version", "setting", "task", "episode", "position", "seed", "success", "steps", "error", "instruction"]


def _run(tmp_path: Path, agent: str = "toy-solver", suite: str = "toy-chain", **kw):
    return vlaeval.evaluate(agent, suite, out=tmp_path, progress=False, **kw)


def test_run_writes_a_tidy_table_and_a_manifest(tmp_path: Path) -> None:
    result = _run(tmp_path, episodes=6, run_id="r1")
    frame = result.results
    assert list(frame.columns) == list(__import__("vlaeval.results.store", fromlist=["COLUMNS"]).COLUMNS)
    assert sorted(frame["episode"].unique()) == list(range(6))
    assert (frame.groupby("episode")["position"].apply(list) == pd.Series([[1, 2, 3]] * 6)).all()
    assert frame["success"].all() and frame["error"].isna().all()
    assert result.summary() == {"episodes": 6.0, "success_rate": 1.0, "avg_len": 3.0}
    manifest = read_manifest(result.run_dir)
    assert manifest["status"] == "finished" and manifest["finished_at"]
    assert manifest["config"] == {"agent": "toy-solver", "suite": "toy-chain", "setting": "default", "episodes": 6, "seed": 0,
                                  "step_timeout": 60.0, "agent_options": {}}
    assert manifest["suite"]["version"] == "1" and manifest["suite"]["protocol"]["chain_length"] == 3
    assert manifest["agent"]["spec"]["action_type"] == "relative_ee" and manifest["agent"]["action_type"] == "relative_ee"
    assert {"python", "vlaeval", "numpy", "gymnasium"} <= set(manifest["versions"])
    assert manifest["host"]["hostname"] and manifest["seeds"]["base"] == 0
    assert (result.run_dir / "episodes.parquet").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(result.run_dir / "episodes.parquet"), frame)


def test_same_seed_same_results_and_seed_changes_episodes(tmp_path: Path) -> None:
    a = _run(tmp_path, "toy://solver?skill=0.5", episodes=20, run_id="a").results
    b = _run(tmp_path, "toy://solver?skill=0.5", episodes=20, run_id="b").results
    c = _run(tmp_path, "toy://solver?skill=0.5", episodes=20, run_id="c", seed=7).results
    pd.testing.assert_frame_equal(a[STABLE], b[STABLE])
    assert not a["seed"].equals(c["seed"])
    assert 0 < a.groupby("episode")["success"].all().mean() < 1  # a real mix of outcomes


def test_two_workers_give_the_same_results_as_one(tmp_path: Path) -> None:
    one = _run(tmp_path, "toy://solver?skill=0.6", episodes=16, run_id="w1", workers=1).results
    two = _run(tmp_path, "toy://solver?skill=0.6", episodes=16, run_id="w2", workers=2).results
    pd.testing.assert_frame_equal(one[STABLE], two[STABLE])
    assert not one["success"].all()


@pytest.mark.parametrize(
    "agent, error",
    [
        ("toy-crash", "agent raised in act(): RuntimeError: policy exploded"),
        ("toy-nan", "agent returned a non-finite action"),
        ("toy-wrong-shape", "agent returned an action of shape (6,), the suite expects (7,)"),
    ],
)
def test_misbehaving_agents_fail_their_episodes_and_the_run_goes_on(tmp_path: Path, agent: str, error: str) -> None:
    frame = _run(tmp_path, agent, suite="toy", episodes=4).results
    assert len(frame) == 4 and not frame["success"].any()
    assert all(e.startswith(error) for e in frame["error"])


def test_a_hanging_agent_times_out_per_step(tmp_path: Path) -> None:
    started = time.monotonic()
    frame = _run(tmp_path, "toy-sleeper", suite="toy", episodes=2, step_timeout=0.5, agent_options={"seconds": 30}).results
    assert time.monotonic() - started < 20
    assert list(frame["error"]) == ["agent.act() did not return within the 0.5 s step timeout (--step-timeout)"] * 2


def test_convention_mismatch_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError) as info:
        _run(tmp_path, "toy-absolute", suite="toy")
    message = str(info.value)
    assert "action type: agent emits 'absolute_ee', suite accepts relative_ee" in message
    assert "gripper polarity" in message and "observations: agent needs rgb_static" in message
    assert not any(tmp_path.iterdir()), "no run directory for a run that cannot start"


def test_a_suite_that_cannot_start_fails_the_run_clearly(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match="suite 'toy' cannot start its environment: RuntimeError: simulated simulator start-up failure"):
        _run(tmp_path, suite="toy", setting="broken", episodes=2, run_id="broken")
    assert not (tmp_path / "broken").exists()  # the run never started: nothing left behind


def test_bad_arguments_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match="--episodes must be between 1 and 40"):
        _run(tmp_path, suite="toy", episodes=41)
    with pytest.raises(VlaevalError, match="--workers must be at least 1"):
        _run(tmp_path, suite="toy", workers=0)
    _run(tmp_path, suite="toy", episodes=1, run_id="taken")
    with pytest.raises(VlaevalError, match="already holds a run; resume it with --resume"):
        _run(tmp_path, suite="toy", episodes=1, run_id="taken")


def test_agent_is_reset_at_every_subtask_and_seeded_per_episode(tmp_path: Path) -> None:
    from vlaeval_toy.agents import Solver

    class Traced(Solver):
        def __init__(self) -> None:
            super().__init__(skill=0.5)
            self.calls: list[tuple] = []

        def seed(self, seed: int) -> None:
            self.calls.append(("seed", seed))
            super().seed(seed)

        def reset(self) -> None:
            self.calls.append(("reset",))
            super().reset()

    agent = Traced()
    frame = vlaeval.evaluate(agent, "toy-chain", episodes=8, out=tmp_path, progress=False).results
    expected = []
    for _, rows in frame.groupby("episode"):  # each episode's own seed first, then one reset per subtask it reached
        expected += [("seed", int(rows["seed"].iloc[0]))] + [("reset",)] * len(rows)
    assert agent.calls == expected
    assert len(set(frame.groupby("episode").size())) > 1 and frame["seed"].nunique() == 8  # chains of several lengths, 8 seeds
    assert frame["agent"].unique().tolist() == ["Traced"]


def test_observer_hooks_see_the_run(tmp_path: Path) -> None:
    from vlaeval.plugins.manager import plugin_manager

    seen: list[tuple[str, object]] = []

    class Observer:
        @vlaeval.hookimpl
        def vlaeval_run_started(self, run):
            seen.append(("started", run.pending))

        @vlaeval.hookimpl
        def vlaeval_episode_finished(self, run, record):
            seen.append(("episode", record.episode))

        @vlaeval.hookimpl
        def vlaeval_run_finished(self, run, results):
            seen.append(("finished", len(results)))

    plugin_manager().register(Observer(), name="observer")
    _run(tmp_path, suite="toy", episodes=3)
    assert seen == [("started", 3), ("episode", 0), ("episode", 1), ("episode", 2), ("finished", 3)]


def test_torn_last_line_is_cut_and_the_run_resumes(tmp_path: Path) -> None:
    full = _run(tmp_path, "toy://solver?skill=0.5", episodes=10, run_id="full").results
    partial = _run(tmp_path, "toy://solver?skill=0.5", episodes=10, run_id="part")
    log = partial.run_dir / EPISODES_FILE
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])  # crash mid-write
    resumed = vlaeval.evaluate("toy://solver?skill=0.5", resume=partial.run_dir, progress=False).results
    pd.testing.assert_frame_equal(resumed[STABLE], full[STABLE])
    assert len(ResultStore(partial.run_dir).completed()) == 10
    assert len(read_manifest(partial.run_dir)["sessions"]) == 2


def test_resume_with_more_episodes_extends_the_run_and_replays_nothing(tmp_path: Path) -> None:
    full = _run(tmp_path, "toy://solver?skill=0.5", episodes=10, run_id="full").results
    short = _run(tmp_path, "toy://solver?skill=0.5", episodes=4, run_id="short")
    kept = (short.run_dir / EPISODES_FILE).read_text()
    extended = vlaeval.evaluate("toy://solver?skill=0.5", resume=short.run_dir, episodes=10, progress=False).results
    pd.testing.assert_frame_equal(extended[STABLE], full[STABLE])
    assert (short.run_dir / EPISODES_FILE).read_text().startswith(kept)  # the first 4 were kept, not replayed
    assert read_manifest(short.run_dir)["config"]["episodes"] == 10
    with pytest.raises(VlaevalError, match="can extend it to more"):
        vlaeval.evaluate("toy://solver?skill=0.5", resume=short.run_dir, episodes=3, progress=False)


def test_resume_rejects_a_different_agent(tmp_path: Path) -> None:
    run = _run(tmp_path, suite="toy", episodes=2, run_id="r")
    with pytest.raises(VlaevalError, match="is a run of agent 'toy-solver', not 'toy-crash'"):
        vlaeval.evaluate("toy-crash", resume=run.run_dir, progress=False)


def test_kill_at_any_moment_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL a real CLI run mid-way (twice), resume it, and compare with an uninterrupted run."""
    args = ["--agent", "toy-slow", "--suite", "toy-chain", "--episodes", "30", "--out", str(tmp_path), "--no-progress", "--workers", "2"]
    reference = _run(tmp_path, "toy-slow", episodes=30, run_id="reference", agent_options={"delay": 0.0}).results
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "vlaeval", "run", *args, "--run-id", "killed"], start_new_session=True)
    log = run_dir / EPISODES_FILE
    _wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    after_kill = len(ResultStore(run_dir).completed())
    assert 5 <= after_kill < 30
    assert read_manifest(run_dir)["status"] == "running"  # it never got to say otherwise

    proc = subprocess.Popen([sys.executable, "-m", "vlaeval", "run", "--resume", str(run_dir), "--no-progress"], start_new_session=True)
    _wait_for(lambda: len(ResultStore(run_dir).completed()) > after_kill)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    done = subprocess.run([sys.executable, "-m", "vlaeval", "run", "--resume", str(run_dir), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frame = load_results(run_dir)
    assert sorted(frame["episode"].unique()) == list(range(30))
    assert not frame.duplicated(["episode", "position"]).any()
    pd.testing.assert_frame_equal(frame[STABLE].drop(columns="agent"), reference[STABLE].drop(columns="agent"))
    assert read_manifest(run_dir)["status"] == "finished"
    assert len(read_manifest(run_dir)["sessions"]) == 3


def test_interrupt_marks_the_run_and_says_how_to_resume(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlaeval", "run", "--agent", "toy-slow", "--suite", "toy-chain", "--out", str(tmp_path), "--run-id", "int", "--no-progress"],
        stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default action even when the tests run as a background job, whose children
        # inherit SIGINT ignored (so a run started from it rightly ignores the signal)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log = tmp_path / "int" / EPISODES_FILE
    _wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"vlaeval run --resume {tmp_path / 'int'}" in err
    assert read_manifest(tmp_path / "int")["status"] == "interrupted"


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)
