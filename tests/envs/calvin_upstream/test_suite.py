"""The calvin-upstream suite through the harness: episodes, the expert, workers, resume, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("calvin_env", reason="upstream calvin_env is not installed (bash scripts/install-calvin-upstream.sh)")

import vlaeval  # noqa: E402
from vlaeval.envs.calvin.suite import CalvinSuite  # noqa: E402
from vlaeval.envs.calvin_upstream.install import installation  # noqa: E402
from vlaeval.envs.calvin_upstream.suite import CalvinUpstreamSuite  # noqa: E402
from vlaeval.errors import VlaevalError  # noqa: E402
from vlaeval.results.store import EPISODES_FILE, ResultStore, load_results, read_manifest  # noqa: E402

STABLE = ["agent", "suite", "suite_version", "setting", "task", "episode", "position", "seed", "success", "steps", "error", "instruction"]
#: Chains the expert plays in these tests (it solves all of their 40 subtasks on upstream).
CHAINS = 8


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The expert on the first chains with one worker."""
    return vlaeval.evaluate("expert", "calvin-upstream", episodes=CHAINS, workers=1, progress=False,
                            out=tmp_path_factory.mktemp("upstream"), run_id="one")


@pytest.mark.parametrize("setting", ["D->D", "unseen-instructions"])
def test_the_1000_chains_are_calvins(setting: str) -> None:
    assert CalvinUpstreamSuite().episodes(setting, 0) == CalvinSuite().episodes(setting, 0)
    assert CalvinUpstreamSuite.spec.protocol == CalvinSuite.spec.protocol
    assert CalvinUpstreamSuite.spec.settings == CalvinSuite.spec.settings


def test_expert_solves_the_first_chains_judged_by_upstreams_oracle(reference: Any) -> None:
    frame = reference.results
    assert len(frame) == 5 * CHAINS and frame["success"].all() and frame["error"].isna().all()
    assert (frame["suite"] == "calvin-upstream").all()
    assert reference.summary()["avg_len"] == 5.0
    assert (frame["steps"] < 360).all() and frame["steps"].min() > 0
    found = installation()
    versions = read_manifest(reference.run_dir)["versions"]
    assert (versions["calvin_env"], versions["calvin_env_revision"]) == (found.revision, found.kind)


def test_two_workers_equal_one(reference: Any, tmp_path: Path) -> None:
    two = vlaeval.evaluate("expert", "calvin-upstream", episodes=CHAINS, workers=2, progress=False, out=tmp_path)
    pd.testing.assert_frame_equal(two.results[STABLE], reference.results[STABLE])


def test_kill_then_resume_loses_and_duplicates_nothing(reference: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "vlaeval", "run", "--agent", "expert", "--suite", "calvin-upstream", "--episodes",
               str(CHAINS), "--workers", "2", "--out", str(tmp_path), "--run-id", "killed", "--no-progress"]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL)
    log = run_dir / EPISODES_FILE
    _wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    after_kill = len(ResultStore(run_dir).completed())
    assert 2 <= after_kill < CHAINS
    assert read_manifest(run_dir)["status"] == "running"

    done = subprocess.run([sys.executable, "-m", "vlaeval", "run", "--resume", str(run_dir), "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frame = load_results(run_dir)
    assert not frame.duplicated(["episode", "position"]).any()
    pd.testing.assert_frame_equal(frame[STABLE], reference.results[STABLE])
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "finished" and len(manifest["sessions"]) == 2


def test_several_envs_in_one_process_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError) as error:
        vlaeval.evaluate("expert", "calvin-upstream", episodes=2, envs_per_worker=2, progress=False, out=tmp_path)
    message = str(error.value)
    assert "one upstream env per process" in message and "use --workers 2" in message and "\n" not in message
    with pytest.raises(VlaevalError, match="--env-mode sync cannot step 2"):
        CalvinUpstreamSuite().batched_pool("D->D", vlaeval.AgentSpec(), "relative_ee", 2, "sync")


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)
