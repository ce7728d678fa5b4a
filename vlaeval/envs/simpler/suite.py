"""The ``simpler`` suite: episodes = task x variant x initial condition, fully listed up front."""

from __future__ import annotations

from typing import Any, ClassVar

from vlaeval.conventions import AgentSpec
from vlaeval.envs.pool import EnvPool
from vlaeval.envs.simpler.backend import requested_sim_backend, resolve_sim_backend
from vlaeval.envs.simpler.episodes import instruction_for, task_layouts
from vlaeval.envs.simpler.spec import SIMPLER_SPEC, TASKS, variants_for
from vlaeval.envs.suite import EpisodeSpec, Setting, Suite, SuiteSpec, episode_seed


class SimplerSuite(Suite):
    """Every (task, variant, layout) of a protocol, in that order.

    The initial conditions and variants are fixed per setting; the run seed only feeds the
    episode seeds (which place distractors and seed the agent), so every agent evaluated with the
    same seed sees the same episodes.  ``options["variant_name"]`` is what reports group by.
    """

    spec: ClassVar[SuiteSpec] = SIMPLER_SPEC

    def annotate_results(self, rows: Any) -> Any:
        """Join each episode's variant and variant axis (from the fixed episode list)."""
        return annotate(rows)

    def episodes(self, setting: str, seed: int, tasks: tuple[str, ...] | None = None) -> list[EpisodeSpec]:
        protocol = self.spec.setting(setting).options["protocol"]
        out: list[EpisodeSpec] = []
        for task in tasks or TASKS:
            layouts = task_layouts(task)
            for variant_name, variant in variants_for(task, protocol):
                for layout_index, layout in enumerate(layouts):
                    index = len(out)
                    instruction = instruction_for(task, layout)
                    out.append(EpisodeSpec(
                        index=index,
                        tasks=(task,),
                        instructions=(instruction,),
                        seed=episode_seed(seed, index),
                        options={
                            "task": task,
                            "layout": layout,
                            "layout_index": layout_index,
                            "variant": dict(variant),
                            "variant_name": variant_name,
                            "protocol": protocol,
                            "instruction": instruction,
                        },
                    ))
        return out

    def env_kwargs(self, setting: Setting, agent: AgentSpec, action_type: str) -> dict[str, Any]:
        """Render only when the agent reads the camera (privileged experts run state-only); the
        sim backend comes from ``VLAEVAL_SIMPLER_SIM_BACKEND`` (the CLI has no per-suite option)."""
        kwargs = dict(setting.env_kwargs)
        kwargs["render"] = "rgb" in agent.observation_keys
        if not kwargs["render"]:
            kwargs["overlay"] = False
        kwargs["sim_backend"] = requested_sim_backend()
        return kwargs

    def batched_pool(self, setting: str, agent: AgentSpec, action_type: str, size: int, env_mode: str) -> EnvPool | None:
        """One batched GPU env for ``size`` slots when :func:`~vlaeval.envs.simpler.pool.wants_batched_pool`
        says so, else None (the runner then builds its usual pool of single envs)."""
        from vlaeval.envs.simpler.pool import SimplerBatchPool, wants_batched_pool

        kwargs = self.env_kwargs(self.spec.setting(setting), agent, action_type)
        kwargs["sim_backend"] = resolve_sim_backend(kwargs["sim_backend"])  # a clear error for gpu without CUDA
        if not wants_batched_pool(kwargs["sim_backend"], size, env_mode, agent.privileged):
            return None
        return SimplerBatchPool(size, **kwargs)


def annotate(rows: Any) -> Any:
    """Add ``variant``, ``axis`` and ``layout_index`` columns to a DataFrame of simpler rows.

    Runs store only the episode index; its variant follows from the fixed episode list of the
    run's setting, so it is joined here rather than stored.
    """
    import pandas as pd

    frames = []
    for setting, group in rows.groupby("setting"):
        episodes = SimplerSuite().episodes(setting, 0)
        info = pd.DataFrame({
            "episode": [e.index for e in episodes],
            "variant": [e.options["variant_name"] for e in episodes],
            "layout_index": [e.options["layout_index"] for e in episodes],
        })
        frames.append(group.merge(info, on="episode", how="left"))
    out = pd.concat(frames, ignore_index=True)
    out["axis"] = out["variant"].str.split("=").str[0]
    return out
