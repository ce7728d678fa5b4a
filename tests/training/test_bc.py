"""Behaviour cloning: the loss goes down, checkpoints load as agents, and runs resume exactly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tests.training.helpers import make_dataset
from vlaeval.training.bc import BCConfig, batch_loss, lr_factor, model_config, train_bc
from vlaeval.training.dataset import WindowDataset, collate


def _cfg(tmp_path, **kw) -> BCConfig:
    base = dict(data=str(make_dataset(tmp_path / "data")), out=str(tmp_path / "run"), window=2, chunk=2, steps=4,
                batch_size=2, warmup_steps=1, save_every=2, log_every=1, threads=1, valid_windows=4)
    base.update(kw)
    return BCConfig(**base)


@pytest.mark.parametrize("use_state", [False, True], ids=["image", "image+state"])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(tmp_path, use_state) -> None:
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.agents.kosmos.text import TextEncoder, load_tokenizer

    cfg = _cfg(tmp_path, model_overrides={"use_state": use_state})
    mconf = model_config(cfg)
    assert mconf.arm_gripper_loss_ratio == 0.1 and mconf.window_size == 2 and mconf.chunk_size == 2
    model = build_model(mconf).eval()  # no dropout: the loss of a fixed batch is then a plain function of the weights
    ds = WindowDataset(cfg.data, split="all", window=2, chunk=2, keys=mconf.observation_keys, image_size=mconf.image_size,
                       instructions="recorded")
    batch = collate([ds[i] for i in (0, 3, 6, 12)])
    text = TextEncoder(load_tokenizer(mconf), mconf, model.latent_query_num)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = batch_loss(model, batch, text, ds.codec)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.9 * losses[0], losses


def test_discrete_action_space_uses_cross_entropy(tmp_path) -> None:
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.agents.kosmos.text import TextEncoder, load_tokenizer

    cfg = _cfg(tmp_path, action_space="discrete", model_overrides={"n_bins": 16})
    mconf = model_config(cfg)
    model = build_model(mconf)
    from vlaeval.agents.codec import ActionCodec

    codec = ActionCodec.symmetric(1.0, n_bins=16)
    ds = WindowDataset(cfg.data, split="all", window=2, chunk=2, image_size=mconf.image_size, codec=codec)
    loss = batch_loss(model, collate([ds[0], ds[5]]), TextEncoder(load_tokenizer(mconf), mconf, model.latent_query_num), codec)
    assert loss.item() > 0.9 * np.log(16)  # untrained: about log(n_bins)


def test_schedule_warms_up_then_decays() -> None:
    f = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] == pytest.approx(0.1, abs=0.01)


def test_checkpoints_load_as_agents_and_config_is_saved(tmp_path) -> None:
    from vlaeval.agents.checkpoint import load_checkpoint
    from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

    cfg = _cfg(tmp_path)
    summary = train_bc(cfg, progress=False, echo=lambda *_: None)
    run = tmp_path / "run"
    assert summary["step"] == 4 and (run / "checkpoints" / "step-000002").is_dir() and (run / "tb").is_dir()
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["trainer"] == "BCConfig" and saved["config"]["steps"] == 4
    model, config, codec = load_checkpoint(run / "last")
    assert json.loads((run / "last" / "config.json").read_text())["metadata"]["step"] == 4
    agent = KosmosLSTMAgent(checkpoint=str(run / "last"), runtime="torch")
    action = agent.act({"rgb_static": np.zeros((200, 200, 3), np.uint8)}, "open the drawer")
    assert action.shape == (7,) and np.isfinite(action).all()
    agent.close()


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, monkeypatch) -> None:
    from safetensors.torch import load_file

    import vlaeval.training.bc as bc

    straight = _cfg(tmp_path / "a")
    train_bc(straight, progress=False, echo=lambda *_: None)

    resumed = dataclasses.replace(straight, out=str(tmp_path / "b" / "run"))
    calls = {"n": 0}
    real = bc.batch_loss

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # third training step: after the step-2 checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bc, "batch_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_bc(resumed, progress=False, echo=lambda *_: None)
    monkeypatch.setattr(bc, "batch_loss", real)
    lines: list[str] = []
    summary = train_bc(resumed, progress=False, echo=lines.append)
    assert "resumed at step 2" in lines and summary["steps_run"] == 2
    a = load_file(str(tmp_path / "a" / "run" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "last" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path) -> None:
    from vlaeval.errors import VlaevalError

    cfg = _cfg(tmp_path, steps=2)
    train_bc(cfg, progress=False, echo=lambda *_: None)
    with pytest.raises(VlaevalError, match="different lr"):
        train_bc(dataclasses.replace(cfg, lr=1.0, steps=3), progress=False, echo=lambda *_: None)


def test_image_projection_gain_makes_the_image_reach_the_action_token() -> None:
    from vlaeval.agents.kosmos.config import get_preset
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.training.bc import scale_image_projection

    config = get_preset("kosmos-lstm-tiny")
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 84, 84, 3), dtype=np.uint8))
    model = build_model(config)
    with torch.no_grad():
        plain = model.backbone.get_image_features(pixel_values=model._pixels(frames)).pooler_output
        scale_image_projection(model, 10.0)
        scaled = model.backbone.get_image_features(pixel_values=model._pixels(frames)).pooler_output
    # three stacked linears: x1000 in magnitude, from ~1% of the word embeddings' scale to about theirs
    assert scaled.abs().mean() > 100 * plain.abs().mean()


@pytest.mark.slow
def test_the_cpu_recipe_learns_from_expert_demos_and_its_checkpoint_evaluates(tmp_path) -> None:
    """The committed recipe end to end, in miniature: balanced expert chains with both cameras,
    kosmos-lstm-cpu trained on them (loss falls), and the checkpoint evaluated as an agent."""
    import vlaeval
    from vlaeval.training.record import RecordConfig, record

    data = tmp_path / "data"
    record(RecordConfig(agent="expert", scenes=("D",), episodes=4, chain_length=2, cameras=("rgb_static", "rgb_gripper"),
                        valid_fraction=0.25), data, progress=False)
    cfg = BCConfig(data=str(data), out=str(tmp_path / "run"), agent="kosmos-lstm-cpu", steps=60, batch_size=8, lr=1e-3,
                   warmup_steps=5, save_every=30, log_every=10, threads=1)
    losses = []
    summary = train_bc(cfg, progress=False, echo=lambda msg: losses.append(msg))
    train_losses = [float(m.split("train loss ")[1].split(",")[0]) for m in losses if "train loss" in m]
    assert len(train_losses) == 2 and train_losses[1] < train_losses[0]
    result = vlaeval.evaluate("kosmos-lstm-cpu", "calvin", setting="D->D", episodes=1, progress=False, out=tmp_path / "eval",
                              agent_options={"checkpoint": summary["checkpoint"], "runtime": "torch"})
    assert len(result.results) >= 1 and result.results["error"].isna().all()
