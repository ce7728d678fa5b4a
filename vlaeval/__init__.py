"""vlaeval: evaluation suite for vision-language-action robot policies.

The top-level namespace stays cheap to import; :func:`evaluate` loads the runner on first use.
"""

from __future__ import annotations

from typing import Any

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.conventions import AgentSpec, SuiteConventions
from vlaeval.plugins.hookspecs import hookimpl

from vlaeval.version import __version__

__all__ = ["Agent", "AgentContext", "AgentSpec", "SuiteConventions", "__version__", "evaluate", "hookimpl", "load_results"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from vlaeval.evaluators.runner import evaluate

        return evaluate
    if name == "load_results":
        from vlaeval.results.store import load_results

        return load_results
    raise AttributeError(f"module 'vlaeval' has no attribute {name!r}")
