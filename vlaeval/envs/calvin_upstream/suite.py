"""The ``calvin-upstream`` suite: the ``calvin`` suite's episodes on upstream's own simulator.

The episodes are :class:`~vlaeval.envs.calvin.suite.CalvinSuite`'s (the 1000 official chains,
their initial states and instructions), so the two suites play the same chains from the same
states; only the environment differs (:class:`~vlaeval.envs.calvin_upstream.env.CalvinUpstreamEnv`,
judged by upstream's ``Tasks`` oracle).  Listing episodes checks the install first, which is the
first thing a run does in its main process: a missing calvin_env is a one-line error before any
worker starts, and a revision other than the validated one a one-line warning.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium

from vlaeval.conventions import AgentSpec
from vlaeval.envs.calvin.suite import CalvinSuite
from vlaeval.envs.calvin_upstream.install import check, installation
from vlaeval.envs.calvin_upstream.spec import CALVIN_UPSTREAM_SPEC, ENV_ID
from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="vlaeval.envs.calvin_upstream.env:CalvinUpstreamEnv")


class CalvinUpstreamSuite(CalvinSuite):
    """CALVIN's long-horizon protocol on upstream's ``PlayTableSimEnv`` (one env per process)."""

    spec: ClassVar[SuiteSpec] = CALVIN_UPSTREAM_SPEC

    def episodes(self, setting: str, seed: int) -> list[EpisodeSpec]:
        check()
        return super().episodes(setting, seed)

    def versions(self) -> dict[str, str]:
        """The calvin_env revision, and whether it is upstream's HEAD or mees/calvin's submodule
        pin (spec §C.7), for the run manifest."""
        return installation().versions()

    def batched_pool(self, setting: str, agent: AgentSpec, action_type: str, size: int, env_mode: str) -> Any:
        """``size`` upstream envs, one subprocess each: two never share a process (upstream builds
        on pybullet's client 0), so a privileged agent, which reads its env in its own process, or
        ``--env-mode sync`` cannot have several."""
        if agent.privileged or env_mode == "sync":
            who = "a privileged agent (it reads its env in-process)" if agent.privileged else "--env-mode sync"
            raise VlaevalError(f"calvin-upstream runs one upstream env per process, so {who} cannot step {size} in one "
                               f"worker; use --workers {size} instead of --envs-per-worker {size}")
        from vlaeval.envs.pool import AsyncEnvPool

        return AsyncEnvPool(self.spec.name, setting, agent, action_type, size)
