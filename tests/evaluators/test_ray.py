"""``executor="ray"`` on a local Ray instance started here (``num_cpus=2``, loopback only)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import vlaeval
from vlaeval.errors import VlaevalError
from vlaeval.results.store import EPISODES_FILE, read_manifest

STABLE = ["suite", "suite_version", "setting", "task", "episode", "position", "seed", "success", "steps", "error", "instruction"]


def _run(tmp_path: Path, agent, suite: str = "toy-chain", **kw):
    return vlaeval.evaluate(agent, suite, out=tmp_path, progress=False, **kw)


@pytest.fixture(scope="module")
def ray_instance():
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the instance on 127.0.0.1
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_run_equals_the_local_run_episode_by_episode(tmp_path: Path, ray_instance) -> None:
    local = _run(tmp_path, "toy://solver?skill=0.5", episodes=16, run_id="local").results
    on_ray = _run(tmp_path, "toy://solver?skill=0.5", episodes=16, run_id="ray", executor="ray", workers=2)
    pd.testing.assert_frame_equal(on_ray.results[STABLE], local[STABLE])
    assert 0 < local.groupby("episode")["success"].all().mean() < 1
    manifest = read_manifest(on_ray.run_dir)
    assert manifest["status"] == "finished" and manifest["sessions"][-1]["executor"] == "ray"
    assert ray_instance.is_initialized()  # an instance the caller started is left running

    batched = _run(tmp_path, "toy://batch-solver?skill=0.5", episodes=16, run_id="ray-batched", executor="ray", workers=2,
                   envs_per_worker=3, env_mode="sync")
    pd.testing.assert_frame_equal(batched.results[STABLE], local[STABLE])


def test_a_killed_worker_is_retried_without_duplicates(tmp_path: Path, ray_instance) -> None:
    reference = _run(tmp_path, "toy-dier", episodes=12, run_id="reference").results  # no marker: never dies
    marker = tmp_path / "died"
    run = _run(tmp_path, "toy-dier", episodes=12, run_id="killed", executor="ray", workers=2,
               agent_options={"marker": str(marker), "after": 30})
    assert marker.exists(), "a worker process killed itself mid-shard"
    retries = read_manifest(run.run_dir)["sessions"][-1]["retries"]
    assert len(retries) == 1 and "WorkerCrashedError" in retries[0] and "retrying" in retries[0]
    lines = (run.run_dir / EPISODES_FILE).read_text().splitlines()
    assert sorted(json.loads(line)["episode"] for line in lines) == list(range(12))  # each stored exactly once
    pd.testing.assert_frame_equal(run.results[STABLE], reference[STABLE])


def test_resume_on_ray(tmp_path: Path, ray_instance) -> None:
    full = _run(tmp_path, "toy://solver?skill=0.5", episodes=12, run_id="full").results
    part = _run(tmp_path, "toy://solver?skill=0.5", episodes=12, run_id="part")
    log = part.run_dir / EPISODES_FILE
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:5]) + lines[5][:10])
    resumed = vlaeval.evaluate("toy://solver?skill=0.5", resume=part.run_dir, progress=False, executor="ray", workers=2)
    pd.testing.assert_frame_equal(resumed.results[STABLE], full[STABLE])
    assert len(log.read_text().splitlines()) == 12
    assert [s["executor"] for s in read_manifest(part.run_dir)["sessions"]] == ["local", "ray"]


def test_errors_raised_on_ray_fail_the_run_like_local_ones(tmp_path: Path, ray_instance) -> None:
    with pytest.raises(VlaevalError, match="suite 'toy' cannot start its environment: RuntimeError: simulated"):
        _run(tmp_path, "toy-solver", suite="toy", setting="broken", episodes=4, executor="ray", workers=2, run_id="broken")
    assert not (tmp_path / "broken").exists()  # the run never started: nothing left behind


def test_cli_runs_on_the_current_ray_instance(tmp_path: Path, ray_instance) -> None:
    from vlaeval.cli import cli

    result = CliRunner().invoke(cli, ["run", "--agent", "toy-solver", "--suite", "toy", "-n", "4", "--out", str(tmp_path),
                                      "--run-id", "cli", "--no-progress", "--executor", "ray", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "success_rate=1.000" in result.output


def test_a_clear_error_without_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(VlaevalError, match=r"--executor ray needs Ray .*: pip install 'vlaeval\[ray\]'"):
        _run(tmp_path, "toy-solver", suite="toy", executor="ray")
    assert not any(tmp_path.iterdir()), "no run directory for a run that cannot start"


def test_the_step_timeout_applies_on_ray_workers(tmp_path: Path, ray_instance) -> None:
    frame = _run(tmp_path, "toy-sleeper", suite="toy", episodes=2, executor="ray", workers=2, step_timeout=0.5,
                 agent_options={"seconds": 30}).results
    assert list(frame["error"]) == ["agent.act() did not return within the 0.5 s step timeout (--step-timeout)"] * 2
