"""Recording through the rollout core: the runner's guards apply, so a misbehaving agent fails its
demos (kept, flagged, with the error) instead of ending the recording."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import pytest

from vlaeval.training.record import RecordConfig, record


def _record(tmp_path: Path, agent: str, **kw) -> tuple[dict, h5py.File]:
    summary = record(RecordConfig(agent=agent, suite="toy", episodes=4, cameras=(), **kw), tmp_path / agent, progress=False)
    return summary, h5py.File(tmp_path / agent / "demos.hdf5", "r")


def test_a_good_agent_records_solved_demos_without_errors(tmp_path: Path) -> None:
    summary, f = _record(tmp_path, "toy-solver")
    assert summary["demos"] == 4 and summary["errors"] == 0 and summary["mask/failed"] == 0
    for demo in f["data"].values():
        assert demo.attrs["success"] and "error" not in demo.attrs
        assert demo["rewards"][-1] == 1.0 and demo["actions"].shape == (demo.attrs["num_samples"], 7)


@pytest.mark.parametrize("agent, options, error", [
    ("toy-crash", {}, "agent raised in act(): RuntimeError: policy exploded"),
    ("toy-nan", {}, "agent returned a non-finite action"),
    ("toy-sleeper", {"seconds": 30}, "agent.act() did not return within the 0.3 s step timeout (--step-timeout)"),
])
def test_a_misbehaving_agent_fails_its_demos_and_the_recording_goes_on(tmp_path: Path, agent: str, options: dict, error: str) -> None:
    started = time.monotonic()
    summary, f = _record(tmp_path, agent, agent_options=options, step_timeout=0.3)
    assert time.monotonic() - started < 20  # four hangs, each cut at the step timeout
    assert summary["demos"] == 4 and summary["errors"] == 4 and summary["mask/failed"] == 4
    for demo in f["data"].values():
        assert not demo.attrs["success"] and demo.attrs["error"].startswith(error)
        assert demo["actions"].shape == (0, 7)  # the failing step itself is not a transition
