"""Shards, and the executors that run them for the runner.

A run's pending episodes are dealt into :class:`Shard` s; a shard is what one worker plays:
:func:`play_shard` builds its environments and agent(s), binds them, reports ``ready`` and
plays the episodes through the rollout core (:mod:`vlaeval.evaluators.rollout`), with one env or
``envs_per_worker`` in lock-step.  That is the only shard logic: where it runs is the
*executor*'s choice, a strategy behind one small interface (:class:`Executor`):

- :class:`InProcess`: in the caller's process (an agent instance passed to ``evaluate``);
- :class:`~vlaeval.evaluators.workers.LocalWorkers`: supervised worker processes on this machine;
- :class:`~vlaeval.evaluators.ray_executor.RayExecutor`: Ray tasks.

Every executor yields the same events to the runner: ``("ready", payload)`` once, ``("record",
EpisodeRecord)`` once per episode, and ``("retry", text)`` when it replaced a lost worker or
task.  Executors that run several shards, or run one again after losing it, merge their events
with :class:`EventMerge`.

The setup every shard (and ``vlaeval record``, and RL fine-tuning) does once is a
:class:`Pairing`: an agent negotiated with a suite, which starts the suite's environments with
the user-facing error for a simulator that cannot start and binds agents to them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, TypeVar

from vlaeval.agents.base import AgentContext, is_batched
from vlaeval.agents.resolve import agent_spec_of, make_agent
from vlaeval.conventions import AgentSpec, ConventionError, negotiate
from vlaeval.envs.pool import EnvPool, SyncEnvPool
from vlaeval.envs.suite import EpisodeSpec, Suite, SuiteSpec, registered_env_metadata
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.guards import watched_setup
from vlaeval.evaluators.rollout import EpisodeContext, Observer, play
from vlaeval.evaluators.video import VideoPlan, VideoRecorder
from vlaeval.plugins.manager import load_suite, suite_spec
from vlaeval.results.fingerprint import observation_shapes
from vlaeval.results.store import canonical_json

#: What shards and executors yield: ``(kind, payload)``.
Event = tuple[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Everything a worker needs to play some of a run's episodes; picklable (spawned processes, Ray).

    Attributes:
        worker: the worker slot it was dealt to (names it in messages).
        context: the run-level row values and the protocol's limits.
        agent_options: keyword arguments for the agent's constructor.
        episodes: what to play, in order.
        agent: an agent instance built (or given) by the caller, else built by the worker.
        owns_agent: close the agent when the shard ends (not for instances the caller passed in).
        envs_per_worker: lock-step environments (1: one env, one agent call per step).
        env_mode: where those environments run: auto, sync (this process) or async (subprocesses).
        video: the episodes of the run to film (``--video``), or None.
    """

    worker: int
    context: EpisodeContext
    agent_options: Mapping[str, Any]
    episodes: tuple[EpisodeSpec, ...]
    agent: Any = None
    owns_agent: bool = True
    envs_per_worker: int = 1
    env_mode: str = "auto"
    video: VideoPlan | None = None


def negotiated_action_type(agent_spec: AgentSpec, spec: SuiteSpec, agent_name: str) -> str:
    """The action type agent and suite agree on, or every convention mismatch as one user error."""
    try:
        return negotiate(agent_spec, spec.conventions, agent_name=agent_name, suite_name=spec.name)
    except ConventionError as exc:
        raise VlaevalError(str(exc)) from exc


def build_agent(name: str, options: Mapping[str, Any]) -> Any:
    """A named agent, its construction watched by a supervising driver's setup timeout."""
    with watched_setup("agent construction"):
        return make_agent(name, dict(options))


@dataclass(frozen=True)
class Pairing:
    """An agent negotiated with a suite: what is needed to start its environments and bind agents.

    Attributes:
        spec, suite: the suite's spec and implementation.
        setting: the generalization setting played.
        agent: the agent's name (as the run records it); options: its constructor options.
        agent_spec: the conventions the agent declared; action_type: the one agreed on.
    """

    spec: SuiteSpec
    suite: Suite
    setting: str
    agent: str
    options: Mapping[str, Any]
    agent_spec: AgentSpec
    action_type: str

    @classmethod
    def negotiate(cls, spec: SuiteSpec, setting: str, agent: str, options: Mapping[str, Any], agent_spec: AgentSpec) -> Pairing:
        """Pair ``agent`` with ``spec``'s suite (a user error when their conventions do not fit)."""
        action_type = negotiated_action_type(agent_spec, spec, agent)
        return cls(spec, load_suite(spec), setting, agent, options, agent_spec, action_type)

    def start(self, make: Callable[[], T]) -> T:
        """``make()``, where a simulator that fails to start is the user's error naming the suite."""
        try:
            return make()
        except VlaevalError:
            raise
        except Exception as exc:
            raise VlaevalError(f"suite {self.spec.name!r} cannot start its environment: {type(exc).__name__}: {exc}") from exc

    def make_env(self, **overrides: Any) -> Any:
        """One environment from the suite's own factory (``overrides``: see :meth:`Suite.make_env`)."""
        return self.start(lambda: self.suite.make_env(self.setting, self.agent_spec, self.action_type, **overrides))

    def pool(self, size: int, env_mode: str, **overrides: Any) -> EnvPool:
        """``size`` environments for the rollout core: one in this process, or the suite's own batched
        pool (simpler on the GPU: one batched simulator), else ``size`` single envs in this process
        or in subprocesses as ``env_mode`` says (``overrides``: see :meth:`make_env`; a batched pool
        and subprocesses do not take them)."""
        def make_env() -> Any:
            return self.make_env(**overrides)

        if size == 1:
            return SyncEnvPool(make_env, 1)
        from vlaeval.evaluators.envpool import make_pool, resolve_mode

        pool = self.start(lambda: self.suite.batched_pool(self.setting, self.agent_spec, self.action_type, size, env_mode))
        if pool is None:
            pool = make_pool(resolve_mode(env_mode, size, self.agent_spec), size, suite=self.spec.name, setting=self.setting,
                             agent_spec=self.agent_spec, action_type=self.action_type, make_env=make_env)
        return pool

    def bind(self, agent: Any, pool: EnvPool, slot: int | None) -> None:
        """Tell ``agent`` what it plays (``slot``: its env, for privileged agents; None for a
        batched agent, which serves every slot)."""
        bind = getattr(agent, "bind", None)  # optional for duck-typed agents
        if not callable(bind):
            return
        with watched_setup("agent.bind()"):
            bind(AgentContext(suite=self.spec.name, setting=self.setting, action_type=self.action_type,
                              action_space=pool.action_space, observation_space=pool.observation_space,
                              env=None if slot is None else pool.unwrapped(slot), options=dict(self.options)))

    def ready(self, agent: Any, pool: EnvPool, **layout: Any) -> dict[str, Any]:
        """The ``ready`` payload: what the run's manifest records about the agent, and the
        environment's facts the protocol fingerprint needs (the driver takes them out)."""
        return {"name": self.agent, "class": f"{type(agent).__module__}.{type(agent).__qualname__}",
                "spec": dataclasses.asdict(self.agent_spec), "action_type": self.action_type, **layout,
                "env": self.env_facts(pool)}

    def env_facts(self, pool: EnvPool) -> dict[str, Any]:
        """What the protocol fingerprint needs from the environments, which only a worker has
        built: the observation shapes they really have, their control rate and construction options.

        A pool has no ``metadata``; the registered environment class's is the same for every slot,
        so one-env and batched runs fingerprint alike.  Values become plain JSON here, so the
        payload pickles to the driver whatever a suite puts in its options.
        """
        metadata = getattr(pool, "metadata", None) or registered_env_metadata(self.spec)
        kwargs = self.suite.env_kwargs(self.spec.setting(self.setting), self.agent_spec, self.action_type)
        return {"observation_shapes": observation_shapes(pool.observation_space), "control_hz": metadata.get("render_fps"),
                "env_kwargs": json.loads(canonical_json(kwargs))}


def play_shard(shard: Shard, observers: Sequence[Observer] = ()) -> Iterator[Event]:
    """Build a shard's environments and agent(s), then play its episodes; yield the runner's events
    (``("started", index)`` too, which a supervising driver needs to charge a dying worker).

    ``observers`` watch the rollouts beside the shard's own (its :class:`VideoRecorder`, when it
    films episodes); they are built where the shard runs, since a shard travels pickled.
    """
    ctx = shard.context
    first = shard.agent if shard.agent is not None else build_agent(ctx.agent, shard.agent_options)
    agents = [first]
    owned = [first] if shard.owns_agent else []
    pool = recorder = None
    try:
        pairing = Pairing.negotiate(suite_spec(ctx.suite), ctx.setting, ctx.agent, shard.agent_options, agent_spec_of(first))
        n = min(shard.envs_per_worker, len(shard.episodes))
        batched = n > 1 and is_batched(first)
        video = shard.video.only(shard.episodes) if shard.video is not None else None
        if video is None:
            pool = pairing.pool(n, shard.env_mode)
        else:  # frames come from render(), which needs the envs here (results do not depend on env_mode)
            pool = pairing.pool(n, "sync" if shard.env_mode == "auto" else shard.env_mode, render_mode="rgb_array")
            recorder = VideoRecorder(video, pool)
            observers = (*observers, recorder)
        if n > 1 and not batched:
            agents += [_another(shard, n) for _ in range(n - 1)]  # one state per env: an instance each
            owned += agents[1:]
        for slot, agent in enumerate(agents):
            pairing.bind(agent, pool, None if batched else slot)
        layout = {"batched": batched, "envs_per_worker": n, "env_mode": pool.kind} if n > 1 else {}
        yield "ready", pairing.ready(first, pool, **layout)
        for kind, payload in play(pool, agents, shard.episodes, max_steps=ctx.max_steps, step_timeout=ctx.step_timeout,
                                  batched=batched, observers=observers):
            yield ("record", ctx.record(payload)) if kind == "ended" else (kind, payload)
    finally:
        if recorder is not None:
            recorder.close()
        if pool is not None:
            pool.close()
        for agent in owned:
            if callable(getattr(agent, "close", None)):
                agent.close()


def _another(shard: Shard, n: int) -> Any:
    """One more instance of the shard's agent, for an agent that cannot serve several envs at once."""
    if shard.agent is None:
        return build_agent(shard.context.agent, shard.agent_options)
    try:
        return copy.deepcopy(shard.agent)
    except Exception as exc:
        raise VlaevalError(
            f"{type(shard.agent).__name__} has no act_batch()/reset_slot() and cannot be copied for {n} environments "
            f"({type(exc).__name__}: {exc}); pass the agent by name or use --envs-per-worker 1"
        ) from exc


class Executor(Protocol):
    """Where shards run: ``run`` plays them all and yields the runner's events (see the module docstring)."""

    def run(self, shards: Sequence[Shard]) -> Iterator[Event]: ...


class InProcess:
    """Shards played in this process, one after the other: for an agent instance the caller
    passed in, which is the caller's own code (no copy, no pickling, its state stays live)."""

    def run(self, shards: Sequence[Shard]) -> Iterator[Event]:
        for shard in shards:
            for kind, payload in play_shard(shard):
                if kind != "started":  # only a supervising driver charges episodes in flight
                    yield kind, payload


class EventMerge:
    """One event stream out of several shards' and retried copies of them: the first ``ready``
    only, and each episode's record once (a shard retried after it was lost may play again an
    episode whose record already arrived)."""

    def __init__(self) -> None:
        self.ready = False
        self.done: set[int] = set()

    def accept(self, kind: str, payload: Any) -> bool:
        """Whether the runner should see this ``ready`` or ``record`` event."""
        if kind == "ready":
            first, self.ready = not self.ready, True
            return first
        if payload.episode in self.done:
            return False
        self.done.add(payload.episode)
        return True
