"""The plugin module named by the ``vlaeval`` entry point."""

from __future__ import annotations

from typing import Any, Callable

import vlaeval


@vlaeval.hookimpl
def vlaeval_register_suites(register: Callable[..., None]) -> None:
    from vlaeval_toy.suite import TOY_CHAIN_SPEC, TOY_SPEC

    register(TOY_SPEC)
    register(TOY_CHAIN_SPEC)


@vlaeval.hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    for name, cls, text in (
        ("toy-solver", "Solver", "solves the toy suites (skill=1)"),
        ("toy-crash", "Crasher", "raises on its third step"),
        ("toy-nan", "NaNAgent", "returns NaN actions"),
        ("toy-wrong-shape", "WrongShape", "returns 6-d actions"),
        ("toy-sleeper", "Sleeper", "hangs on its first step"),
        ("toy-slow", "Slow", "a slow solver"),
        ("toy-absolute", "AbsoluteAgent", "declares mismatched conventions"),
        ("toy-batch-solver", "BatchSolver", "a batched solver (act_batch, per-slot state)"),
        ("toy-dier", "Dier", "kills its own process once (worker-loss tests)"),
    ):
        register(name, f"vlaeval_toy.agents:{cls}", description=text)


@vlaeval.hookimpl
def vlaeval_resolve_agent(uri: str, options: dict[str, Any]) -> Any:
    """``toy://solver?skill=0.5`` builds a Solver (``toy://batch-solver?...`` a BatchSolver): shows how
    a plugin claims a URI scheme."""
    if not uri.startswith("toy://"):
        return None
    from urllib.parse import parse_qsl, urlparse

    from vlaeval_toy.agents import BatchSolver, Solver

    parsed = urlparse(uri)
    cls = BatchSolver if parsed.netloc == "batch-solver" else Solver
    return cls(**{k: float(v) for k, v in parse_qsl(parsed.query)}, **options)
