"""vlaeval-toy's second plugin (entry point ``toy-testing``): agents that exist for vlaeval's own
tests, misbehaving in the ways the harness must survive.  Kept apart from ``plugin.py``, the
example the README quotes."""

from __future__ import annotations

from typing import Callable

import vlaeval


@vlaeval.hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    for name, cls, text in (
        ("toy-crash", "Crasher", "raises on the first step of every subtask"),
        ("toy-nan", "NaNAgent", "returns NaN actions"),
        ("toy-wrong-shape", "WrongShape", "returns 6-d actions"),
        ("toy-sleeper", "Sleeper", "hangs on its first step"),
        ("toy-slow", "Slow", "a slow solver"),
        ("toy-absolute", "AbsoluteAgent", "declares mismatched conventions"),
        ("toy-dier", "Dier", "kills its own process once (worker-loss tests)"),
    ):
        register(name, f"vlaeval_toy.agents:{cls}", description=text)
