"""vlaeval's plugin hooks (pluggy).

Registration hooks follow ``llm``'s design: they receive a ``register`` callback and the core
owns validation, laziness and duplicate detection.  Every registered target is a lazy
``"module:attr"`` string, so listing plugins never imports a simulator or a deep-learning stack.

Each hook is documented in the README's "Plugin hooks" section; a test fails when one is not.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("vlaeval")
hookimpl = pluggy.HookimplMarker("vlaeval")


# -- registration -----------------------------------------------------------------------------


@hookspec
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    """Register agents: ``register(name, target, *, description="", aliases=())``.

    ``target`` is a ``"module:attr"`` string naming an :class:`vlaeval.Agent` subclass or factory
    called with the agent options (``--agent-opt key=value``) as keyword arguments.
    """


@hookspec
def vlaeval_register_suites(register: Callable[..., None]) -> None:
    """Register suites: ``register(spec)`` with a :class:`vlaeval.envs.suite.SuiteSpec`.

    The spec is plain data; its ``target`` names the :class:`~vlaeval.envs.suite.Suite`
    implementation, imported only when episodes are listed or run.
    """


@hookspec
def vlaeval_register_metrics(register: Callable[..., None]) -> None:
    """Register metrics: ``register(spec)`` with a :class:`vlaeval.results.metrics.MetricSpec`.

    Reports compute every registered metric that applies to a suite; the gate tests them.
    """


@hookspec
def vlaeval_register_reporters(register: Callable[..., None]) -> None:
    """Register report formats: ``register(name, target, *, description="")``.

    ``target`` is a ``"module:attr"`` callable ``(report, out: Path | None) -> str`` that renders a
    :class:`vlaeval.results.report.Report` and returns the text it wrote or printed.
    """


@hookspec
def vlaeval_register_trainers(register: Callable[..., None]) -> None:
    """Register trainers: ``register(name, target, *, description="")``.

    ``target`` is a ``"module:attr"`` ``click.Command`` run as ``vlaeval train NAME [OPTIONS]``;
    trainers write agent checkpoints.
    """


@hookspec
def vlaeval_register_commands(cli: Any) -> None:
    """Add sub-commands to the ``vlaeval`` command line; ``cli`` is its ``click.Group``."""


# -- resolution -------------------------------------------------------------------------------


@hookspec(firstresult=True)
def vlaeval_resolve_agent(uri: str, options: dict[str, Any]) -> Any:
    """Build an agent for a URI that is not a registered name, or return None.

    Lets plugins claim new kinds of agent references: ``ws://host:port`` for a served policy,
    a path to an exported engine, a ``module:attr`` import string.  The first non-None wins.
    """


# -- observers --------------------------------------------------------------------------------


@hookspec
def vlaeval_run_started(run: Any) -> None:
    """A run starts (or resumes); ``run`` is the :class:`vlaeval.evaluators.runner.RunInfo`."""


@hookspec
def vlaeval_episode_finished(run: Any, record: Any) -> None:
    """An episode finished and was stored; ``record`` is its :class:`vlaeval.results.store.EpisodeRecord`."""


@hookspec
def vlaeval_run_finished(run: Any, results: Any) -> None:
    """A run finished; ``results`` is its per-episode ``pandas.DataFrame``."""
