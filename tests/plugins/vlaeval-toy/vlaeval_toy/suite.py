"""The toy suites: ``toy`` (single reaching episodes) and ``toy-chain`` (chains of 3 goals)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from vlaeval.conventions import SuiteConventions
from vlaeval.envs.suite import EpisodeSpec, Protocol, Setting, Suite, SuiteSpec, episode_seed

TASKS = ("reach_left", "reach_right", "reach_center")
CONVENTIONS = SuiteConventions(action_types=("relative_ee",), rotation="euler_xyz", gripper="open_positive", observation_keys=("state",))
SETTINGS = (
    Setting("default", "goals as trained"),
    Setting("broken", "an environment that cannot start", env_kwargs={"fail_on_make": True}),
)

TOY_SPEC = SuiteSpec(
    name="toy", version="1", target="vlaeval_toy.suite:ToySuite", description="1-D reaching, one goal per episode",
    tasks=TASKS, settings=SETTINGS, protocol=Protocol(episodes=40, max_steps=30, seed=0, chain_length=1),
    env_ids=("vlaeval_toy/ToyReach-v0",), conventions=CONVENTIONS,
)
TOY_CHAIN_SPEC = SuiteSpec(
    name="toy-chain", version="1", target="vlaeval_toy.suite:ToyChainSuite", description="1-D reaching, chains of 3 goals",
    tasks=TASKS, settings=SETTINGS, protocol=Protocol(episodes=30, max_steps=30, seed=0, chain_length=3),
    env_ids=("vlaeval_toy/ToyReach-v0",), conventions=CONVENTIONS,
)

if "vlaeval_toy/ToyReach-v0" not in gym.registry:
    gym.register("vlaeval_toy/ToyReach-v0", entry_point="vlaeval_toy.env:ToyReachEnv")


class ToySuite(Suite):
    spec = TOY_SPEC

    def episodes(self, setting: str, seed: int) -> list[EpisodeSpec]:
        out = []
        n = self.spec.protocol.chain_length
        for i in range(self.spec.protocol.episodes):
            s = episode_seed(seed, i)
            rng = np.random.default_rng(s)
            tasks = tuple(str(t) for t in rng.permutation(TASKS)[:n])
            out.append(EpisodeSpec(i, tasks, tuple(f"go to the {t.split('_')[1]}" for t in tasks), s,
                                   {"tasks": list(tasks), "start": round(float(rng.uniform(-0.3, 0.3)), 4)}))
        return out


class ToyChainSuite(ToySuite):
    spec = TOY_CHAIN_SPEC
