"""Batched lock-step evaluation (``envs_per_worker``): identical rows to the sequential loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import vlaeval
from vlaeval.agents.base import Agent, is_batched
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.guards import StepTimeout, deadline
from vlaeval.results.store import EPISODES_FILE, ResultStore, read_manifest

STABLE = ["suite", "suite_version", "setting", "task", "episode", "position", "seed", "success", "steps", "error", "instruction"]


def _run(tmp_path: Path, agent, suite: str, **kw):
    return vlaeval.evaluate(agent, suite, out=tmp_path, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """Sequential (1 env, 1 worker) results of a solver that fails about half its (sub)tasks."""
    out = tmp_path_factory.mktemp("reference")
    return {suite: _run(out, "toy://solver?skill=0.5", suite, episodes=24).results for suite in ("toy", "toy-chain")}


@pytest.mark.parametrize("suite", ["toy", "toy-chain"])
@pytest.mark.parametrize("agent", ["toy://solver?skill=0.5", "toy://batch-solver?skill=0.5"], ids=["act-only", "act_batch"])
@pytest.mark.parametrize("envs, workers", [(3, 1), (4, 2)])
def test_batched_rows_equal_the_sequential_rows(tmp_path: Path, reference, suite: str, agent: str, envs: int, workers: int) -> None:
    result = _run(tmp_path, agent, suite, episodes=24, envs_per_worker=envs, workers=workers, env_mode="sync")
    expected = reference[suite]
    assert 0 < expected.groupby("episode")["success"].all().mean() < 1  # a real mix: slots finish at different times
    if suite == "toy-chain":
        assert set(expected.groupby("episode").size()) == {1, 2, 3}  # chains stop at different subtasks
    pd.testing.assert_frame_equal(result.results[STABLE], expected[STABLE])
    session = read_manifest(result.run_dir)["sessions"][-1]
    assert session["envs_per_worker"] == envs and session["executor"] == "local"
    assert read_manifest(result.run_dir)["agent"]["batched"] is ("batch" in agent)


def test_async_envs_in_subprocesses_give_the_same_rows(tmp_path: Path, reference) -> None:
    result = _run(tmp_path, "toy://batch-solver?skill=0.5", "toy-chain", episodes=24, envs_per_worker=3, env_mode="async")
    pd.testing.assert_frame_equal(result.results[STABLE], reference["toy-chain"][STABLE])
    assert read_manifest(result.run_dir)["agent"]["env_mode"] == "async"


def test_a_batched_agent_sees_the_whole_batch_and_per_slot_resets(tmp_path: Path) -> None:
    from vlaeval_toy.agents import BatchSolver

    agent = BatchSolver(skill=0.5)
    frame = _run(tmp_path, agent, "toy-chain", episodes=10, envs_per_worker=4, env_mode="sync").results
    assert set(agent.batch_sizes) == {4}  # one call per step for all envs, also when some have no episode left
    assert agent.slot_resets == len(frame) + 1  # every subtask start, plus the reset() of the whole batch
    assert sum(frame.groupby("episode")["steps"].sum()) <= 4 * len(agent.batch_sizes)


def test_an_agent_instance_without_act_batch_is_copied_per_env(tmp_path: Path, reference) -> None:
    from vlaeval_toy.agents import Solver

    agent = Solver(skill=0.5)
    frame = _run(tmp_path, agent, "toy-chain", episodes=24, envs_per_worker=3, env_mode="sync").results
    pd.testing.assert_frame_equal(frame[STABLE], reference["toy-chain"][STABLE])
    assert 0 < agent.resets < len(frame)  # the caller's instance served one env of three


@pytest.mark.parametrize(
    "agent, error",
    [
        ("toy-crash", "agent raised in act(): RuntimeError: policy exploded"),
        ("toy-nan", "agent returned a non-finite action"),
        ("toy-wrong-shape", "agent returned an action of shape (6,), the suite expects (7,)"),
    ],
)
def test_misbehaving_agents_fail_only_their_episodes_in_batched_runs(tmp_path: Path, agent: str, error: str) -> None:
    frame = _run(tmp_path, agent, "toy", episodes=5, envs_per_worker=2, env_mode="sync").results
    assert len(frame) == 5 and not frame["success"].any()
    assert all(e.startswith(error) for e in frame["error"])


def test_a_hanging_agent_times_out_in_batched_runs(tmp_path: Path) -> None:
    started = time.monotonic()
    frame = _run(tmp_path, "toy-sleeper", "toy", episodes=2, envs_per_worker=2, env_mode="sync", step_timeout=0.5,
                 agent_options={"seconds": 30}).results
    assert time.monotonic() - started < 20
    assert list(frame["error"]) == ["agent.act() did not return within the 0.5 s step timeout (--step-timeout)"] * 2


class _Unreliable(Agent):
    """A batched agent whose act_batch raises on its 3rd call, or returns NaN for slot 1."""

    spec = vlaeval.AgentSpec(action_type="relative_ee", observation_keys=("state",))

    def __init__(self, mode: str) -> None:
        self.mode, self.calls = mode, 0

    def reset_slot(self, slot: int) -> None:
        pass

    def act_batch(self, observations, instructions) -> np.ndarray:
        self.calls += 1
        if self.mode == "raise" and self.calls == 3:
            raise RuntimeError("batch exploded")
        out = np.zeros((len(observations), 7), dtype=np.float32)
        states = np.stack([o["state"] for o in observations])
        out[:, 0] = np.clip((states[:, 1] - states[:, 0]) / 0.1, -1, 1)
        if self.mode == "nan":
            out[1] = np.nan
        return out


def test_act_batch_failures_fail_the_acting_slots(tmp_path: Path) -> None:
    assert is_batched(_Unreliable("raise"))
    frame = _run(tmp_path, _Unreliable("raise"), "toy", episodes=4, envs_per_worker=2, env_mode="sync").results
    failed = frame[frame["error"].notna()]
    assert sorted(failed["episode"]) == [0, 1]  # the two episodes in flight at the 3rd call
    assert set(failed["error"]) == {"agent raised in act_batch(): RuntimeError: batch exploded"}
    assert frame[frame["episode"] >= 2]["success"].all()

    frame = _run(tmp_path, _Unreliable("nan"), "toy", episodes=4, envs_per_worker=2, env_mode="sync").results
    failed = frame[frame["error"].notna()]  # slot 1 fails each episode at once, slot 0 plays episode 0 meanwhile
    assert sorted(failed["episode"]) == [1, 2, 3] and all(e.startswith("agent returned a non-finite action") for e in failed["error"])
    assert frame.set_index("episode").loc[0, "success"]


def test_is_batched_needs_act_batch_reset_slot_and_per_slot_seeding() -> None:
    from vlaeval_toy.agents import BatchSolver, Solver

    class SeedsButNoSeedSlot(_Unreliable):
        def seed(self, seed: int) -> None:
            pass

    class Duck:
        def act_batch(self, observations, instructions): ...
        def reset_slot(self, slot): ...

    assert is_batched(BatchSolver()) and is_batched(Duck())
    assert not is_batched(Solver())  # default act_batch
    assert not is_batched(SeedsButNoSeedSlot("ok"))  # its results would depend on batching


def test_resume_a_batched_run(tmp_path: Path, reference) -> None:
    run = _run(tmp_path, "toy://batch-solver?skill=0.5", "toy-chain", episodes=24, envs_per_worker=3, env_mode="sync", run_id="r")
    log = run.run_dir / EPISODES_FILE
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:7]) + lines[7][:20])  # crash mid-write
    resumed = vlaeval.evaluate("toy://batch-solver?skill=0.5", resume=run.run_dir, progress=False, envs_per_worker=4, env_mode="sync")
    pd.testing.assert_frame_equal(resumed.results[STABLE], reference["toy-chain"][STABLE])
    assert len(log.read_text().splitlines()) == 24


def test_the_step_timeout_works_outside_the_main_thread() -> None:
    caught: list[BaseException] = []

    def guarded() -> None:
        try:
            with deadline(0.2, "agent.act()"):
                for _ in range(200):  # Python code: interrupted at once
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001
            caught.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=guarded)
    thread.start()
    thread.join(10)
    assert time.monotonic() - started < 1.5
    assert len(caught) == 1 and isinstance(caught[0], StepTimeout)
    assert str(caught[0]) == "agent.act() did not return within the 0.2 s step timeout (--step-timeout)"


def test_an_evaluation_in_a_thread_still_times_out_hanging_agents(tmp_path: Path) -> None:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(
        _run(tmp_path, "toy-sleeper", "toy", episodes=1, step_timeout=0.3, agent_options={"seconds": 0.8}).results))
    thread.start()
    thread.join(30)
    assert list(results[0]["error"]) == ["agent.act() did not return within the 0.3 s step timeout (--step-timeout)"]


def test_cli_options(tmp_path: Path) -> None:
    from vlaeval.cli import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["run", "--agent", "toy-batch-solver", "--suite", "toy-chain", "-n", "6", "--out", str(tmp_path),
                             "--run-id", "cli", "--no-progress", "--envs-per-worker", "3", "--env-mode", "sync"])
    assert ok.exit_code == 0, ok.output
    assert read_manifest(tmp_path / "cli")["sessions"][-1]["envs_per_worker"] == 3
    assert len(ResultStore(tmp_path / "cli").completed()) == 6
    bad = runner.invoke(cli, ["run", "--agent", "toy-solver", "--suite", "toy", "--out", str(tmp_path), "--address", "auto"])
    assert isinstance(bad.exception, VlaevalError) and "--executor ray" in str(bad.exception)
    with pytest.raises(VlaevalError, match="--envs-per-worker must be at least 1"):
        _run(tmp_path, "toy-solver", "toy", envs_per_worker=0)


def test_async_envs_report_a_suite_that_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match="suite 'toy' cannot start its environment: RuntimeError: simulated simulator start-up failure"):
        _run(tmp_path, "toy-batch-solver", "toy", setting="broken", episodes=4, envs_per_worker=2, env_mode="async", run_id="b")
    assert not (tmp_path / "b").exists()  # the run never started: nothing left behind


def test_kosmos_reset_slot_restarts_one_slot_of_the_batch() -> None:
    """Slot 1 restarted mid-batch acts like a fresh agent; slot 0 goes on as if alone."""
    import torch

    from vlaeval.agents.resolve import make_agent

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    frames = [{"rgb_static": rng.integers(0, 256, (200, 200, 3), dtype=np.uint8),
               "rgb_gripper": rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)} for _ in range(6)]
    x, y, z = frames[:4], frames[4:5], frames[5:]
    agent = make_agent("kosmos-lstm-tiny", {"runtime": "torch", "local_files_only": True})
    assert is_batched(agent)
    text = ["open the drawer", "push the red block left"]
    batched = [agent.act_batch([x[0], y[0]], text), agent.act_batch([x[1], y[0]], text)]
    agent.reset_slot(1)
    batched += [agent.act_batch([x[2], z[0]], text), agent.act_batch([x[3], z[0]], text)]
    alone = agent  # reset(): the same network, now used one observation at a time
    alone.reset()
    solo_x = [alone.act(f, text[0]) for f in x]
    alone.reset()
    solo_z = [alone.act(f, text[1]) for f in (z[0], z[0])]
    np.testing.assert_allclose(np.stack([b[0] for b in batched]), np.stack(solo_x), atol=1e-5)
    np.testing.assert_allclose(np.stack([b[1] for b in batched[2:]]), np.stack(solo_z), atol=1e-5)
    agent.close()


def test_a_suite_that_offers_its_own_batched_pool_gets_it(tmp_path: Path, reference, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner asks the suite first (simpler on the GPU: one batched simulator) and falls back
    to its own pools when the suite answers None."""
    from vlaeval.envs.pool import SyncEnvPool
    from vlaeval_toy.agents import BatchSolver
    from vlaeval_toy.suite import ToyChainSuite

    class NativePool(SyncEnvPool):
        kind = "native"

    asked = []

    def batched_pool(self, setting, agent, action_type, size, env_mode):
        asked.append((setting, size, env_mode))
        if env_mode == "async":
            return None
        return NativePool(lambda: self.make_env(setting, agent, action_type), size)

    monkeypatch.setattr(ToyChainSuite, "batched_pool", batched_pool)  # patched here, so the agent plays here too:
    solver = lambda: BatchSolver(skill=0.5)  # noqa: E731 - an instance with one worker runs in this process
    result = _run(tmp_path, solver(), "toy-chain", episodes=24, envs_per_worker=3, run_id="native")
    pd.testing.assert_frame_equal(result.results[STABLE], reference["toy-chain"][STABLE])
    assert read_manifest(result.run_dir)["agent"]["env_mode"] == "native"
    result = _run(tmp_path, solver(), "toy-chain", episodes=6, envs_per_worker=2, env_mode="async", run_id="own")
    assert read_manifest(result.run_dir)["agent"]["env_mode"] == "async"
    assert asked == [("default", 3, "auto"), ("default", 2, "async")]
