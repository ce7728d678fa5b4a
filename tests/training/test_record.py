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


def test_an_interrupted_recording_resumes_and_equals_an_uninterrupted_one(tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    import vlaeval.training.record as rec
    from vlaeval.errors import VlaevalError

    config = RecordConfig(agent="toy-solver", suite="toy", episodes=6, cameras=())
    record(config, tmp_path / "straight", progress=False, shard_size=2)

    played = []
    real = rec._record_shard

    def killed_at_the_second_shard(shard):
        if len(played) == 1:
            raise KeyboardInterrupt  # what a kill leaves: the finished shard, no dataset
        played.append(shard.path)
        return real(shard)

    monkeypatch.setattr(rec, "_record_shard", killed_at_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        record(config, tmp_path / "resumed", progress=False, shard_size=2)
    assert not (tmp_path / "resumed" / "demos.hdf5").exists()
    with pytest.raises(VlaevalError, match="another configuration"):
        record(RecordConfig(agent="toy-solver", suite="toy", episodes=5, cameras=()), tmp_path / "resumed", progress=False, shard_size=2)

    played.clear()
    monkeypatch.setattr(rec, "_record_shard", lambda shard: (played.append(shard.path), real(shard))[1])
    summary = record(config, tmp_path / "resumed", progress=False, shard_size=2)
    assert [Path(p).name for p in played] == ["shard-00001.hdf5", "shard-00002.hdf5"]  # shard 0 was not replayed
    assert summary["demos"] == 6 and not (tmp_path / "resumed" / rec.SHARDS_DIR).exists()
    with h5py.File(tmp_path / "straight" / "demos.hdf5") as a, h5py.File(tmp_path / "resumed" / "demos.hdf5") as b:
        assert list(a["data"]) == list(b["data"])
        for name in a["data"]:
            np.testing.assert_array_equal(a["data"][name]["actions"][()], b["data"][name]["actions"][()])
            assert a["data"][name].attrs["seed"] == b["data"][name].attrs["seed"]
