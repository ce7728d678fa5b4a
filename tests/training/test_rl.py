"""GRPO fine-tuning: group-relative advantages, updates that raise a toy task's success, and chains
recomputed in the update exactly as they were played."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from vlaeval.envs.suite import EpisodeSpec
from vlaeval.training.rl import RLConfig, advantages, carries_signal, evaluate, grpo_backward, paired_test, play, training_episodes

torch.set_num_threads(1)


class ToyEnv:
    """Each subtask is solved iff the x action is positive (CALVIN-shaped obs and actions); the
    image changes every step so that recomputed windows differ from step to step."""

    action_space = spaces.Box(-1.0, 1.0, (7,), dtype=np.float32)
    observation_space = spaces.Dict({"rgb_static": spaces.Box(0, 255, (16, 16, 3), dtype=np.uint8)})

    def __init__(self, chain: int = 1) -> None:
        self.chain, self.t = chain, 0

    def obs(self):
        return {"rgb_static": np.full((16, 16, 3), (37 * self.t) % 256, np.uint8)}

    def reset(self, *, seed=None, options=None):
        self.t, self.solved = 0, 0
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        success = bool(action[0] > 0.0)
        self.solved += success
        return self.obs(), float(success), self.solved == self.chain, False, {"is_success": success}

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


def _first(adv):
    return [float(a[0]) for a in adv]


def test_group_advantages_are_relative_and_vanish_for_uniform_groups() -> None:
    adv = _first(advantages("group", [1, 0, 0, 1], None, [1] * 4))
    assert adv[0] > 0 > adv[1] and sum(adv) == pytest.approx(0) and adv[0] == pytest.approx(1.0, abs=1e-5)  # over the std
    assert _first(advantages("group", [1, 1, 1], None, [1] * 3)) == [0.0] * 3 and _first(advantages("group", [0, 0], None, [1, 1])) == [0.0] * 2


def test_subtask_credit_gives_each_subtask_what_was_solved_from_it_on() -> None:
    # chains of 3: solved 2 (played 3), 1 (played 2), 0 (played 1); the greedy rollout solved 1
    rewards, played = [2.0, 1.0, 0.0], [3, 2, 1]
    assert [a.tolist() for a in advantages("greedy", rewards, 1.0, played)] == [[1.0, 1.0, 0.0], [0.0, 0.0], [-1.0]]
    # one advantage per rollout gives the failed last subtask the credit of the solved ones
    assert [a.tolist() for a in advantages("greedy", rewards, 1.0, played, "rollout")] == [[1.0] * 3, [0.0] * 2, [-1.0]]
    # the group's baseline from subtask k on is its mean of what was solved from k on: 1, 1/3, 0
    sd = np.std(rewards) + 1e-6
    got = advantages("group", rewards, None, played)
    assert np.allclose(got[0], [1 / sd, (1 - 1 / 3) / sd, 0.0]) and np.allclose(got[1], [0.0, -1 / 3 / sd]) and np.allclose(got[2], [-1 / sd])


def test_grpo_updates_raise_success_on_a_toy_env(policy) -> None:
    envs = [ToyEnv() for _ in range(8)]
    episode = EpisodeSpec(index=0, tasks=("open_drawer",), instructions=("open the drawer",), seed=0)
    before = evaluate(policy, envs, [episode] * 8, max_steps=1)
    assert before["success_rate"] == 0.0
    mean_before = policy.step([envs[0].reset()[0]], ["open the drawer"])[0][0, 0]
    model = policy.model
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    updates = 0
    for _ in range(12):
        group = play(policy, envs, [episode] * 8, max_steps=1, std=0.5, rng=rng)
        adv = advantages("group", [float(r.solved) for r in group], None, [len(r.starts) for r in group])
        if not any(np.any(a) for a in adv):
            continue
        model.train()
        for _ in range(2):
            optim.zero_grad()
            grpo_backward(model, policy.text, group, adv, std=0.5, clip=0.2)
            optim.step()
        model.eval()
        updates += 1
    mean_after = policy.step([envs[0].reset()[0]], ["open the drawer"])[0][0, 0]
    after = evaluate(policy, envs, [episode] * 8, max_steps=1)
    assert updates > 0 and mean_after > mean_before + 0.2
    assert after["success_rate"] == 1.0 and after["ci95"][0] > before["ci95"][1]
    assert paired_test(before, after) == {"improved": 8, "worsened": 0, "mean_change": 1.0, "p_value": pytest.approx(2 / 2**8)}


def test_rollouts_record_what_the_update_needs(policy) -> None:
    envs = [ToyEnv() for _ in range(3)]
    episode = EpisodeSpec(index=0, tasks=("open_drawer",), instructions=("open the drawer",), seed=0)
    group = play(policy, envs, [episode] * 3, max_steps=1, std=0.3, rng=np.random.default_rng(1))
    for r in group:
        assert len(r) == 1 and r.observations["rgb_static"][0].shape == (16, 16, 3) and np.isfinite(r.logp).all()
    # at the behaviour policy the PPO ratio is 1, so the loss is minus the mean advantage
    adv = [1.0, -0.5, 0.25]
    loss = grpo_backward(policy.model, policy.text, group, adv, std=0.3, clip=0.2)
    assert loss.loss == pytest.approx(-np.mean(adv), abs=1e-4) and loss.kl == 0.0
    assert grpo_backward(policy.model, policy.text, group, [0.0] * 3, std=0.3, clip=0.2) is None


def test_the_greedy_baseline_is_the_deterministic_policy_from_the_same_state(policy) -> None:
    from vlaeval.training.rl import advantages

    envs = [ToyEnv() for _ in range(4)]
    episode = EpisodeSpec(index=0, tasks=("open_drawer",), instructions=("open the drawer",), seed=0)
    group = play(policy, envs, [episode] * 4, max_steps=3, std=0.5, rng=np.random.default_rng(3), greedy=1)
    alone = play(policy, envs[:1], [episode], max_steps=3, std=None, rng=np.random.default_rng(4))[0]
    # the last slot acted as the deterministic policy does on its own; the others explored
    assert np.allclose(np.stack(group[-1].arm), np.stack(alone.arm)) and group[-1].grip == alone.grip
    assert all(not np.allclose(r.arm[0], alone.arm[0]) for r in group[:-1])
    # ReMax's advantage: what a rollout solved beyond the deterministic policy (GRPO's normalises in the group)
    assert _first(advantages("greedy", [2.0, 1.0, 0.0], 1.0, [1] * 3)) == [1.0, 0.0, -1.0]
    # gated: GRPO's advantages (they sum to zero), and only groups in which a rollout beat the greedy one update
    assert advantages("gated", [2.0, 1.0, 0.0], 1.0, [1] * 3)[0] == advantages("group", [2.0, 1.0, 0.0], None, [1] * 3)[0]
    assert carries_signal("gated", [1.0, 0.0, 0.0], 0.0, advantages("gated", [1.0, 0.0, 0.0], 0.0, [1] * 3))
    assert not carries_signal("gated", [1.0, 0.0, 0.0], 1.0, advantages("gated", [1.0, 0.0, 0.0], 1.0, [1] * 3))
    # every rollout beat the greedy one alike: ReMax updates on all-positive advantages, gated does not update
    assert carries_signal("greedy", [1.0, 1.0], 0.0, advantages("greedy", [1.0, 1.0], 0.0, [1, 1]))
    assert not carries_signal("gated", [1.0, 1.0], 0.0, advantages("gated", [1.0, 1.0], 0.0, [1, 1]))
    assert carries_signal("group", [1.0, 0.0], None, advantages("group", [1.0, 0.0], None, [1, 1]))


def test_the_kl_term_anchors_the_policy_to_its_reference(policy) -> None:
    import copy

    envs = [ToyEnv() for _ in range(3)]
    episode = EpisodeSpec(index=0, tasks=("open_drawer",), instructions=("open the drawer",), seed=0)
    group = play(policy, envs, [episode] * 3, max_steps=1, std=0.3, rng=np.random.default_rng(1))
    adv = [1.0, -0.5, 0.25]
    params = [p for p in policy.model.parameters() if p.requires_grad]

    def grads(reference, kl_coef):
        policy.model.zero_grad()
        loss = grpo_backward(policy.model, policy.text, group, adv, std=0.3, clip=0.2, reference=reference, kl_coef=kl_coef)
        return loss, torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])

    plain_loss, plain = grads(None, 0.0)
    # at the reference itself the KL and its gradient vanish: the update is the plain surrogate's
    same_loss, same = grads(copy.deepcopy(policy.model), 1.0)
    assert same_loss.kl == pytest.approx(0.0, abs=1e-9) and torch.allclose(same, plain, atol=1e-7)
    # away from it the KL is positive and adds kl_coef times itself to the loss
    moved = copy.deepcopy(policy.model)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn_like(p))
    away_loss, away = grads(moved, 0.5)
    assert away_loss.kl > 0 and away_loss.loss == pytest.approx(plain_loss.loss + 0.5 * away_loss.kl, rel=1e-4)
    assert not torch.allclose(away, plain)


def test_the_curriculum_replays_first_tasks_whose_groups_carry_signal() -> None:
    from vlaeval.training.rl import ChainCurriculum

    pool = [EpisodeSpec(index=i, tasks=(task,), instructions=("x",), seed=i) for i, task in enumerate(["open_drawer", "push_into_drawer"] * 50)]
    uniform = ChainCurriculum(prioritize=False, counts={}, used=[])
    for _ in range(3):
        index = uniform.pick(pool, np.random.default_rng(0))
        uniform.played(index, pool[index].tasks[0], True)
    assert uniform.used == [0, 1, 2]  # the pool in order
    # every push_into_drawer group failed alike, every open_drawer group carried signal: a score of
    # 1/12 against 11/12, so the next 40 chains are mostly open_drawer's, and none is played twice
    curriculum = ChainCurriculum(prioritize=True, counts={"open_drawer": [10, 10], "push_into_drawer": [10, 0]}, used=[])
    rng = np.random.default_rng(0)
    for _ in range(40):
        index = curriculum.pick(pool, rng)
        curriculum.played(index, pool[index].tasks[0], pool[index].tasks[0] == "open_drawer")
    assert len(set(curriculum.used)) == 40
    assert sum(pool[i].tasks[0] == "open_drawer" for i in curriculum.used) >= 30


def test_chains_are_recomputed_as_played_per_instruction_and_subtask() -> None:
    from vlaeval.agents.codec import ActionCodec
    from vlaeval.agents.kosmos.config import get_preset
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.training.common import BatchedPolicy

    config = get_preset("kosmos-lstm-tiny", window_size=3, chunk_size=1)
    policy = BatchedPolicy(build_model(config, seed=5).eval(), config, ActionCodec.symmetric(1.0))
    tasks, instructions = ("open_drawer", "turn_on_led", "close_drawer"), ("open the drawer", "press the button", "close it")
    episode = EpisodeSpec(index=0, tasks=tasks, instructions=instructions, seed=0)
    envs = [ToyEnv(chain=3) for _ in range(8)]
    group = play(policy, envs, [episode] * 8, max_steps=2, std=1.0, rng=np.random.default_rng(2))
    for r in group:
        # the chain stops at the first failed subtask: every subtask but the last reached was solved
        assert 1 <= len(r.starts) <= 3 and r.starts[0] == 0 and r.solved in (len(r.starts) - 1, len(r.starts))
        assert len(r.instructions) == len(r) and all(r.instructions[s] == instructions[i] for i, s in enumerate(r.starts))
        assert r.segment_starts().tolist() == [max(s for s in r.starts if s <= t) for t in range(len(r))]
    assert max(len(r.starts) for r in group) > 1
    # the recomputation scores the rollouts with the policy that played them: ratio 1, so the loss
    # is minus the mean advantage; chunked (each step recomputed with its window as context) it
    # gives the unchunked loss and gradient
    adv = advantages("group", [float(r.solved) for r in group], None, [len(r.starts) for r in group])
    steps = [r.per_step(a) for r, a in zip(group, adv) if np.any(a)]
    assert steps and any(len(set(s.tolist())) > 1 for s in steps)  # some rollout's subtasks got different credit
    grads = []
    for chunk in (256, 2):
        policy.model.zero_grad()
        loss = grpo_backward(policy.model, policy.text, group, adv, std=1.0, clip=0.2, chunk=chunk)
        assert loss.loss == pytest.approx(-np.mean([s.mean() for s in steps]), abs=1e-4)
        grads.append(torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_chain_training_episodes_are_drawn_like_the_protocol_in_the_evaluation_scene() -> None:
    from vlaeval.envs.calvin.tasks import is_valid_chain
    from vlaeval.training.record import calvin_symbolic_state

    cfg = RLConfig(checkpoint="unused", out="unused", setting="ABC->D")
    train, held_out = training_episodes(cfg, 8, seed=0), training_episodes(cfg, 8, seed=1000)
    assert training_episodes(cfg, 8, seed=0) == train and not {e.seed for e in train} & {e.seed for e in held_out}
    assert max(len(e.tasks) for e in train) == 5  # a chain may end early where no further task applies
    for e in train:
        assert is_valid_chain(calvin_symbolic_state(np.asarray(e.options["scene_obs"]), "D"), e.tasks)
    single = training_episodes(RLConfig(checkpoint="unused", out="unused", task="open_drawer"), 4, seed=0)
    assert {e.tasks for e in single} == {("open_drawer",)}


def test_chain_rl_on_calvin_resumes_where_it_stopped_and_evaluates_before_and_after(tmp_path) -> None:
    import dataclasses

    from vlaeval.agents.checkpoint import load_checkpoint, save_checkpoint
    from vlaeval.agents.codec import ActionCodec
    from vlaeval.agents.kosmos.config import get_preset
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.training.rl import train_rl
    from vlaeval.training.state import STATE_FILE, load_state

    config = get_preset("kosmos-lstm-tiny")
    save_checkpoint(tmp_path / "bc", build_model(config, seed=0), config, ActionCodec.symmetric(1.0))
    cfg = RLConfig(checkpoint=str(tmp_path / "bc"), out=str(tmp_path / "rl"), setting="D->D", iterations=2, group_size=2,
                   max_steps=3, eval_episodes=2, eval_batch=2, save_every=1, threads=1)
    train_rl(cfg, progress=False, echo=lambda *_: None)
    log = tmp_path / "rl" / "iterations.csv"
    with open(log, "a") as f:  # killed after playing iteration 3, before its checkpoint, mid-row of iteration 4
        f.write(log.read_text().splitlines()[-1].replace("2,", "3,", 1) + "\n4,12")
    said: list[str] = []
    summary = train_rl(dataclasses.replace(cfg, iterations=3, lr=5e-5), progress=False, echo=said.append)
    assert "resumed at iteration 2" in said
    saved = load_state(tmp_path / "rl" / STATE_FILE, restart_hint="")
    assert saved["iteration"] == 3 and saved["optimizer"]["param_groups"][0]["lr"] == 5e-5  # the resumed run's --lr
    rows = log.read_text().splitlines()
    assert rows[0].startswith("iteration,seed,first_task,mean_solved") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    # the resumed run drew the chains the uninterrupted one draws (the curriculum's state was saved)
    train_rl(dataclasses.replace(cfg, out=str(tmp_path / "straight"), iterations=3, eval_episodes=0), progress=False, echo=lambda *_: None)
    straight = (tmp_path / "straight" / "iterations.csv").read_text().splitlines()
    assert [r.split(",")[1:3] for r in rows[1:]] == [r.split(",")[1:3] for r in straight[1:]]
    assert saved["curriculum"]["used"] == load_state(tmp_path / "straight" / STATE_FILE, restart_hint="")["curriculum"]["used"]
    assert summary["iterations"] == 3 and summary["after"]["paired"]["p_value"] == 1.0  # 3 steps per subtask solve nothing
    assert summary["before"]["episodes"] == summary["after"]["episodes"] == 2
    load_checkpoint(summary["checkpoint"])  # a plain agent checkpoint
