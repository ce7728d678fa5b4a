"""Kosmos VLA: config, tokenizer, network semantics, trainability, presets and the agent (torch runtime)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from tests.agents.kosmos_helpers import random_observations, tiny_config, tiny_model  # noqa: F401 (fixtures)
from vlaeval.agents.checkpoint import save_checkpoint
from vlaeval.agents.codec import ActionCodec
from vlaeval.agents.kosmos import KosmosLSTMAgent, KosmosVLAConfig, get_preset
from vlaeval.agents.kosmos.config import agent_spec
from vlaeval.agents.kosmos.export import example_inputs
from vlaeval.agents.kosmos.model import action_loss, build_model, step_input_names
from vlaeval.agents.kosmos.text import TextEncoder, build_local_tokenizer, load_tokenizer
from vlaeval.agents.base import AgentContext


def _step(model, inputs):
    with torch.no_grad():
        return [o.numpy() for o in model.step(*(torch.from_numpy(inputs[n]) for n in step_input_names(model.config)))]


# --- config and tokenizer -------------------------------------------------------------------


def test_config_validates_and_round_trips() -> None:
    config = get_preset("kosmos-lstm-tiny", head="gpt", action_space="discrete", cameras=("rgb_static", "rgb_gripper"))
    assert KosmosVLAConfig.from_dict(config.to_dict()) == config
    assert get_preset("kosmos-lstm-tiny", history=False).effective_window == 1
    with pytest.raises(ValueError, match="head="):
        get_preset("kosmos-lstm-tiny", head="diffusion")
    with pytest.raises(ValueError, match="action_space="):
        get_preset("kosmos-lstm-tiny", action_space="mixed")
    with pytest.raises(ValueError, match="cameras="):
        get_preset("kosmos-lstm-tiny", cameras=("depth",))
    with pytest.raises(ValueError, match="vision tower's image_size=84"):
        get_preset("kosmos-lstm-tiny", image_size=112)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("kosmos-huge")


def test_local_tokenizer_is_deterministic() -> None:
    a, b = build_local_tokenizer.__wrapped__(512), build_local_tokenizer.__wrapped__(512)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    ids = a("open the drawer", add_special_tokens=False)["input_ids"]
    assert a.decode(ids).strip() == "open the drawer"
    assert [a.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<image>", "</image>")] == [0, 1, 2, 4, 5]


def test_text_layout_has_one_image_block_per_camera(tiny_model) -> None:
    config = get_preset("kosmos-lstm-tiny", cameras=("rgb_static", "rgb_gripper"))
    encoder = TextEncoder(load_tokenizer(config), config, tiny_model.latent_query_num)
    ids, mask = encoder(["open the drawer", "push the pink block to the left"])
    q = tiny_model.latent_query_num
    assert ids[0, 0] == 0 and ids[0, 1] == 4 and ids[0, 2 + q] == 5 and ids[0, 3 + q] == 4 and ids[0, 4 + 2 * q] == 5
    assert mask[0].sum() < mask[1].sum() == ids.shape[1] and (ids[0][mask[0] == 0] == 1).all()


# --- network semantics ----------------------------------------------------------------------


@pytest.mark.parametrize("head", ["lstm", "fc", "gpt"])
@pytest.mark.parametrize("space", ["continuous", "discrete"])
def test_step_shapes_for_every_head_and_action_space(head, space) -> None:
    config = get_preset("kosmos-lstm-tiny", head=head, action_space=space)
    model = build_model(config)
    arm, grip, hist, hmask = _step(model, example_inputs(model, batch=3))
    extra = (config.n_bins,) if space == "discrete" else ()
    assert arm.shape == (3, config.chunk_size, 6, *extra) and grip.shape == (3, config.chunk_size)
    assert hist.shape == (3, 16, 64) and hmask.shape == (3, 16)
    if space == "continuous":
        assert np.abs(arm).max() <= 1.0


def test_window_shifts_and_padding_never_changes_a_row(tiny_model) -> None:
    inputs = example_inputs(tiny_model, batch=2, text_len=6)
    inputs["attention_mask"][1, -3:] = 0  # row 1 is right-padded by 3 tokens
    inputs["input_ids"][1, -3:] = 1
    arm, _, hist, hmask = _step(tiny_model, inputs)
    np.testing.assert_array_equal(hist[:, :-1], inputs["history"][:, 1:])
    assert (hmask[:, -1] == 1).all()
    single = {k: v[1:2] for k, v in inputs.items()}
    single["input_ids"], single["attention_mask"] = single["input_ids"][:, :-3], single["attention_mask"][:, :-3]
    np.testing.assert_allclose(_step(tiny_model, single)[0], arm[1:2], atol=1e-6)


def test_state_input_conditions_the_action_and_wraps_roll() -> None:
    """With use_state the robot_obs is a graph input; roll +pi and -pi are the same orientation."""
    config = get_preset("kosmos-lstm-tiny", use_state=True)
    assert step_input_names(config)[:2] == ("rgb_static", "robot_obs")
    assert agent_spec(config).observation_keys == ("rgb_static", "robot_obs")
    model = build_model(config)
    inputs = example_inputs(model, batch=1)
    moved = dict(inputs, robot_obs=inputs["robot_obs"] + np.float32(0.5))
    assert np.abs(_step(model, moved)[0] - _step(model, inputs)[0]).max() > 1e-4
    plus, minus = (dict(inputs, robot_obs=inputs["robot_obs"].copy()) for _ in range(2))
    plus["robot_obs"][:, 3], minus["robot_obs"][:, 3] = np.pi, -np.pi
    np.testing.assert_allclose(_step(model, plus)[0], _step(model, minus)[0], atol=1e-5)


@pytest.mark.parametrize("head", ["lstm", "gpt"])
def test_invalid_history_slots_are_ignored(head) -> None:
    model = build_model(get_preset("kosmos-lstm-tiny", head=head))
    inputs = example_inputs(model, batch=1)
    garbage = dict(inputs, history=inputs["history"].copy())
    garbage["history"][:, : model.config.window_size // 2] = 1e3  # slots marked invalid by history_mask
    np.testing.assert_allclose(_step(model, garbage)[0], _step(model, inputs)[0], atol=1e-6)


@pytest.mark.parametrize("space", ["continuous", "discrete"])
def test_tiny_model_trains(space) -> None:
    """A few optimiser steps on one batch of windows lower the RoboVLMs loss (end-to-end gradients)."""
    torch.manual_seed(0)  # dropout draws from the global generator: independent of test order
    config = get_preset("kosmos-lstm-tiny", action_space=space, window_size=4, chunk_size=3)
    model = build_model(config).train()
    codec = ActionCodec.symmetric(1.0)
    rng = np.random.default_rng(0)
    b, w, c = 2, config.window_size, config.chunk_size
    frames = torch.from_numpy(rng.integers(0, 256, (b * w, 84, 84, 3), dtype=np.uint8))
    encoder = TextEncoder(load_tokenizer(config), config, model.latent_query_num)
    ids, mask = (torch.from_numpy(x) for x in encoder(["open the drawer"] * (b * w)))
    targets = rng.uniform(-0.9, 0.9, (b, w, c, 6))
    arm_target = torch.from_numpy(codec.to_bins(targets) if space == "discrete" else targets.astype(np.float32))
    gripper_target = torch.from_numpy(rng.choice([-1.0, 1.0], (b, w, c)).astype(np.float32))
    valid = torch.ones(b, w, c)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        features = model.encode({"rgb_static": frames}, ids, mask).view(b, w, -1)
        arm, grip = model.predict(features, torch.ones(b, w))
        loss = action_loss(arm, grip, arm_target, gripper_target, valid, config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert model.action_token.grad is not None and model.backbone.vision_model.model.embeddings.patch_embedding.weight.grad is not None
    assert np.mean(losses[-5:]) < 0.75 * losses[0], str([round(v, 3) for v in losses])


# --- presets --------------------------------------------------------------------------------


def test_pretrained_preset_without_local_weights_fails_with_instructions(tmp_path) -> None:
    code = textwrap.dedent("""
        from vlaeval.agents.kosmos import KosmosLSTMAgent, WeightsNotAvailableError
        try:
            KosmosLSTMAgent(preset="kosmos-lstm", runtime="torch", local_files_only=True)
        except WeightsNotAvailableError as exc:
            print(exc)
        else:
            raise SystemExit("expected WeightsNotAvailableError")
    """)
    env = dict(os.environ, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1", PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not available locally" in out.stdout
    assert "huggingface-cli download microsoft/kosmos-2-patch14-224" in out.stdout and "HF_HOME" in out.stdout
    assert "Traceback" not in out.stdout



def test_kosmos_lstm_without_cached_weights_fails_fast_offline_or_not(tmp_path) -> None:
    """No HF_HUB_OFFLINE: the cache is probed locally instead of the hub client retrying for ~25 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), PYTHONPATH=os.getcwd())
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vlaeval", "run", "--agent", "kosmos-lstm", "--suite", "calvin", "-n", "1",
                          "--out", str(tmp_path / "runs")], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    print(f"kosmos-lstm without weights failed in {elapsed:.2f} s")
    assert out.returncode == 2, out.stderr[-2000:]
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "hf download microsoft/kosmos-2-patch14-224" in lines[0] and "HF_HOME" in lines[0]
    assert "--checkpoint" in lines[0] and "checkpoint=..." not in lines[0] and "local_files_only=false" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_weights_probe_reads_only_the_local_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from vlaeval.agents.kosmos.hub import weights_cached

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--model"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text("{}")
    assert not weights_cached("org/model")  # a config without weights is not a model
    (snapshot / "model.safetensors").write_bytes(b"")
    assert weights_cached("org/model") and not weights_cached("org/other")


# --- agent ----------------------------------------------------------------------------------


@pytest.fixture()
def agent():
    a = KosmosLSTMAgent(runtime="torch")
    yield a
    a.close()


def test_agent_returns_float32_actions_with_binary_gripper(agent) -> None:
    assert agent.spec.observation_keys == ("rgb_static",) and agent.spec.gripper == "open_positive"
    for obs in random_observations(3):
        action = agent.act(obs, "open the drawer")
        assert action.shape == (7,) and action.dtype == np.float32 and action[6] in (-1.0, 1.0)
        assert np.abs(action[:6]).max() <= 1.0
    assert agent.runtime_name == "torch"


def test_reset_clears_history(agent) -> None:
    obs = random_observations(4)
    first = [agent.act(o, "open the drawer") for o in obs]
    agent.reset()
    again = [agent.act(o, "open the drawer") for o in obs]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[0][:6], first[1][:6])  # history (and frames) change the output


def test_act_batch_keeps_one_history_per_slot(agent) -> None:
    instructions = ["open the drawer", "turn on the led", "lift the red block from the table"]
    steps = [random_observations(3, seed=s) for s in range(3)]
    batched = [agent.act_batch(obs, instructions) for obs in steps]
    for slot, instruction in enumerate(instructions):
        single = KosmosLSTMAgent(runtime="torch")
        for t, obs in enumerate(steps):
            np.testing.assert_allclose(single.act(obs[slot], instruction), batched[t][slot], atol=1e-5)
    with pytest.raises(ValueError, match="batch size changed"):
        agent.act_batch(steps[0][:2], instructions[:2])
    agent.reset()
    assert agent.act_batch(steps[0][:2], instructions[:2]).shape == (2, 7)


def test_action_horizon_executes_the_chunk_open_loop() -> None:
    agent = KosmosLSTMAgent(runtime="torch", action_horizon=3)
    obs = random_observations(4)
    inputs = {"rgb_static": obs[0]["rgb_static"][None]}
    inputs["input_ids"], inputs["attention_mask"] = agent._text(["open the drawer"])
    inputs["history"], inputs["history_mask"] = np.zeros((1, 16, 64), np.float32), np.zeros((1, 16), np.float32)
    arm, grip, _, _ = _step(agent.model, inputs)
    chunk = agent.decode(arm, grip)[0]
    actions = [agent.act(o, "open the drawer") for o in obs]
    np.testing.assert_allclose(actions[:3], chunk[:3], atol=1e-6)
    assert not np.allclose(actions[3], chunk[3])  # a new chunk was taken at step 4
    with pytest.raises(ValueError, match="action_horizon"):
        KosmosLSTMAgent(runtime="torch", action_horizon=11)


def test_agent_from_checkpoint_uses_its_cameras_and_codec(tmp_path) -> None:
    config = get_preset("kosmos-lstm-tiny", cameras=("rgb_static", "rgb_gripper"), head="gpt")
    codec = ActionCodec.symmetric(0.02)
    save_checkpoint(tmp_path / "ck", build_model(config), config, codec)
    agent = KosmosLSTMAgent(checkpoint=str(tmp_path / "ck"), runtime="torch")
    assert agent.spec.observation_keys == ("rgb_static", "rgb_gripper")
    assert KosmosLSTMAgent.spec.observation_keys == ("rgb_static",)  # class default untouched
    action = agent.act(random_observations(1, cameras=config.cameras)[0], "stack the blocks")
    assert np.abs(action[:6]).max() <= 0.02 and action[6] in (-1.0, 1.0)


def test_agent_rejects_bad_inputs(agent) -> None:
    with pytest.raises(ValueError, match="uint8"):
        agent.act({"rgb_static": np.zeros((200, 200, 3), np.float32)}, "open the drawer")
    with pytest.raises(ValueError, match="no 'rgb_static'"):
        agent.act({"rgb_gripper": np.zeros((84, 84, 3), np.uint8)}, "open the drawer")
    with pytest.raises(ValueError, match="runtime="):
        KosmosLSTMAgent(runtime="tvm")
    import gymnasium

    space = gymnasium.spaces.Box(-1, 1, (8,))
    with pytest.raises(ValueError, match="action space"):
        agent.bind(AgentContext("calvin", "D", "relative_ee", space, None))
