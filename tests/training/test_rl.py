"""GRPO fine-tuning: group-relative advantages, and updates that raise a toy task's success."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from vlaeval.envs.suite import EpisodeSpec
from vlaeval.training.rl import evaluate_task, group_advantages, grpo_loss, play

torch.set_num_threads(1)


class ToyEnv:
    """One-step task: success iff the x action is positive (CALVIN-shaped obs and actions)."""

    action_space = spaces.Box(-1.0, 1.0, (7,), dtype=np.float32)
    observation_space = spaces.Dict({"rgb_static": spaces.Box(0, 255, (16, 16, 3), dtype=np.uint8)})

    def reset(self, *, seed=None, options=None):
        return {"rgb_static": np.full((16, 16, 3), 100, np.uint8)}, {}

    def step(self, action):
        success = bool(action[0] > 0.0)
        return {"rgb_static": np.full((16, 16, 3), 100, np.uint8)}, float(success), success, False, {"is_success": success}

    def close(self):
        pass


@pytest.fixture
def policy():
    from vlaeval.agents.codec import ActionCodec
    from vlaeval.agents.kosmos.config import get_preset
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.training.common import BatchedPolicy

    config = get_preset("kosmos-lstm-tiny", window_size=1, chunk_size=1)
    model = build_model(config, seed=3)
    with torch.no_grad():  # start clearly below the threshold: the deterministic policy fails
        model.arm_out.bias[0] = -0.4
    return BatchedPolicy(model.eval(), config, ActionCodec.symmetric(1.0))


def test_group_advantages_are_relative_and_vanish_for_uniform_groups() -> None:
    adv = group_advantages([1, 0, 0, 1])
    assert adv[0] > 0 > adv[1] and sum(adv) == pytest.approx(0)
    assert group_advantages([1, 1, 1]) == [0.0, 0.0, 0.0] and group_advantages([0, 0]) == [0.0, 0.0]


def test_grpo_updates_raise_success_on_a_toy_env(policy) -> None:
    envs = [ToyEnv() for _ in range(8)]
    episode = EpisodeSpec(index=0, tasks=("open_drawer",), instructions=("open the drawer",), seed=0)
    before = evaluate_task(policy, envs, [episode] * 8, max_steps=1)
    assert before["success_rate"] == 0.0
    mean_before = policy.step([envs[0].reset()[0]], ["open the drawer"])[0][0, 0]
    model = policy.model
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    updates = 0
    for _ in range(12):
        group = play(policy, envs, [episode] * 8, max_steps=1, std=0.5, rng=rng)
        adv = group_advantages([float(r.success) for r in group])
        if not any(adv):
            continue
        model.train()
        for _ in range(2):
            loss = grpo_loss(model, policy.text, group, adv, "open the drawer", std=0.5, clip=0.2)
            optim.zero_grad()
            loss.backward()
            optim.step()
        model.eval()
        updates += 1
    mean_after = policy.step([envs[0].reset()[0]], ["open the drawer"])[0][0, 0]
    after = evaluate_task(policy, envs, [episode] * 8, max_steps=1)
    assert updates > 0 and mean_after > mean_before + 0.2
    assert after["success_rate"] == 1.0 and after["ci95"][0] > before["ci95"][1]


def test_rollouts_record_what_the_update_needs(policy) -> None:
    envs = [ToyEnv() for _ in range(3)]
    episode = EpisodeSpec(index=0, tasks=("open_drawer",), instructions=("open the drawer",), seed=0)
    group = play(policy, envs, [episode] * 3, max_steps=1, std=0.3, rng=np.random.default_rng(1))
    for r in group:
        assert len(r) == 1 and r.observations["rgb_static"][0].shape == (16, 16, 3) and np.isfinite(r.logp).all()
    # at the behaviour policy the PPO ratio is 1, so the loss is minus the mean advantage
    adv = [1.0, -0.5, 0.25]
    loss = grpo_loss(policy.model, policy.text, group, adv, "open the drawer", std=0.3, clip=0.2)
    assert loss.item() == pytest.approx(-np.mean(adv), abs=1e-4)
