"""The commands end to end on a tiny scale: record expert demos, train BC, evaluate open-loop."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests.conftest import run_cli


def test_commands_are_registered_without_heavy_imports() -> None:
    code = ("import sys; from vlaeval.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['--help']); assert 'record' in r.output and 'offline' in r.output, r.output; "
            "r = CliRunner().invoke(cli, ['train', '--help']); assert 'bc' in r.output and 'rl' in r.output, r.output; "
            "assert 'torch' not in sys.modules and 'h5py' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("scene", ["A", "B", "C", "D"])
def test_sampled_training_chains_are_valid_for_their_random_states(scene) -> None:
    from vlaeval.envs.calvin.tasks import is_valid_chain
    from vlaeval.training.record import calvin_symbolic_state, calvin_training_episodes

    episodes = calvin_training_episodes(scene, 20, seed=0, chain_length=3)
    assert len({e.seed for e in episodes}) == 20
    for e in episodes:
        state = calvin_symbolic_state(np.asarray(e.options["scene_obs"]), scene)
        assert is_valid_chain(state, e.tasks) and len(e.instructions) == len(e.tasks)
    focused = calvin_training_episodes(scene, 10, seed=0, tasks=("open_drawer", "close_drawer"))
    assert {e.tasks for e in focused} <= {("open_drawer",), ("close_drawer",)}


def test_balanced_chains_give_rare_tasks_their_share() -> None:
    import collections

    from vlaeval.envs.calvin.tasks import TASKS
    from vlaeval.training.record import calvin_training_episodes

    def counts(balance: bool) -> collections.Counter:
        return collections.Counter(t for e in calvin_training_episodes("D", 200, seed=0, chain_length=5, balance=balance) for t in e.tasks)

    uniform, balanced = counts(False), counts(True)
    assert set(balanced) == set(TASKS)
    # Uniform draws over what applies starve tasks that rarely apply (e.g. lifting a block out of
    # the drawer); balancing at least doubles the rarest task's share and caps the most common one.
    assert min(balanced.values()) >= 2 * min(uniform.values())
    assert max(balanced.values()) < max(uniform.values())


def test_record_train_offline_round_trip(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    assert run_cli("record", "--agent", "expert", "--suite", "calvin", "--scenes", "A", "--episodes", "2",
                   "--tasks", "open_drawer,close_drawer", "--valid-fraction", "0.5", "--out", str(data), "--no-progress") == 0
    with h5py.File(data / "demos.hdf5", "r") as f:
        assert len(f["data"]) == 2 and len(f["mask/valid"]) == 1 and len(f["mask/failed"]) == 0
        g = f["data/demo_0"]
        assert g.attrs["success"] and g.attrs["scene"] == "A" and g["obs/rgb_static"].shape[1:] == (200, 200, 3)
        assert g["rewards"][-1] == 1.0 and g["actions"].shape[1] == 7
    assert json.loads((data / "record.json").read_text())["config"]["scenes"] == ["A"]

    run = tmp_path / "run"
    assert run_cli("train", "bc", "--data", str(data), "--out", str(run), "--steps", "2", "--window", "2", "--chunk", "2",
                   "--batch-size", "1", "--save-every", "1", "--threads", "1", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "BCConfig" in out and "gripper_loss_weight" in out and (run / "last" / "model.safetensors").is_file()

    report = tmp_path / "offline.json"
    assert run_cli("offline", "--checkpoint", str(run / "last"), "--data", str(data), "--out", str(report)) == 0
    out = capsys.readouterr().out
    assert "gripper accuracy" in out and "R2" in out
    metrics = json.loads(report.read_text())
    assert set(metrics["per_dim"]) == {"x", "y", "z", "roll", "pitch", "yaw"} and 0 <= metrics["gripper_accuracy"] <= 1
    assert metrics["demos"] == 1 and set(metrics["per_dim"]["x"]) == {"mae", "rmse", "r2"}


def test_user_errors_are_one_line(tmp_path, capsys) -> None:
    assert run_cli("record", "--agent", "expert", "--scenes", "A", "--tasks", "open_drawr", "--out", str(tmp_path / "d")) == 2
    assert "unknown CALVIN task(s): open_drawr" in capsys.readouterr().err
    assert run_cli("train", "bc", "--agent", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "r")) == 2
    assert "error:" in capsys.readouterr().err


def test_action_metrics_match_definitions() -> None:
    from vlaeval.training.offline import action_metrics

    true = np.array([[0.0] * 6 + [1.0], [1.0] * 6 + [-1.0], [2.0] * 6 + [1.0]])
    m = action_metrics(true.copy(), true)
    assert m["mean"]["mae"] == 0 and m["per_dim"]["x"]["r2"] == 1 and m["gripper_accuracy"] == 1
    pred = true.copy()
    pred[:, 0] = 1.0  # predicting the mean: R2 = 0
    pred[0, -1] = -1.0
    m = action_metrics(pred, true)
    assert m["per_dim"]["x"]["r2"] == pytest.approx(0) and m["per_dim"]["x"]["mae"] == pytest.approx(2 / 3)
    assert m["per_dim"]["x"]["rmse"] == pytest.approx(np.sqrt(2 / 3)) and m["gripper_accuracy"] == pytest.approx(2 / 3)
