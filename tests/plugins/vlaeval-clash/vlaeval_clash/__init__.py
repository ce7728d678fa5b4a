"""A valid plugin that registers names others already use: the built-in agent ``random`` and
vlaeval-toy's suite ``toy-chain``."""

from __future__ import annotations

from typing import Callable

import vlaeval


@vlaeval.hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    register("random", "vlaeval_clash.agents:Random", description="another agent called random")


@vlaeval.hookimpl
def vlaeval_register_suites(register: Callable[..., None]) -> None:
    from vlaeval.envs.suite import Protocol, Setting, SuiteSpec

    register(SuiteSpec(
        name="toy-chain", version="1", target="vlaeval_clash.suite:Chain", description="another suite called toy-chain",
        tasks=("reach_left",), settings=(Setting("default"),), protocol=Protocol(episodes=1, max_steps=1),
        env_ids=(), conventions=vlaeval.SuiteConventions(),
    ))
