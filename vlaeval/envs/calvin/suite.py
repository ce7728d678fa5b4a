"""The ``calvin`` suite: CALVIN's 1000 official chains as vlaeval episodes.

Episodes carry everything the environment needs to reset (symbolic state and the exact
robot_obs/scene_obs vectors), so the environment never re-derives the benchmark's initial
conditions and the episode list alone documents what was evaluated. Importing this module does
not import pybullet; only :meth:`Suite.make_env` reaches the simulator.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vlaeval.conventions import AgentSpec
from vlaeval.envs.calvin.initial_state import neutral_robot_obs, scene_obs_for
from vlaeval.envs.calvin.language import INSTRUCTION_SETS
from vlaeval.envs.calvin.sequences import official_sequences
from vlaeval.envs.calvin.spec import CALVIN_SPEC
from vlaeval.envs.suite import EpisodeSpec, Setting, Suite, SuiteSpec, episode_seed


class CalvinSuite(Suite):
    """CALVIN's long-horizon protocol: chain ``i`` is the ``i``-th official (state, 5 tasks) pair.

    The chains and initial conditions are the same for every setting and seed; the seed only
    picks which paraphrase of each instruction an episode uses (per chain index, so the choice
    does not depend on how episodes are split over workers).
    """

    spec: ClassVar[SuiteSpec] = CALVIN_SPEC

    def episodes(self, setting: str, seed: int) -> list[EpisodeSpec]:
        instructions = INSTRUCTION_SETS[self.spec.setting(setting).options["instructions"]]
        robot_obs = neutral_robot_obs().tolist()
        scene_obs: dict[tuple, list[float]] = {}
        episodes = []
        for index, (state, tasks) in enumerate(official_sequences(self.spec.protocol.episodes)):
            key = tuple(state.values())
            if key not in scene_obs:
                scene_obs[key] = scene_obs_for(state).tolist()
            ep_seed = episode_seed(seed, index)
            rng = np.random.default_rng(ep_seed)
            chosen = tuple(instructions[t][rng.integers(len(instructions[t]))] for t in tasks)
            episodes.append(
                EpisodeSpec(
                    index=index,
                    tasks=tasks,
                    instructions=chosen,
                    seed=ep_seed,
                    options={
                        "initial_state": state,
                        "robot_obs": list(robot_obs),
                        "scene_obs": list(scene_obs[key]),
                        "tasks": list(tasks),
                        "instructions": list(chosen),
                    },
                )
            )
        return episodes

    def env_kwargs(self, setting: Setting, agent: AgentSpec, action_type: str) -> dict[str, Any]:
        """Evaluate in scene D with the negotiated action mode, rendering only the cameras the
        agent reads (state-only agents then skip rendering entirely)."""
        return {
            "scene": "D",
            **setting.env_kwargs,
            "action_mode": "relative" if action_type == "relative_ee" else "absolute",
            "cameras": tuple(k for k in agent.observation_keys if k.startswith(("rgb_", "depth_"))),
        }
