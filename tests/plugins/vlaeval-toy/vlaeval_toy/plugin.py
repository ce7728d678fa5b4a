"""vlaeval-toy's plugin (entry point ``toy``): one example of every vlaeval hook.

The README's "Plugins" and "Plugin hooks" sections quote this package; a test checks that every
quoted snippet is still its code, and others run each example through the ``vlaeval`` CLI.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import click

import vlaeval
from vlaeval.results.metrics import MetricSpec


@vlaeval.hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    register("toy-solver", "vlaeval_toy.agents:Solver", description="solves the toy suites (skill=1)")
    register("toy-batch-solver", "vlaeval_toy.agents:BatchSolver", description="a batched solver (act_batch, per-slot state)")


@vlaeval.hookimpl
def vlaeval_register_suites(register: Callable[..., None]) -> None:
    from vlaeval_toy.suite import TOY_CHAIN_SPEC, TOY_SPEC  # imports gymnasium: only when suites are listed or used

    register(TOY_SPEC)
    register(TOY_CHAIN_SPEC)


@vlaeval.hookimpl
def vlaeval_register_metrics(register: Callable[..., None]) -> None:
    register(MetricSpec("toy_steps", "vlaeval_toy.metrics:steps_to_success", "steps per successful attempt (toy suites only)",
                        level="task", higher_is_better=False))


@vlaeval.hookimpl
def vlaeval_register_reporters(register: Callable[..., None]) -> None:
    register("toy-summary", "vlaeval_toy.reporters:summary", description="one line per run: success rate and interval")


@vlaeval.hookimpl
def vlaeval_register_trainers(register: Callable[..., None]) -> None:
    register("toy", "vlaeval_toy.trainer:train_command", description="fits a toy-solver checkpoint to a finished run")


@vlaeval.hookimpl
def vlaeval_register_commands(cli: Any) -> None:
    cli.add_command(goals_command)


@click.command(name="toy-goals")
def goals_command() -> None:
    """Where each toy task's goal lies on the line."""
    from vlaeval_toy.env import GOALS

    for task, x in GOALS.items():
        click.echo(f"{task}: {x:+.1f}")


@vlaeval.hookimpl
def vlaeval_resolve_agent(uri: str, options: dict[str, Any]) -> Any:
    """``toy://solver?skill=0.5`` builds a Solver (``toy://batch-solver?...`` a BatchSolver)."""
    if not uri.startswith("toy://"):
        return None  # not ours: let other plugins try
    from urllib.parse import parse_qsl, urlparse

    from vlaeval_toy.agents import BatchSolver, Solver

    parsed = urlparse(uri)
    cls = BatchSolver if parsed.netloc == "batch-solver" else Solver
    return cls(**{k: float(v) for k, v in parse_qsl(parsed.query)}, **options)


@vlaeval.hookimpl
def vlaeval_run_started(run: Any) -> None:
    _log({"event": "run_started", "run_id": run.run_id, "suite": run.suite.name, "pending": run.pending})


@vlaeval.hookimpl
def vlaeval_episode_finished(run: Any, record: Any) -> None:
    _log({"event": "episode_finished", "run_id": run.run_id, "episode": record.episode, "success": record.success})


@vlaeval.hookimpl
def vlaeval_run_finished(run: Any, results: Any) -> None:
    _log({"event": "run_finished", "run_id": run.run_id, "success_rate": float(results.groupby("episode")["success"].all().mean())})


def _log(event: dict[str, Any]) -> None:
    """Append one JSON line to the file named by ``VLAEVAL_TOY_LOG``; without it the observers do nothing."""
    path = os.environ.get("VLAEVAL_TOY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")
