"""The frozen spec of the ``calvin-upstream`` suite, importable without calvin_env or pybullet.

It is the ``calvin`` suite's spec with another name, target and environment: the same settings,
protocol (the 1000 official chains, 360 steps per subtask, chains of 5), tasks and conventions,
so an agent that runs on one runs on the other and their reports line up task by task.
"""

from __future__ import annotations

import dataclasses

from vlaeval.envs.calvin.spec import CALVIN_SPEC
from vlaeval.envs.suite import SuiteSpec

#: The Gymnasium id of the wrapped upstream env (registered by :mod:`vlaeval.envs.calvin_upstream.suite`).
ENV_ID = "vlaeval/CalvinUpstream-v0"

CALVIN_UPSTREAM_SPEC: SuiteSpec = dataclasses.replace(
    CALVIN_SPEC,
    name="calvin-upstream",
    version="1",
    target="vlaeval.envs.calvin_upstream.suite:CalvinUpstreamSuite",
    description="CALVIN's own calvin_env (PlayTableSimEnv, Tasks oracle) on the 1000 official chains of scene D; "
                "needs calvin_env (see README)",
    env_ids=(ENV_ID,),
)
