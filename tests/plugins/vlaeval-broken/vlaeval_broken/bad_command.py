"""A plugin whose command registration raises after adding a command."""

from __future__ import annotations

from typing import Any, Callable

import click

import vlaeval


@vlaeval.hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    register("bad-command-agent", "vlaeval_toy.agents:Solver", description="from a plugin whose command hook fails")


@vlaeval.hookimpl
def vlaeval_register_commands(cli: Any) -> None:
    cli.add_command(click.Command("bad-command", callback=lambda: click.echo("should not run")))
    raise RuntimeError("no commands today")
