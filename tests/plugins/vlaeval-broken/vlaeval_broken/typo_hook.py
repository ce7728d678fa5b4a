"""A plugin with a misspelt hook name, which pluggy alone would accept and never call."""

from __future__ import annotations

from typing import Callable

import vlaeval


@vlaeval.hookimpl
def vlaeval_register_agent(register: Callable[..., None]) -> None:  # the hook is vlaeval_register_agents
    register("typo-agent", "vlaeval_toy.agents:Solver")
