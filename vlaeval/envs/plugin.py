"""Built-in plugin: the simulated suites."""

from __future__ import annotations

from typing import Callable

from vlaeval.plugins.hookspecs import hookimpl


@hookimpl
def vlaeval_register_suites(register: Callable[..., None]) -> None:
    from vlaeval.envs.calvin.spec import CALVIN_SPEC
    from vlaeval.envs.calvin_upstream.spec import CALVIN_UPSTREAM_SPEC
    from vlaeval.envs.simpler.spec import SIMPLER_SPEC

    register(CALVIN_SPEC)
    register(CALVIN_UPSTREAM_SPEC)
    register(SIMPLER_SPEC)
