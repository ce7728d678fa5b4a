"""The suite contract: a frozen, versioned spec plus how its episodes are produced and scored.

A suite is *data first* (:class:`SuiteSpec`, importable without any simulator) and *code second*
(the :class:`Suite` implementation named by ``SuiteSpec.target``, imported only to list or run
episodes).  That split is what keeps ``vlaeval --help`` and ``vlaeval suites`` fast.

Environment contract used by the runner (every suite's Gymnasium env follows it):

* ``env.reset(seed=episode.seed, options=episode.options)`` sets up the episode (for chained
  suites: the whole chain, ``options["tasks"]``).
* Each ``env.step`` returns ``info["is_success"]``: whether the *current* subtask was solved by
  that step.  When it is, a chained env starts the next subtask from the current state, exactly
  as CALVIN's evaluation loop does.
* ``terminated`` ends the episode early (e.g. the object fell off the table); the runner limits
  each subtask to ``Protocol.max_steps`` steps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from vlaeval.conventions import AgentSpec, SuiteConventions


@dataclass(frozen=True)
class Setting:
    """A generalization setting (e.g. CALVIN's ``ABC->D``).

    Attributes:
        name: the setting's name as typed on the command line.
        description: one line for listings.
        train_scenes: scenes an agent evaluated under this setting may have been trained on
            (recorded in the manifest; it does not change the episodes).
        env_kwargs: extra keyword arguments for ``gymnasium.make``.
        options: extra settings the suite reads when producing episodes (e.g. instruction set).
    """

    name: str
    description: str = ""
    train_scenes: tuple[str, ...] = ()
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """How many episodes, which seed, and how long each (sub)task may take.

    Attributes:
        episodes: number of evaluation episodes (chains for chained suites).
        max_steps: step limit per episode, or per subtask for chained suites.
        seed: default base seed of a run.
        chain_length: subtasks per episode (1 = ordinary episodic suite).
    """

    episodes: int
    max_steps: int
    seed: int = 0
    chain_length: int = 1


@dataclass(frozen=True)
class SuiteSpec:
    """Everything known about a suite without importing its simulator.

    Attributes:
        name: registered name (``calvin``).
        version: bumped whenever a change can move results; the gate refuses to compare runs of
            different versions.
        target: ``"module:attr"`` of the :class:`Suite` implementation.
        description: one line for listings.
        tasks: every task name the suite can score.
        settings: generalization settings, the first one being the default.
        protocol: the evaluation protocol.
        env_ids: the Gymnasium ids its environments are registered under.
        conventions: action/observation conventions of its environments.
    """

    name: str
    version: str
    target: str
    description: str
    tasks: tuple[str, ...]
    settings: tuple[Setting, ...]
    protocol: Protocol
    env_ids: tuple[str, ...]
    conventions: SuiteConventions

    def setting(self, name: str | None) -> Setting:
        """Look up a setting by name (None = the default), with a did-you-mean error."""
        if name is None:
            return self.settings[0]
        for s in self.settings:
            if s.name == name:
                return s
        from vlaeval.plugins.registry import unknown_name_error

        raise unknown_name_error("setting", name, [s.name for s in self.settings], f"suite {self.name!r}")


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode, fully determined before anything runs.

    Attributes:
        index: position in the suite's episode list (the chain index for chained suites).
        tasks: the task, or the chain of tasks, to solve in order.
        instructions: the language instruction for each task.
        seed: the seed ``env.reset`` and the agent receive.
        options: initial conditions passed to ``env.reset(options=...)``; JSON-serialisable.
    """

    index: int
    tasks: tuple[str, ...]
    instructions: tuple[str, ...]
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_json_default, sort_keys=False)


def episode_seed(base_seed: int, index: int) -> int:
    """Per-episode seed derived from the run seed and the episode index (not the worker)."""
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1)[0])


class Suite:
    """How a suite's episodes are produced and its environments created.

    Subclasses set :attr:`spec`, implement :meth:`episodes`, and may override :meth:`env_kwargs`.
    """

    spec: ClassVar[SuiteSpec]

    def episodes(self, setting: str, seed: int) -> Sequence[EpisodeSpec]:
        """All evaluation episodes of a setting, in protocol order (cheap: nothing is simulated)."""
        raise NotImplementedError

    def env_kwargs(self, setting: Setting, agent: AgentSpec, action_type: str) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make``; suites map agent needs onto env options here
        (e.g. render only the cameras the agent reads)."""
        return dict(setting.env_kwargs)

    def annotate_results(self, rows: Any) -> Any:
        """Add columns a suite can derive from its episode list (e.g. the variant of each episode)
        to a results DataFrame of this suite; sim-vs-real comparisons aggregate over them."""
        return rows

    def batched_pool(self, setting: str, agent: AgentSpec, action_type: str, size: int, env_mode: str) -> Any:
        """A pool of ``size`` slots simulated together in one batched simulator (GPU sims), with
        the interface of :class:`~vlaeval.envs.pool.SyncEnvPool`, or None, in which case
        the runner steps ``size`` single environments (``env_mode`` decides in- or out-of-process)."""
        return None

    def make_env(self, setting: str, agent: AgentSpec, action_type: str, **overrides: Any) -> Any:
        """Create the environment for a setting through ``gymnasium.make``; ``overrides`` replace
        keyword arguments the setting gives (``vlaeval record`` plays CALVIN's training scenes,
        which no evaluation setting uses)."""
        import gymnasium

        import vlaeval.envs.registration  # noqa: F401  (registers the vlaeval/* ids)

        s = self.spec.setting(setting)
        return gymnasium.make(self.spec.env_ids[0], **{**self.env_kwargs(s, agent, action_type), **overrides})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def registered_env_metadata(spec: SuiteSpec) -> Mapping[str, Any]:
    """The ``metadata`` of the suite's registered Gymnasium environment class (its control rate,
    ``render_fps``), read without building an environment; empty when it has none."""
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    import vlaeval.envs.registration  # noqa: F401  (registers the vlaeval/* ids)

    try:
        entry = gymnasium.spec(spec.env_ids[0]).entry_point if spec.env_ids else None
    except gymnasium.error.Error:
        return {}
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    return getattr(creator, "metadata", None) or {}
