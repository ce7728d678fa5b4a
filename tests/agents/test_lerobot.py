"""LeRobot datasets and policies: expert demos recorded as a LeRobotDataset that LeRobot reads back
frame for frame, LeRobot policies evaluated as agents, policies for another action space refused
before their first step, and (slow) a real ``lerobot-train`` run evaluated on ``calvin``.

LeRobot 0.6 needs Python >= 3.12, so most of these run only in ``.venv-lerobot``::

    bash scripts/setup-lerobot.sh && .venv-lerobot/bin/python -m pytest tests/agents/test_lerobot.py

The tests that need no LeRobot (lazy imports, the JSON side of the agent, the error where LeRobot
is missing) run in the project's venv too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vlaeval
from tests.agents.lerobot_helpers import lerobot_train_command, save_tiny_act
from tests.conftest import run_cli
from vlaeval.agents.lerobot.meta import PolicyInfo
from vlaeval.errors import VlaevalError

HAS_LEROBOT = importlib.util.find_spec("lerobot") is not None
needs_lerobot = pytest.mark.skipif(
    not HAS_LEROBOT, reason="needs lerobot 0.6 (Python 3.12): bash scripts/setup-lerobot.sh && "
                            ".venv-lerobot/bin/python -m pytest tests/agents/test_lerobot.py")

RECORD = ("--agent", "expert", "--suite", "calvin", "--scenes", "D", "--tasks", "articulated", "--chain-length", "2",
          "--episodes", "3", "--cameras", "rgb_static,rgb_gripper", "--no-progress")


# --- without LeRobot ---------------------------------------------------------------------------

def test_importing_the_lerobot_modules_imports_neither_lerobot_nor_torch() -> None:
    code = ("import sys, vlaeval.agents.lerobot, vlaeval.training.lerobot_dataset, vlaeval.agents.plugin; "
            "print(sorted(m for m in ('torch', 'lerobot', 'h5py') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_without_lerobot_the_agent_and_the_dataset_writer_fail_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lerobot" else real(name, *a))
    assert run_cli("run", "--agent", "lerobot", "--agent-opt", f"path={tmp_path}", "--suite", "calvin", "--episodes", "1",
                   "--out", str(tmp_path / "runs")) == 2
    assert run_cli("record", "--format", "lerobot", "--agent", "expert", "--episodes", "1", "--out", str(tmp_path / "d")) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == ["error: the lerobot agent needs the lerobot extra in a Python 3.12 venv: bash scripts/setup-lerobot.sh",
                      "error: --format lerobot needs the lerobot extra in a Python 3.12 venv: bash scripts/setup-lerobot.sh"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists()


def _policy_dir(root: Path, *, inputs: dict | None = None, dataset: Path | None = None) -> Path:
    """A policy directory as LeRobot writes one, as far as the agent reads it before loading."""
    root.mkdir()
    inputs = inputs or {"observation.images.static": {"type": "VISUAL", "shape": [3, 200, 200]},
                        "observation.state": {"type": "STATE", "shape": [15]}}
    (root / "config.json").write_text(json.dumps({"type": "act", "input_features": inputs,
                                                  "output_features": {"action": {"type": "ACTION", "shape": [7]}}}))
    (root / "model.safetensors").write_bytes(b"")
    for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
        (root / name).write_text(json.dumps({"name": name[:-5], "steps": [{"registry_name": "device_processor", "config": {}}]}))
    if dataset is not None:
        (root / "train_config.json").write_text(json.dumps({"dataset": {"repo_id": "vlaeval/x", "root": str(dataset)}}))
    return root


def test_a_policy_declares_the_conventions_of_the_dataset_it_was_trained_on(tmp_path) -> None:
    dataset = tmp_path / "data"
    (dataset / "meta").mkdir(parents=True)
    block = {"format": "vlaeval-lerobot-1", "action_type": "absolute_ee", "rotation": "euler_xyz",
             "gripper": "open_positive", "normalization": "none", "suite": "calvin"}
    (dataset / "meta" / "info.json").write_text(json.dumps({"features": {"action": {"dtype": "float32", "shape": [7], "vlaeval": block}}}))
    info = PolicyInfo.read(_policy_dir(tmp_path / "trained", dataset=dataset))
    spec = info.agent_spec()
    assert (spec.action_type, spec.rotation, spec.gripper) == ("absolute_ee", "euler_xyz", "open_positive")
    assert spec.observation_keys == ("rgb_static", "robot_obs") and info.action_dim == 7
    assert info.conventions_from == f"{dataset}/meta/info.json"
    # Options override the dataset; without either the meaning of the actions is unknown, which is an error.
    assert PolicyInfo.read(tmp_path / "trained", gripper="close_positive").conventions.gripper == "close_positive"
    with pytest.raises(VlaevalError, match="meaning of its actions is unknown"):
        PolicyInfo.read(_policy_dir(tmp_path / "elsewhere"))
    explicit = PolicyInfo.read(tmp_path / "elsewhere", action_type="relative_ee", rotation="euler_xyz", gripper="open_positive")
    assert explicit.conventions_from == "agent options"
    with pytest.raises(VlaevalError, match="reads observation.environment_state, which vlaeval cannot provide"):
        PolicyInfo.read(_policy_dir(tmp_path / "privileged", inputs={"observation.environment_state": {"type": "ENV", "shape": [24]}}))
    with pytest.raises(VlaevalError, match="not one of relative_ee"):
        PolicyInfo.read(tmp_path / "elsewhere", action_type="delta", rotation="euler_xyz", gripper="open_positive")
    (tmp_path / "elsewhere" / "policy_preprocessor.json").write_text(json.dumps({"steps": [{"class": "os.system", "config": {}}]}))
    with pytest.raises(VlaevalError, match=r"names processor steps by import path \(os.system\)"):
        PolicyInfo.read(tmp_path / "elsewhere", action_type="relative_ee", rotation="euler_xyz", gripper="open_positive")
    (tmp_path / "elsewhere" / "policy_postprocessor.json").unlink()
    with pytest.raises(VlaevalError, match="has no policy_postprocessor.json: save the policy's pre- and post-processor"):
        PolicyInfo.read(tmp_path / "elsewhere", action_type="relative_ee", rotation="euler_xyz", gripper="open_positive")


# --- with LeRobot ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 2-task expert chains in scene D with both cameras: as HDF5, converted, and recorded
    straight to LeRobot (the same episodes: recording is deterministic)."""
    if not HAS_LEROBOT:
        pytest.skip("needs lerobot")
    root = tmp_path_factory.mktemp("lerobot")
    paths = {"hdf5": root / "hdf5", "converted": root / "converted", "direct": root / "direct"}
    assert run_cli("record", *RECORD, "--out", str(paths["hdf5"])) == 0
    assert run_cli("convert-dataset", str(paths["hdf5"]), "--to", "lerobot", "--out", str(paths["converted"])) == 0
    assert run_cli("record", *RECORD, "--format", "lerobot", "--out", str(paths["direct"])) == 0
    return paths


@needs_lerobot
def test_the_dataset_is_what_lerobot_reads_frame_for_frame(recorded) -> None:
    import h5py
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("vlaeval/calvin", root=recorded["converted"])
    with h5py.File(recorded["hdf5"] / "demos.hdf5", "r") as f:
        names = [n.decode() for n in f["mask/successful"][()]]
        demos = [f["data"][n] for n in names]
        assert len(names) >= 2 and dataset.meta.total_episodes == len(names)
        assert dataset.num_frames == sum(int(d.attrs["num_samples"]) for d in demos)
        assert dataset.fps == 30
        features = dataset.meta.features
        shapes = {name: (feature["dtype"], tuple(feature["shape"])) for name, feature in features.items()}
        assert {k: shapes[k] for k in ("observation.images.static", "observation.images.gripper", "observation.state", "action")} == {
            "observation.images.static": ("image", (200, 200, 3)), "observation.images.gripper": ("image", (84, 84, 3)),
            "observation.state": ("float32", (15,)), "action": ("float32", (7,))}
        assert features["action"]["vlaeval"] == {"format": "vlaeval-lerobot-1", "action_type": "relative_ee", "rotation": "euler_xyz",
                                                 "gripper": "open_positive", "normalization": "none", "suite": "calvin"}
        start = 0
        for demo in demos:  # first and last frame of every episode, and the first frame of its second subtask
            subtask = demo["subtask"][()]
            instructions = json.loads(demo.attrs["instructions"])
            for t in (0, int(np.argmax(subtask == 1)), len(subtask) - 1):
                item = dataset[start + t]
                assert item["task"] == instructions[subtask[t]]
                np.testing.assert_array_equal(item["action"].numpy(), demo["actions"][t])
                np.testing.assert_array_equal(item["observation.state"].numpy(), demo["obs/robot_obs"][t].astype(np.float32))
                for camera, key in (("static", "rgb_static"), ("gripper", "rgb_gripper")):  # PNG: lossless
                    image = (item[f"observation.images.{camera}"].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0)
                    np.testing.assert_array_equal(image, demo[f"obs/{key}"][t])
            start += len(subtask)
    direct = LeRobotDataset("vlaeval/calvin", root=recorded["direct"])
    assert direct.meta.features == dataset.meta.features and direct.num_frames == dataset.num_frames
    np.testing.assert_array_equal(np.stack(direct.hf_dataset["action"]), np.stack(dataset.hf_dataset["action"]))
    assert json.loads((recorded["direct"] / "record.json").read_text())["config"]["agent"] == "expert"


@needs_lerobot
def test_a_saved_lerobot_policy_plays_a_chain(recorded, tmp_path) -> None:
    policy = save_tiny_act(recorded["converted"], tmp_path / "policy")
    run = vlaeval.evaluate(f"lerobot:{policy}", "calvin", episodes=1, agent_options={"dataset": str(recorded["converted"])},
                           out=tmp_path / "runs", progress=False)
    rows = run.results
    assert len(rows) >= 1 and rows["error"].isna().all() and rows["steps"].iloc[0] > 0


@needs_lerobot
def test_the_action_queue_is_cleared_at_every_subtask(recorded, tmp_path) -> None:
    import gymnasium

    import vlaeval.envs.registration  # noqa: F401
    from vlaeval.agents.base import AgentContext
    from vlaeval.agents.lerobot import LeRobotAgent

    agent = LeRobotAgent(str(save_tiny_act(recorded["converted"], tmp_path / "policy")), dataset=str(recorded["converted"]))
    env = gymnasium.make("vlaeval/Calvin-v0", cameras=("rgb_static", "rgb_gripper"))
    try:
        observation, _ = env.reset(seed=0)
        agent.bind(AgentContext("calvin", "D->D", "relative_ee", env.action_space, env.observation_space))
        agent.reset()
        action = agent.act(observation, "open the drawer")
        assert action.shape == (7,) and action.dtype == np.float32 and np.isfinite(action).all()
        assert len(agent._policy._action_queue) == 9  # one chunk of 10, one action taken
        agent.reset()
        assert len(agent._policy._action_queue) == 0
    finally:
        env.close()


@needs_lerobot
def test_a_policy_for_another_action_space_is_refused_before_its_first_step(recorded, tmp_path, capsys) -> None:
    six = save_tiny_act(recorded["converted"], tmp_path / "six", action_dim=6)
    assert run_cli("run", "--agent", f"lerobot:{six}", "--agent-opt", f"dataset={recorded['converted']}", "--suite", "calvin",
                   "--episodes", "1", "--out", str(tmp_path / "runs"), "--run-id", "six", "--no-progress") == 2
    assert "emits 6-d actions, suite 'calvin' takes shape (7,)" in capsys.readouterr().err
    seven = save_tiny_act(recorded["converted"], tmp_path / "seven")
    assert run_cli("run", "--agent", "lerobot", "--agent-opt", f"path={seven}", "--agent-opt", f"dataset={recorded['converted']}",
                   "--agent-opt", "action_type=joint", "--suite", "calvin", "--episodes", "1", "--out", str(tmp_path / "runs"),
                   "--run-id", "joint", "--no-progress") == 2
    assert "action type: agent emits 'joint', suite accepts relative_ee, absolute_ee" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "six").exists() and not (tmp_path / "runs" / "joint").exists()  # no episode ran


@needs_lerobot
@pytest.mark.slow
def test_lerobot_train_then_evaluate_on_calvin(tmp_path) -> None:
    """The loop a LeRobot user runs: record, ``lerobot-train``, ``vlaeval run --agent lerobot:...``.

    A few minutes of CPU training (ResNet-18 on 200 px frames: seconds per step on 2 cores), so the
    policy's success is whatever it is; what is tested is that LeRobot's own trainer reads the
    dataset and its checkpoint plays the suite, with its conventions found through train_config.json.
    """
    data = tmp_path / "data"
    assert run_cli("record", "--agent", "expert", "--suite", "calvin", "--scenes", "D", "--episodes", "10",
                   "--format", "lerobot", "--out", str(data), "--no-progress") == 0
    subprocess.run(lerobot_train_command(data, tmp_path / "train", steps=100, batch_size=4), check=True, cwd=tmp_path)
    policy = tmp_path / "train" / "checkpoints" / "last" / "pretrained_model"
    assert PolicyInfo.read(policy).conventions_from == f"{data}/meta/info.json"
    run = vlaeval.evaluate(f"lerobot:{policy}", "calvin", episodes=3, out=tmp_path / "runs", progress=False)
    rows = run.results
    assert rows["error"].isna().all() and rows["episode"].nunique() == 3
    print(f"lerobot-trained tiny ACT on calvin: {run.summary()}")
