"""RL fine-tuning of a BC checkpoint on a suite's success signal (``vlaeval train rl``).

GRPO-style: each iteration plays a *group* of G rollouts from the same initial state (same
seed, reset options and instructions), the reward of a rollout is the number of subtasks it
solved (the chain length the protocol scores; 1 or 0 for a single task), and each rollout's
advantage is its reward minus the group mean, over the group's standard deviation.
The policy is updated with PPO's clipped surrogate on those advantages, minus GRPO's KL
penalty towards the starting checkpoint's policy (``kl_coef``).  Why GRPO and not PPO
with a value head: the reward is one sparse count per rollout, so a learned value function has
almost nothing to fit early on, while the group baseline is exact for the one thing that
varies (the policy's own randomness from a fixed state); it also needs no new network parts, so
the fine-tuned weights are a plain agent checkpoint in the same format as BC's.  A group whose
rollouts all solve the same number carries no signal and is skipped; by default (``baseline``
``gated``) so is a group in which no exploring rollout solved more than the deterministic policy
did from the same state (one more rollout), since the evaluation plays that policy.

Exploration: the deterministic BC policy becomes stochastic with a Gaussian of fixed standard
deviation ``action_std`` around the normalised arm action and a Bernoulli gripper from its
logit; evaluation (before and after) uses the deterministic policy, on the same episodes.

Environments come from the suite's own factory (:meth:`Suite.make_env`, the same kwargs, scene
and cameras as ``vlaeval run``); the G environments of a group step in lock-step with one
batched forward pass of the policy, played by the runner's rollout core
(:mod:`vlaeval.evaluators.rollout`) with the policy as a batched agent that also observes the
steps it took.  For ``calvin``, initial states are random states of the setting's evaluation
scene (D) in which the task applies (as ``vlaeval record`` samples them); training and
evaluation use disjoint seeds.

Without a task the run trains on the full chained protocol: each group plays one chain of the
suite's length from a random state, drawn close to the protocol's chains (uniformly among the
tasks that apply at each step, not balanced: the protocol draws uniformly among whole valid
chains), and the rollout core plays it as it plays an evaluation (the agent's
history is cleared at every subtask start, the chain stops at the first failure), so the
update recomputes each step with that step's instruction and that subtask's history; each
subtask's steps get the advantage of what was solved from it on (see :func:`advantages`).  Which
chain a group plays is chosen by :class:`ChainCurriculum` from a fixed pool.  The official
chains stay held out: ``vlaeval run`` on them before and after, then ``vlaeval
compare``, gives the paired test of chain lengths.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import click
import numpy as np

from vlaeval.durable import write_text
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.rollout import Observer, Played


@dataclass(frozen=True)
class RLConfig:
    """Everything an RL fine-tuning run depends on (saved as ``RUN/train_config.json``)."""

    checkpoint: str
    out: str
    task: str | None = None  # None: whole chains of the protocol
    agent: str = "kosmos-lstm-tiny"
    suite: str = "calvin"
    setting: str = "ABC->D"
    iterations: int = 20
    group_size: int = 8
    max_steps: int = 120
    lr: float = 1e-4
    weight_decay: float = 0.0
    clip: float = 0.2
    epochs: int = 2
    action_std: float = 0.3
    baseline: str = "gated"  # "group": GRPO's; "greedy": the deterministic rollout's (ReMax); "gated": GRPO's where a rollout beat greedy
    credit: str = "subtask"  # "subtask": each subtask's reward-to-go; "rollout": one advantage per rollout (see advantages)
    kl_coef: float = 0.3  # weight of the KL divergence from the initial checkpoint's policy (0: none)
    prioritize: bool = True  # chains: replay first tasks whose groups carry signal more often (see ChainCurriculum)
    grad_clip: float = 1.0
    eval_episodes: int = 50
    eval_batch: int = 10
    seed: int = 0
    eval_seed: int = 1000
    threads: int | None = None
    save_every: int = 5


def training_episodes(cfg: RLConfig, n: int, seed: int) -> list[Any]:
    """``n`` episodes in the setting's evaluation scene: random states where ``cfg.task`` applies,
    or (no task) chains of the suite's length drawn close to the protocol's (see the module docstring)."""
    from vlaeval.plugins.manager import registries

    spec = registries().suite.get(cfg.suite).spec
    if cfg.suite != "calvin":
        raise VlaevalError("train rl samples initial states for the calvin suite only")
    setting = spec.setting(cfg.setting)
    if cfg.task is not None and cfg.task not in spec.tasks:
        from vlaeval.plugins.registry import unknown_name_error

        raise unknown_name_error("task", cfg.task, list(spec.tasks), f"suite {cfg.suite!r}")
    from vlaeval.training.record import calvin_training_episodes

    scene = setting.env_kwargs.get("scene", "D")
    instructions = setting.options.get("instructions", "train")
    if cfg.task is None:
        return calvin_training_episodes(scene, n, seed, (), spec.protocol.chain_length, instructions, balance=False)
    return calvin_training_episodes(scene, n, seed, (cfg.task,), 1, instructions)


POOL_SIZE = 4096  # training episodes the curriculum picks from: fixed, so a run resumed with more iterations draws the same


@dataclass
class ChainCurriculum:
    """Which of the pool's training chains the next group plays.

    Prioritised level replay (Jiang et al., 2021) with a chain's first task as its level and,
    as the level's score, the Laplace estimate of the probability that a group starting with it
    carries signal (a rollout solves more subtasks than the baseline: the group's mean, or the
    greedy rollout's, see :func:`carries_signal`).  Why: with uniform chains two groups in
    three start with a block task the BC policy almost never solves, every rollout fails at the
    first subtask, and the group costs the most simulation (every rollout runs to the step
    limit) to teach nothing.  A chain is drawn with probability proportional to its
    first task's score, so levels are still played in proportion to how often they occur when
    their scores are equal, and a task whose groups start carrying signal is replayed more.
    ``prioritize=False`` plays the pool in order.  Its state (counts and chains used) is saved with
    the optimizer's, so a resumed run draws what the uninterrupted one would have.
    """

    prioritize: bool
    counts: dict[str, list[int]]  # first task -> [groups played, groups that carried signal]
    used: list[int]  # pool indices already played, in order

    def score(self, task: str) -> float:
        played, signal = self.counts.get(task, (0, 0))
        return (signal + 1) / (played + 2)

    def pick(self, pool: Sequence[Any], rng: np.random.Generator) -> int:
        taken = set(self.used)
        free = [i for i in range(len(pool)) if i not in taken]
        if not self.prioritize:
            return free[0]
        weights = np.array([self.score(pool[i].tasks[0]) for i in free])
        return free[int(rng.choice(len(free), p=weights / weights.sum()))]

    def played(self, index: int, task: str, signal: bool) -> None:
        self.used.append(index)
        counts = self.counts.setdefault(task, [0, 0])
        counts[0] += 1
        counts[1] += int(signal)


def make_envs(cfg: RLConfig, agent_spec: Any, n: int) -> list[Any]:
    """``n`` environments from the suite's own factory."""
    from vlaeval.evaluators.executors import Pairing
    from vlaeval.plugins.manager import suite_spec

    spec = suite_spec(cfg.suite)
    pairing = Pairing.negotiate(spec, spec.setting(cfg.setting).name, cfg.agent, {}, agent_spec)
    return [pairing.make_env() for _ in range(n)]


@dataclass
class Rollout:
    observations: dict[str, list[np.ndarray]]  # what the network read, by observation key
    instructions: list[str]  # what it was told, per step
    arm: list[np.ndarray]  # sampled normalised arm actions
    grip: list[float]  # sampled gripper decisions, 1 open / 0 close
    logp: list[float]
    starts: list[int]  # the step at which each subtask began (the agent's history was cleared)
    solved: int = 0  # subtasks solved: the reward

    def __len__(self) -> int:
        return len(self.arm)

    def per_step(self, values: Any) -> np.ndarray:
        """(T,) float32: one value for every step, or one per subtask spread over its steps."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 0:
            return np.full(len(self), values)
        return np.repeat(values, np.diff([*self.starts, len(self)]))

    def segment_starts(self) -> np.ndarray:
        """(T,) the first step of the subtask each step belongs to (:func:`unfold_windows`' ``starts``)."""
        first = np.zeros(len(self), dtype=np.int64)
        for start in self.starts:
            first[start:] = start
        return first


def _logp(mean: Any, logit: Any, arm: Any, grip: Any, std: float) -> Any:
    import torch

    dist = torch.distributions.Normal(mean, std)
    return dist.log_prob(arm).sum(-1) - torch.nn.functional.binary_cross_entropy_with_logits(logit, grip, reduction="none")


def _kl(mean: Any, logit: Any, ref_mean: Any, ref_logit: Any, std: float) -> Any:
    """Per-step KL(policy || reference) of the exploration distributions: the Gaussians share
    ``std``, so theirs is the scaled squared distance of the means; plus the gripper Bernoullis'."""
    import torch.nn.functional as F

    gauss = ((mean - ref_mean) ** 2).sum(-1) / (2 * std**2)
    p = logit.sigmoid()
    bern = p * (F.logsigmoid(logit) - F.logsigmoid(ref_logit)) + (1 - p) * (F.logsigmoid(-logit) - F.logsigmoid(-ref_logit))
    return gauss + bern


def play(policy: Any, envs: Sequence[Any], episodes: Sequence[Any], max_steps: int, *, std: float | None,
         rng: np.random.Generator, greedy: int = 0) -> list[Rollout]:
    """Lock-step rollouts, one per env (``episodes[i]`` in ``envs[i]``); ``std=None`` = deterministic,
    and so are the last ``greedy`` slots (the greedy baseline's rollout).

    No step timeout: the policy is the trainer's own network, in this process.
    """
    from vlaeval.envs.pool import SyncEnvPool
    from vlaeval.evaluators.rollout import play as rollouts

    explorer = _Explorer(policy, len(episodes), std, rng, greedy)
    pool = SyncEnvPool(iter(envs).__next__, len(episodes))  # a view of envs that outlive it: never closed here
    for _ in rollouts(pool, [explorer], episodes, max_steps=max_steps, step_timeout=0, batched=True, observers=[explorer]):
        pass  # the explorer keeps what the update needs
    return explorer.rollouts


class _Explorer(Observer):
    """The policy as a batched agent for the rollout core, exploring around its deterministic
    action, and the observer that keeps each slot's :class:`Rollout`: what the network read, the
    sampled action and its log-probability at every step the env took."""

    def __init__(self, policy: Any, n: int, std: float | None, rng: np.random.Generator, greedy: int = 0) -> None:
        self.policy, self.n, self.std, self.rng = policy, n, std, rng
        self.explores = np.arange(n) < n - greedy
        self.keys = policy.config.observation_keys
        self.rollouts: list[Rollout] = [Rollout({k: [] for k in self.keys}, [], [], [], [], []) for _ in range(n)]
        self.sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the last act_batch's (arm, grip, logp)
        self.instructions: Sequence[str] = ()  # the last act_batch's

    def reset(self) -> None:
        self.policy.reset(self.n)

    def reset_slot(self, slot: int) -> None:
        self.policy.reset_slot(slot)

    def act_batch(self, observations: Sequence[Any], instructions: Sequence[str]) -> np.ndarray:
        import torch

        mean, logit = self.policy.step(observations, instructions)
        if self.std is None:
            arm, grip = mean, (logit >= 0).astype(np.float32)
            logp = np.zeros(self.n)
        else:
            noise = self.std * self.rng.standard_normal(mean.shape) * self.explores[:, None]
            arm = (mean + noise).astype(np.float32)
            sampled = self.rng.random(self.n) < 0.5 * (1 + np.tanh(logit / 2))  # sigmoid without exp overflow
            grip = np.where(self.explores, sampled, logit >= 0).astype(np.float32)
            logp = _logp(torch.from_numpy(mean), torch.from_numpy(logit), torch.from_numpy(arm), torch.from_numpy(grip), self.std).numpy()
        self.sample, self.instructions = (arm, grip, logp), instructions
        return self.policy.to_env(arm, grip * 2 - 1)

    def subtask_started(self, slot: int, position: int) -> None:
        self.rollouts[slot].starts.append(len(self.rollouts[slot]))

    def step(self, slot: int, observation: Any, action: np.ndarray, success: bool) -> None:
        rollout = self.rollouts[slot]
        arm, grip, logp = self.sample
        for k in self.keys:
            rollout.observations[k].append(np.asarray(observation[k]))
        rollout.instructions.append(self.instructions[slot])
        rollout.arm.append(arm[slot])
        rollout.grip.append(float(grip[slot]))
        rollout.logp.append(float(logp[slot]))

    def episode_ended(self, played: Played) -> None:
        self.rollouts[played.slot].solved = sum(1 for r in played.subtasks if r.success)


def evaluate(policy: Any, envs: Sequence[Any], episodes: Sequence[Any], max_steps: int) -> dict[str, Any]:
    """The deterministic policy on ``episodes``: subtasks solved per episode, their mean (the
    average chain length; the success rate for single tasks) and the rate of fully solved episodes
    with its Wilson 95% interval."""
    from vlaeval.results.stats import wilson_interval

    solved: list[int] = []
    rng = np.random.default_rng(0)
    for s in range(0, len(episodes), len(envs)):
        batch = episodes[s : s + len(envs)]
        solved += [r.solved for r in play(policy, envs[: len(batch)], batch, max_steps, std=None, rng=rng)]
    k = sum(1 for x, e in zip(solved, episodes) if x == len(e.tasks))
    n = len(solved)
    low, high = wilson_interval(k, n)
    return {"successes": k, "episodes": n, "success_rate": k / n, "ci95": [low, high], "avg_len": float(np.mean(solved)),
            "seeds": [int(e.seed) for e in episodes], "solved": solved}


def paired_test(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Episodes improved and worsened between two :func:`evaluate` results on the same episodes,
    and the exact two-sided sign-flip p-value of the change in subtasks solved (McNemar's test
    for single tasks)."""
    from vlaeval.results.compare import sign_flip_p_value

    d = np.asarray(after["solved"]) - np.asarray(before["solved"])
    return {"improved": int((d > 0).sum()), "worsened": int((d < 0).sum()), "mean_change": float(d.mean()),
            "p_value": sign_flip_p_value(d.tolist())}


@dataclass(frozen=True)
class GrpoLoss:
    loss: float  # what was minimised: minus the clipped surrogate, plus kl_coef times the KL
    kl: float  # mean per-step KL from the reference policy (0 without one)


def grpo_backward(model: Any, text: Any, rollouts: Sequence[Rollout], advantages: Sequence[Any], std: float, clip: float,
                  chunk: int = 256, reference: Any = None, kl_coef: float = 0.0) -> GrpoLoss | None:
    """Accumulate the gradient of PPO's clipped surrogate with each rollout's advantage (one for
    all its steps, or one per subtask it played; mean over each rollout's steps, then over
    rollouts; rollouts whose advantages are all zero skipped) minus ``kl_coef``
    times the KL divergence from ``reference`` on the same steps, and return the loss, or None
    when no rollout carries signal.

    The KL term is GRPO's: it keeps the policy near the BC checkpoint on the states it visits,
    because the surrogate only sees the few groups that carry signal and, unanchored, a learning
    rate that moves the policy at all also unlearns tasks it solved (measured in the README).

    Each step is recomputed as it was played: its own instruction, its window over the steps
    of its subtask only.  A rollout is recomputed ``chunk`` steps at a time (with the window's
    earlier steps as context) and backpropagated chunk by chunk, so memory is bounded by the
    chunk, not by a chain of several hundred steps; the sum of the chunks' gradients is the
    rollout's.  The feature normalisation keeps its running statistics (eval mode) even when
    the model trains: the rollouts were played with them, and the PPO ratio must score the same
    function.
    """
    import torch

    from vlaeval.training.common import unfold_windows

    config = model.config
    model.freeze_normalisation()
    used = [(r, r.per_step(adv)) for r, adv in zip(rollouts, advantages) if np.any(np.asarray(adv) != 0) and len(r)]
    if not used:
        return None
    window, total, kl_total, steps = config.effective_window, 0.0, 0.0, 0

    def heads(net: Any, obs: dict[str, Any], ids: Any, attn: Any, starts: Any, skip: int) -> tuple[Any, Any]:
        """The first chunk action's arm mean and gripper logit at every step after the first ``skip``."""
        windows, mask = unfold_windows(net.encode(obs, ids, attn), starts, window)
        arm, grip = net.predict(windows[skip:], mask[skip:])
        return arm[:, -1, 0], grip[:, -1, 0]

    for r, adv in used:
        t = len(r)
        starts = torch.from_numpy(r.segment_starts())
        arm_taken, grip_taken = torch.from_numpy(np.stack(r.arm)), torch.tensor(r.grip)
        old = torch.tensor(r.logp)
        for lo in range(0, t, chunk):
            hi, ctx = min(t, lo + chunk), max(0, lo - (window - 1))
            ids, attn = (torch.from_numpy(a) for a in text(r.instructions[ctx:hi]))
            obs = {k: torch.from_numpy(np.stack(r.observations[k][ctx:hi])) for k in config.observation_keys}
            chunk_starts = (starts[ctx:hi] - ctx).clamp_min(0)
            arm, grip = heads(model, obs, ids, attn, chunk_starts, lo - ctx)
            new = _logp(arm, grip, arm_taken[lo:hi], grip_taken[lo:hi], std)
            ratio = torch.exp(new - old[lo:hi].to(new.dtype))
            a = torch.from_numpy(adv[lo:hi]).to(ratio.dtype)
            surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
            objective = surrogate.sum()
            if reference is not None:
                with torch.no_grad():
                    ref_arm, ref_grip = heads(reference, obs, ids, attn, chunk_starts, lo - ctx)
                kl = _kl(arm, grip, ref_arm, ref_grip, std)
                objective = objective - kl_coef * kl.sum()
                kl_total += float(kl.detach().sum())
            loss = -objective / (t * len(used))
            loss.backward()
            total += float(loss.detach())
        steps += t
    return GrpoLoss(total, kl_total / steps)


BASELINES = ("group", "greedy", "gated")
CREDITS = ("subtask", "rollout")


def advantages(baseline: str, rewards: Sequence[float], greedy: float | None, played: Sequence[int],
               credit: str = "subtask") -> list[np.ndarray]:
    """Each exploring rollout's advantage for each subtask it played (``played[i]`` of them: a
    chain stops at its first failure).

    ``baseline``: GRPO's, the reward against the group's mean over the group's standard deviation
    (all zeros when every reward is equal), or ReMax's (Li et al., 2023, ``greedy``), the reward
    minus that of the deterministic policy from the same state.  Why the greedy baseline: the
    evaluation plays the deterministic policy, so what is worth learning is exploration that beat
    it.  With the group's mean, a task the policy already solves keeps carrying signal because
    its own noise sometimes fails it (the update then learns robustness to noise it will not
    meet), while a task it fails deterministically but solves under noise (the D->D policy's
    ``open_drawer``: 4 of 35 official attempts, about one rollout in four under noise) is no more
    likely to teach than any other.  ``gated`` gives GRPO's advantages, and the trainer updates
    only groups in which some rollout beat the greedy one (see :func:`carries_signal`).  Why:
    ReMax's advantages do not sum to zero within a group, and when every rollout beats the
    greedy one alike (the deterministic rollout fails a task that every exploring one solves)
    they are all positive, so the update pushes the mean towards the group's own exploration
    noise, a random direction that Adam then steps as far as any signal (run 5 in the README
    made such an update on ``turn_off_led``, and lost that task).

    ``credit``: ``rollout`` gives every subtask the rollout's advantage; ``subtask`` gives
    subtask k what the rollout solved from k on minus what the baseline solved from k on (for
    the group, its mean of that), the reward-to-go of policy gradients with the subtask as the
    time step.  Why: a chain's reward is earned subtask by subtask at known steps, and with one
    advantage per rollout the steps of the subtask it failed share the credit of the ones it
    solved before: a rollout that opened the drawer and then failed to find a block for 120
    steps taught those 120 steps as much as the opening.  Subtask 0 gets the same advantage
    either way.
    """
    s = np.asarray(rewards, dtype=np.float64)
    depths = range(max(played, default=0))
    if baseline in ("group", "gated"):
        sd = s.std()
        scale = 0.0 if sd < 1e-8 else 1.0 / (sd + 1e-6)
        solved_from = [float(np.maximum(s - k, 0.0).mean()) for k in depths]
    else:
        assert greedy is not None
        scale = 1.0
        solved_from = [max(greedy - k, 0.0) for k in depths]
    out = []
    for si, n in zip(s, played):
        ks = range(n) if credit == "subtask" else [0] * n
        out.append(np.array([(si - k - solved_from[k]) * scale for k in ks]))
    return out


def carries_signal(baseline: str, rewards: Sequence[float], greedy: float | None, adv: Sequence[np.ndarray]) -> bool:
    """Whether a group updates (and counts as signal for the curriculum): some rollout beat its
    baseline, i.e. the greedy rollout's reward for ``greedy`` and ``gated``, the group's mean for
    ``group``; and its advantages are not all zero."""
    if not any(np.any(a != 0) for a in adv):
        return False
    return any(r > greedy for r in rewards) if baseline != "group" else True


def _keep_logged(log: Any, iteration: int) -> None:
    """Drop the log rows after ``iteration`` (played after the last checkpoint by a run that was
    killed: the resumed run plays them again) and a torn last line, so no row is duplicated."""
    if not log.is_file():
        return
    text = log.read_text()
    complete = text.split("\n")[:-1]  # a torn last line has no newline yet
    header, rows = (complete[0], complete[1:]) if complete else ("", [])
    kept = [row for row in rows if row.split(",", 1)[0].isdigit() and int(row.split(",", 1)[0]) <= iteration]
    new = "".join(f"{line}\n" for line in [header, *kept]) if header else ""
    if new != text:
        write_text(log, new)


def _describe(result: dict[str, Any], single: bool) -> str:
    if single:
        return (f"{result['successes']}/{result['episodes']} = {result['success_rate']:.3f} "
                f"(95% CI {result['ci95'][0]:.3f}-{result['ci95'][1]:.3f})")
    return f"average length {result['avg_len']:.3f} over {result['episodes']} chains"


def train_rl(cfg: RLConfig, *, progress: bool = True, echo: Any = print) -> dict[str, Any]:
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from vlaeval.agents.checkpoint import load_checkpoint, save_checkpoint
    from vlaeval.agents.kosmos.config import agent_spec
    from vlaeval.training.common import BatchedPolicy, open_run
    from vlaeval.training.state import load_state, restore_rng_states, rng_states, save_state

    run_dir = open_run(cfg, ("checkpoint", "task", "suite", "setting", "group_size", "seed"), echo, "--checkpoint")
    run, state_file, last, resuming = run_dir.path, run_dir.state_file, run_dir.last, run_dir.resuming
    model, config, codec = load_checkpoint(last if resuming else cfg.checkpoint)
    if config.action_space != "continuous":
        raise VlaevalError("train rl supports continuous-action checkpoints (Gaussian exploration around the arm action)")
    policy = BatchedPolicy(model, config, codec)
    reference = None
    if cfg.kl_coef > 0:  # always the run's starting checkpoint, also when resuming
        reference = load_checkpoint(cfg.checkpoint)[0].eval()
        reference.requires_grad_(False)
    single = cfg.task is not None
    what = f"{cfg.task} episodes" if single else "chains"
    if cfg.baseline not in BASELINES:
        raise VlaevalError(f"unknown baseline {cfg.baseline!r}; known: {', '.join(BASELINES)}")
    if cfg.credit not in CREDITS:
        raise VlaevalError(f"unknown credit {cfg.credit!r}; known: {', '.join(CREDITS)}")
    greedy = int(cfg.baseline != "group")  # one more env plays the deterministic policy beside the group
    envs = make_envs(cfg, agent_spec(config), max(cfg.group_size + greedy, cfg.eval_batch if cfg.eval_episodes else 0))
    eval_eps = training_episodes(cfg, cfg.eval_episodes, cfg.eval_seed) if cfg.eval_episodes else []
    pool = training_episodes(cfg, max(POOL_SIZE, cfg.iterations), cfg.seed)
    curriculum = ChainCurriculum(prioritize=cfg.prioritize and not single, counts={}, used=[])
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    it = 0
    if resuming:
        state = load_state(state_file, restart_hint=f"delete it to restart from {last}'s weights")
        optim.load_state_dict(state["optimizer"])
        for group in optim.param_groups:  # the saved state carries the old run's rates: this run's --lr applies
            group["lr"], group["weight_decay"] = cfg.lr, cfg.weight_decay
        rng.bit_generator.state = state["rng"]
        restore_rng_states(state["global_rng"])
        it = int(state["iteration"])
        # runs saved before the curriculum existed played the pool in order
        saved = state.get("curriculum", {"counts": {}, "used": list(range(it))})
        curriculum.counts, curriculum.used = saved["counts"], saved["used"]
        echo(f"resumed at iteration {it}")
    writer = SummaryWriter(str(run / "tb"))
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    try:
        before_file = run / "eval_before.json"
        if before_file.is_file():
            before = json.loads(before_file.read_text())
        elif eval_eps:
            model.eval()
            echo(f"evaluating the initial policy on {cfg.eval_episodes} {what} (seed {cfg.eval_seed}) ...")
            before = evaluate(policy, envs[: cfg.eval_batch], eval_eps, cfg.max_steps)
            before["checkpoint"] = cfg.checkpoint
            write_text(before_file, json.dumps(before, indent=2) + "\n")
        if before is not None:
            echo(f"before: {_describe(before, single)}")

        def save(at: int) -> None:
            meta = {"trainer": "rl", "iteration": at, "task": cfg.task, "init_checkpoint": cfg.checkpoint}
            save_checkpoint(run / "checkpoints" / f"iter-{at:04d}", model, config, codec, metadata=meta, overwrite=True)
            save_state(state_file, {"iteration": at, "optimizer": optim.state_dict(), "rng": rng.bit_generator.state,
                                    "global_rng": rng_states(), "curriculum": {"counts": curriculum.counts, "used": curriculum.used}})
            save_checkpoint(last, model, config, codec, metadata=meta, overwrite=True)

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.iterations, initial=it, unit="iter", desc="rl", file=sys.stderr, dynamic_ncols=True)
        log = run / "iterations.csv"
        _keep_logged(log, it)
        while it < cfg.iterations:
            t0 = time.perf_counter()
            index = curriculum.pick(pool, rng)
            episode = pool[index]
            model.eval()
            n = cfg.group_size + greedy
            group = play(policy, envs[:n], [episode] * n, cfg.max_steps, std=cfg.action_std, rng=rng, greedy=greedy)
            group, greedy_solved = group[: cfg.group_size], (float(group[-1].solved) if greedy else None)
            rewards = [float(r.solved) for r in group]
            adv = advantages(cfg.baseline, rewards, greedy_solved, [len(r.starts) for r in group], cfg.credit)
            improved = carries_signal(cfg.baseline, rewards, greedy_solved, adv)  # the only groups that update
            losses: list[GrpoLoss] = []
            if improved:
                model.train()
                for _ in range(cfg.epochs):
                    optim.zero_grad(set_to_none=True)
                    losses.append(grpo_backward(model, policy.text, group, adv, cfg.action_std, cfg.clip,
                                                reference=reference, kl_coef=cfg.kl_coef))
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optim.step()
                model.eval()
            curriculum.played(index, episode.tasks[0], improved)
            it += 1
            row = {"iteration": it, "seed": episode.seed, "first_task": episode.tasks[0], "mean_solved": float(np.mean(rewards)),
                   "greedy_solved": greedy_solved,
                   "updated": bool(losses), "loss": float(np.mean([x.loss for x in losses])) if losses else None,
                   "kl": float(np.mean([x.kl for x in losses])) if losses else None,
                   "mean_steps": float(np.mean([len(r) for r in group])), "seconds": round(time.perf_counter() - t0, 1)}
            with open(log, "a") as f:
                if not log.stat().st_size:
                    f.write(",".join(row) + "\n")
                f.write(",".join("" if v is None else str(v) for v in row.values()) + "\n")
            writer.add_scalar("rollout/mean_solved", row["mean_solved"], it)
            writer.add_scalar("rollout/mean_steps", row["mean_steps"], it)
            if losses:
                writer.add_scalar("train/loss", row["loss"], it)
                writer.add_scalar("train/kl", row["kl"], it)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"group_solved={row['mean_solved']:.2f}", refresh=False)
            if it % cfg.save_every == 0 or it == cfg.iterations:
                save(it)
        if bar is not None:
            bar.close()
        if before is not None:
            model.eval()
            after = evaluate(policy, envs[: cfg.eval_batch], eval_eps, cfg.max_steps)
            after["checkpoint"] = str(last)
            after["paired"] = paired_test(before, after)
            write_text(run / "eval_after.json", json.dumps(after, indent=2) + "\n")
            writer.add_scalar("eval/avg_len", after["avg_len"], it)
            paired = after["paired"]
            echo(f"after:  {_describe(after, single)}; same episodes: {paired['improved']} improved, "
                 f"{paired['worsened']} worsened, exact sign-flip p = {paired['p_value']:.3g}")
    finally:
        writer.close()
        for env in envs:
            env.close()
    keys = ("successes", "episodes", "success_rate", "ci95", "avg_len")
    summary: dict[str, Any] = {"iterations": it, "checkpoint": str(last)}
    if before is not None and after is not None:
        summary |= {"before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys + ("paired",)}}
    return summary


@click.command(name="rl")
@click.option("--agent", "-a", default="kosmos-lstm-tiny", show_default=True, help="Agent family of the checkpoint.")
@click.option("--checkpoint", "-c", required=True, type=click.Path(exists=True, file_okay=False), help="BC checkpoint to fine-tune.")
@click.option("--suite", "-s", default="calvin", show_default=True)
@click.option("--setting", default="ABC->D", show_default=True, help="Setting whose evaluation scene is used.")
@click.option("--task", "-t", help="Task to fine-tune on (e.g. open_drawer); without it, whole chains of the protocol.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run directory (re-run to resume).")
@click.option("--iterations", type=click.IntRange(min=1), default=20, show_default=True, help="Groups played (one update each).")
@click.option("--group-size", type=click.IntRange(min=2), default=8, show_default=True, help="Rollouts per initial state.")
@click.option("--max-steps", type=click.IntRange(min=1), default=120, show_default=True, help="Step limit per subtask (training and evaluation).")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--clip", type=float, default=0.2, show_default=True, help="PPO ratio clip.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True, help="Updates per group.")
@click.option("--action-std", type=float, default=0.3, show_default=True, help="Exploration std of the normalised arm action.")
@click.option("--baseline", type=click.Choice(BASELINES), default="gated", show_default=True,
              help="Advantage baseline: the group's mean (GRPO), the deterministic policy's rollout from the same state (ReMax), "
                   "or GRPO's in groups where some rollout beat the deterministic one (gated).")
@click.option("--credit", type=click.Choice(CREDITS), default="subtask", show_default=True,
              help="Chains: each subtask's advantage from what was solved from it on, or the rollout's for all its steps.")
@click.option("--kl-coef", type=click.FloatRange(min=0), default=0.3, show_default=True,
              help="Weight of the KL divergence from the --checkpoint policy on the visited steps (0: none).")
@click.option("--prioritize/--uniform", default=True, show_default=True,
              help="Chains: replay first tasks whose groups carry signal more often, or play chains as drawn.")
@click.option("--eval-episodes", type=click.IntRange(min=0), default=50, show_default=True,
              help="Held-out episodes of the before/after evaluation (0: none; evaluate with vlaeval run and compare).")
@click.option("--eval-batch", type=click.IntRange(min=1), default=10, show_default=True, help="Environments evaluated in lock-step.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the training initial states and exploration.")
@click.option("--eval-seed", type=int, default=1000, show_default=True, help="Seed of the evaluation initial states.")
@click.option("--threads", type=click.IntRange(min=1), help="torch intra-op threads.")
@click.option("--save-every", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--no-progress", is_flag=True)
def rl_command(agent: str, checkpoint: str, suite: str, setting: str, task: str | None, out: str, iterations: int, group_size: int,
               max_steps: int, lr: float, clip: float, epochs: int, action_std: float, baseline: str, credit: str, kl_coef: float,
               prioritize: bool,
               eval_episodes: int, eval_batch: int,
               seed: int, eval_seed: int, threads: int | None, save_every: int, no_progress: bool) -> None:
    """Fine-tune a BC checkpoint with GRPO on the subtasks it solves: one task, or whole chains."""
    cfg = RLConfig(checkpoint=checkpoint, out=out, task=task, agent=agent, suite=suite, setting=setting, iterations=iterations,
                   group_size=group_size, max_steps=max_steps, lr=lr, clip=clip, epochs=epochs, action_std=action_std,
                   baseline=baseline, credit=credit, kl_coef=kl_coef, prioritize=prioritize,
                   eval_episodes=eval_episodes, eval_batch=eval_batch, seed=seed, eval_seed=eval_seed, threads=threads,
                   save_every=save_every)
    summary = train_rl(cfg, progress=not no_progress, echo=click.echo)
    click.echo(f"done: {json.dumps(summary)}")
