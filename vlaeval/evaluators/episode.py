"""One episode in one environment the caller holds: the rollout core with a single slot.

For code that has an env and a bound agent in hand and wants the runner's rows for an episode
(benchmarks, the parity check, suite cross-checks), without building a shard.  The protocol and
its guards are those of :func:`vlaeval.evaluators.rollout.play`.
"""

from __future__ import annotations

from typing import Any

from vlaeval.envs.pool import SyncEnvPool
from vlaeval.envs.suite import EpisodeSpec
from vlaeval.evaluators.rollout import EpisodeContext, play
from vlaeval.results.store import EpisodeRecord

__all__ = ["EpisodeContext", "run_episode"]


def run_episode(env: Any, agent: Any, episode: EpisodeSpec, ctx: EpisodeContext) -> EpisodeRecord:
    """Play ``episode`` (all its chained subtasks) in ``env`` and return its tidy rows.

    The env stays open: it is the caller's.
    """
    events = play(SyncEnvPool(lambda: env, 1), [agent], [episode], max_steps=ctx.max_steps, step_timeout=ctx.step_timeout)
    return next(ctx.record(payload) for kind, payload in events if kind == "ended")
