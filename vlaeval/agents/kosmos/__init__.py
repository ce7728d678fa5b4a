"""Kosmos-2 vision-language-action agents (RoboVLMs' policy-head design).

Importing this package is cheap (no torch); the agent and model load torch on first access.
"""

from __future__ import annotations

from typing import Any

from vlaeval.agents.kosmos.config import PRESETS, KosmosVLAConfig, WeightsNotAvailableError, agent_spec, get_preset

__all__ = ["PRESETS", "KosmosLSTMAgent", "KosmosVLAConfig", "WeightsNotAvailableError", "agent_spec", "get_preset"]


def __getattr__(name: str) -> Any:
    if name == "KosmosLSTMAgent":
        from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

        return KosmosLSTMAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
