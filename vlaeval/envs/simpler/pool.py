"""Many ``simpler`` environments as one batched ManiSkill env, behind the pool interface.

:class:`~vlaeval.envs.pool.SyncEnvPool` and ``AsyncEnvPool`` hold one simulator per
slot.  On the GPU backend ManiSkill simulates and renders ``num_envs`` sub-environments in one
call, so here a slot is a sub-environment of one :class:`~vlaeval.envs.simpler.batch.SimplerBatch`:
``step`` is one batched control step, ``reset`` a partial reset of the slots whose episodes
start.  The per-episode rules are the batch's, the same code :class:`SimplerEnv` runs, so a slot
scores an episode exactly as a single env does.

Failures: an unknown task or variant fails only its slot (checked before the reset); an
exception inside the batched reset or step fails every slot of that call, because the shared
simulator's state is then unknown for all of them.
"""

from __future__ import annotations

from typing import Any, Mapping

from vlaeval.envs.pool import Outcome, describe
from vlaeval.envs.simpler.options import scene_episode_options


def wants_batched_pool(sim_backend: str, size: int, env_mode: str, privileged: bool) -> bool:
    """Whether the runner should use :class:`SimplerBatchPool`: GPU backend, several envs, an
    in-process env mode (``async`` asks for subprocesses explicitly), and an agent that does not
    read the simulator (privileged experts index sub-environment 0 and get one env per slot)."""
    return sim_backend == "gpu" and size > 1 and env_mode in ("auto", "sync") and not privileged


class SimplerBatchPool:
    """``size`` slots of one ManiSkill env (``num_envs=size``; more than one needs the GPU backend).

    Args:
        size: number of slots.
        env_kwargs: :class:`~vlaeval.envs.simpler.batch.SimplerBatch` keyword arguments (render,
            overlay, image_size, success_at, sim_backend, ...), as the suite gives a single env.
    """

    kind = "gpu-batched"

    def __init__(self, size: int, **env_kwargs: Any) -> None:
        from vlaeval.envs.simpler.batch import SimplerBatch

        self.batch = SimplerBatch(size, **env_kwargs)
        self.action_space = self.batch.action_space
        self.observation_space = self.batch.observation_space

    @property
    def size(self) -> int:
        return self.batch.num_envs

    def unwrapped(self, slot: int) -> Any:
        return None  # slots are sub-environments of one scene: privileged agents get one env per slot

    def reset(self, requests: Mapping[int, tuple[int, Mapping[str, Any]]]) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        valid = {}
        for slot, (seed, options) in requests.items():
            try:
                scene_episode_options(seed, options)
            except Exception as exc:
                out[slot] = False, describe(exc)
            else:
                valid[slot] = seed, options
        try:
            results = self.batch.reset(valid)
        except Exception as exc:
            return out | {slot: (False, describe(exc)) for slot in valid}
        return out | {slot: (True, obs) for slot, (obs, _) in results.items()}

    def step(self, actions: Mapping[int, Any]) -> dict[int, Outcome]:
        try:
            results = self.batch.step(actions)
        except Exception as exc:
            return {slot: (False, describe(exc)) for slot in actions}
        return {slot: (True, (obs, bool(info["is_success"]), terminated, truncated))
                for slot, (obs, _, terminated, truncated, info) in results.items()}

    def close(self) -> None:
        self.batch.close()
