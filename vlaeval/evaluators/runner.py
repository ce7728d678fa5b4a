"""Running an evaluation: resolve, shard, execute, store, resume.

Episodes are fully determined up front (:meth:`Suite.episodes`), each with its own seed, and the
agent is re-seeded and reset at every episode; so an episode's result depends only on its spec,
never on which worker plays it or what that worker played before.  Sharding them round-robin
over W workers (local processes, or Ray tasks with ``executor="ray"``), each with its own
environments and agent, therefore gives the same results as W = 1, and so does playing N
episodes at once in lock-step environments with batched inference (``envs_per_worker``; see
:mod:`vlaeval.evaluators.batched`).  The driver is the only writer: every finished episode is
stored durably (and deduplicated by index) before the next is counted, which is what makes
``--resume`` and the Ray executor's retries of lost shards exact.

The driver never runs a named agent's code: even with one worker (and for the last pending
episode) the agent is built and played in a spawned worker process supervised by
:mod:`vlaeval.evaluators.workers`, so an agent that kills its process, ignores the step timeout
or hangs while loading fails only its episode (or, during setup, the run with a clear error),
never the process that holds the results store.  An agent *instance* passed by a Python caller
(``vlaeval.evaluate(my_policy, "calvin")`` in a training loop) is the caller's own code and, with
one worker, runs in the caller's process as before: no copy of a possibly large model, no pickling
requirement, and the caller's own state (e.g. counters) stays live; the out-of-process guards (a
killed worker, the external step watchdog, the setup timeout) do not apply to it then.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import os
import platform
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from vlaeval.agents.base import AgentContext, is_batched
from vlaeval.agents.resolve import agent_spec_of, make_agent
from vlaeval.conventions import AgentSpec, ConventionError, negotiate
from vlaeval.envs.suite import EpisodeSpec, Suite, SuiteSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.episode import EpisodeContext, run_episode, watched_setup
from vlaeval.results.store import EpisodeRecord, ResultStore, canonical_json, config_hash, read_manifest, write_manifest

DEFAULT_STEP_TIMEOUT = 60.0
#: Seconds agent construction and ``bind()`` may each take in a worker (real models load slowly).
DEFAULT_SETUP_TIMEOUT = 600.0
TRACKED_PACKAGES = ("numpy", "gymnasium", "pluggy", "pandas", "pybullet", "torch", "transformers", "onnxruntime", "mani_skill")


@dataclass(frozen=True)
class RunConfig:
    """The resolved configuration of a run, saved in its manifest and reused by ``--resume``."""

    agent: str
    suite: str
    setting: str
    episodes: int
    seed: int
    step_timeout: float = DEFAULT_STEP_TIMEOUT
    agent_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """What observer hooks learn about a run."""

    run_id: str
    run_dir: Path
    config: RunConfig
    suite: SuiteSpec
    total: int
    pending: int


@dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`evaluate`: where it was stored and the per-episode table."""

    run_id: str
    run_dir: Path
    results: Any  # pandas.DataFrame
    chain_length: int = 1

    def summary(self) -> dict[str, float]:
        """Headline numbers (success rate; average chain length for chained suites)."""
        frame = self.results
        if frame.empty:
            return {}
        per_episode = frame.groupby("episode")
        out = {"episodes": float(per_episode.ngroups), "success_rate": float(per_episode["success"].all().mean())}
        if self.chain_length > 1:
            from vlaeval.results.metrics import chain_lengths

            out["avg_len"] = float(chain_lengths(frame).mean())
        return out


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs, picklable for spawned processes."""

    worker: int
    run_id: str
    config: RunConfig
    episodes: tuple[EpisodeSpec, ...]
    agent: Any = None  # an agent instance built (or given) in the main process, else built by the worker
    owns_agent: bool = True  # close the agent when the shard ends (not for instances the caller passed in)
    envs_per_worker: int = 1  # lock-step environments in this worker (1 = the sequential loop)
    env_mode: str = "auto"  # where those environments run: auto, sync (this process) or async (subprocesses)


def evaluate(
    agent: Any,
    suite: str | None = None,
    *,
    setting: str | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    workers: int = 1,
    out: str | os.PathLike[str] = "runs",
    resume: str | os.PathLike[str] | None = None,
    agent_options: Mapping[str, Any] | None = None,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    progress: bool = True,
    run_id: str | None = None,
    envs_per_worker: int = 1,
    executor: str = "local",
    address: str | None = None,
    env_mode: str = "auto",
    setup_timeout: float = DEFAULT_SETUP_TIMEOUT,
) -> RunResult:
    """Evaluate an agent on a suite and return the per-episode results.

    Args:
        agent: a registered agent name, an agent URI (``ws://host:port``, ``module:attr``), or an
            agent instance (e.g. the policy inside a training loop).
        suite: registered suite name (optional with ``resume``).
        setting: generalization setting (default: the suite's first).
        episodes: evaluate the first N episodes of the protocol (default: all).
        seed: base seed (default: the suite protocol's).
        workers: local processes running episodes in parallel; results do not depend on it.
        out: parent directory of new run directories.
        resume: a run directory to finish; its saved config is reused.  With ``episodes`` larger
            than the run's, the run is extended to the first ``episodes`` (the episode list is
            fixed, so the finished ones stay valid and only the new ones are played).
        agent_options: keyword arguments for the agent's constructor.
        step_timeout: seconds one agent call may take before the episode fails (0 = no limit).
        progress: show a progress bar.
        run_id: name of the run directory (default: timestamp, suite and agent).
        envs_per_worker: environments each worker steps in lock-step, with one batched agent call
            per step for agents that support it (:func:`vlaeval.agents.base.is_batched`) and one
            agent instance per environment otherwise; results do not depend on it.
        executor: ``local`` (worker processes on this machine) or ``ray`` (Ray tasks; needs the
            ``ray`` extra).  Results do not depend on it.
        address: Ray cluster to join (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``); default: the
            Ray instance already initialised in this process, else a new local one.
        env_mode: with ``envs_per_worker > 1``, run the environments in this process (``sync``)
            or one subprocess each (``async``); ``auto`` picks async unless the agent is
            privileged (reads the simulator).
        setup_timeout: seconds agent construction and ``bind()`` may each take in a worker
            before the run fails (0 = no limit); not applied to an agent instance run in-process.
    """
    from vlaeval.plugins.manager import plugin_manager, registries

    if workers < 1:
        raise VlaevalError(f"--workers must be at least 1, not {workers}")
    if envs_per_worker < 1:
        raise VlaevalError(f"--envs-per-worker must be at least 1, not {envs_per_worker}")
    if executor not in ("local", "ray"):
        raise VlaevalError(f"--executor must be local or ray, not {executor!r}")
    if env_mode not in ("auto", "sync", "async"):
        raise VlaevalError(f"--env-mode must be auto, sync or async, not {env_mode!r}")
    if address is not None and executor != "ray":
        raise VlaevalError("--address is the Ray cluster to use: pass it with --executor ray")
    if executor == "ray":
        from vlaeval.evaluators.ray_executor import import_ray

        import_ray(address)  # fail at once when ray is missing
    if step_timeout < 0:
        raise VlaevalError(f"--step-timeout must be >= 0 seconds, not {step_timeout}")
    if setup_timeout < 0:
        raise VlaevalError(f"--setup-timeout must be >= 0 seconds, not {setup_timeout}")
    instance = None if isinstance(agent, str) else agent
    if resume is not None:
        run_dir = Path(resume)
        manifest = read_manifest(run_dir)
        config = _config_from_manifest(manifest, run_dir)
        for given, saved, what in ((agent if isinstance(agent, str) else None, config.agent, "agent"), (suite, config.suite, "suite")):
            if given is not None and given != saved:
                raise VlaevalError(f"{run_dir} is a run of {what} {saved!r}, not {given!r}; drop --{what} or start a new run")
        if episodes is not None and episodes != config.episodes:
            available = spec_of(config.suite).protocol.episodes
            if not config.episodes < episodes <= available:
                raise VlaevalError(
                    f"{run_dir} evaluates {config.episodes} episodes; --resume can extend it to more "
                    f"(up to {available}), not change it to {episodes}"
                )
            config = dataclasses.replace(config, episodes=episodes)
            manifest["config"] = dataclasses.asdict(config)
        run_id = manifest["run_id"]
    else:
        if suite is None:
            raise VlaevalError("no suite given: pass --suite (see `vlaeval suites`)")
        manifest = {}
        config = None
    spec: SuiteSpec = spec_of(config.suite if config else suite)
    if config is None:
        setting_obj = spec.setting(setting)
        n = spec.protocol.episodes if episodes is None else episodes
        if not 1 <= n <= spec.protocol.episodes:
            raise VlaevalError(f"--episodes must be between 1 and {spec.protocol.episodes} for suite {spec.name!r}, not {n}")
        agent_name = agent if isinstance(agent, str) else type(agent).__name__
        config = RunConfig(
            agent_name, spec.name, setting_obj.name, n, spec.protocol.seed if seed is None else seed, step_timeout, dict(agent_options or {})
        )
        run_id = run_id or _new_run_id(spec.name, agent_name)
        run_dir = Path(out) / run_id
        if (run_dir / "manifest.json").exists():
            raise VlaevalError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick another --out")

    owns_agent = instance is None
    _preflight(instance, config, spec)
    ray_session = None
    if executor == "ray":
        from vlaeval.evaluators.ray_executor import RaySession

        ray_session = RaySession(address)  # join (or start) Ray before a run directory exists
    suite_impl = _load_suite(spec)
    all_episodes = list(suite_impl.episodes(config.setting, config.seed))[: config.episodes]
    fingerprint = _fingerprint(config, spec)
    store = ResultStore(run_dir, config_hash=fingerprint["config_hash"])
    done = store.completed()  # read-only: a damaged log or an edited manifest stops the run before anything changes
    _check_finished(run_dir, manifest, fingerprint, done, all_episodes)
    store.repair(done)
    pending = tuple(e for e in all_episodes if e.index not in done)

    manifest = _start_manifest(manifest, run_id, config, spec, workers, len(pending))
    manifest["fingerprint"] = fingerprint  # checked above; runs from older versions (or without rows) adopt it
    manifest["sessions"][-1].update({"envs_per_worker": envs_per_worker, "executor": executor, "setup_timeout": setup_timeout})
    # A new run's directory appears once its agent is ready: an agent that cannot be built or
    # bound (missing weights, a bad option) fails the run without leaving an empty run behind.
    visible = resume is not None
    if visible:
        write_manifest(run_dir, manifest)
    info = RunInfo(run_id, run_dir, config, spec, len(all_episodes), len(pending))
    hooks = plugin_manager().hook
    hooks.vlaeval_run_started(run=info)

    bar = None
    tally = _Tally(chained=spec.protocol.chain_length > 1, records=list(done.values()))
    stored = set(done)
    status = "interrupted"
    jobs = _jobs(run_id, config, pending, workers, instance, owns_agent, envs_per_worker, env_mode)
    if executor == "ray":
        from vlaeval.evaluators.ray_executor import execute_ray

        events = execute_ray(jobs, ray_session)
    else:
        events = _execute(jobs, _episode_context(run_id, config, spec), setup_timeout)
    try:
        for kind, payload in events:
            if kind == "ready":
                visible = True
                manifest.setdefault("agent", payload)
                write_manifest(run_dir, manifest)
                if bar is None:
                    bar = _progress_bar(len(all_episodes), len(done), spec, enabled=progress)
                continue
            if kind == "retry":
                manifest["sessions"][-1].setdefault("retries", []).append(payload)
                write_manifest(run_dir, manifest)
                print(f"warning: {payload}", file=sys.stderr)
                continue
            if payload.episode in stored:  # single writer: a retried shard never duplicates a row
                continue
            stored.add(payload.episode)
            store.append(payload)
            hooks.vlaeval_episode_finished(run=info, record=payload)
            tally.add(payload)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(tally.text(), refresh=False)
        status = "finished"
    except VlaevalError:
        status = "failed"
        raise
    finally:
        events.close()  # stop workers / cancel Ray tasks now, not when the generator is collected
        if ray_session is not None:
            ray_session.close()
        if bar is not None:
            bar.close()
        manifest["status"] = status
        manifest["sessions"][-1]["ended"] = _now()
        manifest["finished_at"] = _now() if status == "finished" else None
        if visible:
            write_manifest(run_dir, manifest)
        if status == "interrupted":
            print(f"run interrupted; finish it with: vlaeval run --resume {run_dir}" if visible
                  else "run interrupted before the agent was ready; nothing was stored", file=sys.stderr)

    store.write_parquet()
    from vlaeval.results.store import load_results

    results = load_results(run_dir)
    hooks.vlaeval_run_finished(run=info, results=results)
    return RunResult(run_id, run_dir, results, spec.protocol.chain_length)


def _jobs(run_id: str, config: RunConfig, pending: Sequence[EpisodeSpec], workers: int, instance: Any, owns_agent: bool,
          envs_per_worker: int = 1, env_mode: str = "auto") -> list[_Job]:
    """The shards: pending episodes dealt round-robin over at most ``workers`` jobs."""
    workers = min(workers, len(pending))
    return [_Job(w, run_id, config, tuple(pending[w::workers]), instance, owns_agent, envs_per_worker, env_mode) for w in range(workers)]


def _execute(jobs: Sequence[_Job], ctx: EpisodeContext, setup_timeout: float) -> Iterator[tuple[str, Any]]:
    """Yield ``("ready", agent_info)``, ``("record", EpisodeRecord)`` and ``("retry", text)`` events from the shards.

    Named agents always play in supervised worker processes; an instance the caller passed in
    plays in this process when there is a single shard (see the module docstring).
    """
    if not jobs:
        return
    if len(jobs) == 1 and jobs[0].agent is not None:
        for kind, payload in _run_shard(jobs[0]):
            if kind != "started":
                yield kind, payload
        return
    from vlaeval.evaluators.workers import supervise

    yield from supervise(jobs, ctx, setup_timeout=setup_timeout)


def _run_shard(job: _Job) -> Iterator[tuple[str, Any]]:
    """Build one env and one agent, then play this shard's episodes in order."""
    if job.envs_per_worker > 1 and len(job.episodes) > 1:
        yield from _run_shard_batched(job)
        return

    config = job.config
    spec: SuiteSpec = spec_of(config.suite)
    suite_impl = _load_suite(spec)
    agent = job.agent if job.agent is not None else _build_agent(config)
    agent_spec = agent_spec_of(agent)
    action_type = _negotiate(agent_spec, config, spec)
    try:
        env = suite_impl.make_env(config.setting, agent_spec, action_type)
    except VlaevalError:
        raise
    except Exception as exc:
        raise VlaevalError(f"suite {spec.name!r} cannot start its environment: {type(exc).__name__}: {exc}") from exc
    try:
        bind = getattr(agent, "bind", None)  # optional for duck-typed agents
        if callable(bind):
            with watched_setup("agent.bind()"):
                bind(
                    AgentContext(
                        suite=spec.name,
                        setting=config.setting,
                        action_type=action_type,
                        action_space=env.action_space,
                        observation_space=env.observation_space,
                        env=env.unwrapped,
                        options=dict(config.agent_options),
                    )
                )
        yield "ready", {"name": config.agent, "class": f"{type(agent).__module__}.{type(agent).__qualname__}",
                        "spec": dataclasses.asdict(agent_spec), "action_type": action_type}
        ctx = _episode_context(job.run_id, config, spec)
        for episode in job.episodes:
            yield "started", episode.index  # before the agent touches it: a dying worker is charged this episode
            yield "record", run_episode(env, agent, episode, ctx)
    finally:
        env.close()
        if job.owns_agent and callable(getattr(agent, "close", None)):
            agent.close()


def _run_shard_batched(job: _Job) -> Iterator[tuple[str, Any]]:
    """Build ``envs_per_worker`` envs and a batched agent (or one agent per env), play the shard in lock-step."""
    import copy

    from vlaeval.evaluators.batched import run_batched
    from vlaeval.evaluators.envpool import make_pool, resolve_mode

    config = job.config
    spec: SuiteSpec = spec_of(config.suite)
    suite_impl = _load_suite(spec)
    n = min(job.envs_per_worker, len(job.episodes))
    first = job.agent if job.agent is not None else _build_agent(config)
    agents = [first]
    owned = [first] if job.owns_agent else []
    pool = None
    try:
        agent_spec = agent_spec_of(first)
        action_type = _negotiate(agent_spec, config, spec)
        batched = is_batched(first)

        def start(make: Callable[[], Any]) -> Any:
            try:
                return make()
            except VlaevalError:
                raise
            except Exception as exc:
                raise VlaevalError(f"suite {spec.name!r} cannot start its environment: {type(exc).__name__}: {exc}") from exc

        def make_env() -> Any:
            return start(lambda: suite_impl.make_env(config.setting, agent_spec, action_type))

        # A suite that simulates many envs in one batched simulator (simpler on the GPU) offers its own pool.
        pool = start(lambda: suite_impl.batched_pool(config.setting, agent_spec, action_type, n, job.env_mode))
        if pool is None:
            mode = resolve_mode(job.env_mode, n, agent_spec)
            pool = make_pool(mode, n, suite=spec.name, setting=config.setting, agent_spec=agent_spec, action_type=action_type, make_env=make_env)
        mode = pool.kind
        if not batched:
            for _ in range(n - 1):  # one state per env: an instance each
                if job.agent is None:
                    extra = _build_agent(config)
                else:
                    try:
                        extra = copy.deepcopy(job.agent)
                    except Exception as exc:
                        raise VlaevalError(
                            f"{type(job.agent).__name__} has no act_batch()/reset_slot() and cannot be copied for "
                            f"{n} environments ({type(exc).__name__}: {exc}); pass the agent by name or use --envs-per-worker 1"
                        ) from exc
                agents.append(extra)
                owned.append(extra)
        for slot, agent in enumerate(agents):
            bind = getattr(agent, "bind", None)
            if callable(bind):
                with watched_setup("agent.bind()"):
                    bind(
                        AgentContext(
                            suite=spec.name,
                            setting=config.setting,
                            action_type=action_type,
                            action_space=pool.action_space,
                            observation_space=pool.observation_space,
                            env=None if batched else pool.unwrapped(slot),
                            options=dict(config.agent_options),
                        )
                    )
        yield "ready", {"name": config.agent, "class": f"{type(first).__module__}.{type(first).__qualname__}",
                        "spec": dataclasses.asdict(agent_spec), "action_type": action_type,
                        "batched": batched, "envs_per_worker": n, "env_mode": mode}
        yield from run_batched(pool, agents, job.episodes, _episode_context(job.run_id, config, spec), batched=batched)
    finally:
        if pool is not None:
            pool.close()
        for agent in owned:
            if callable(getattr(agent, "close", None)):
                agent.close()


def _build_agent(config: RunConfig) -> Any:
    with watched_setup("agent construction"):
        return make_agent(config.agent, config.agent_options)


def _episode_context(run_id: str, config: RunConfig, spec: SuiteSpec) -> EpisodeContext:
    return EpisodeContext(run_id, config.agent, spec.name, spec.version, config.setting, spec.protocol.max_steps, config.step_timeout)


def _negotiate(agent_spec: Any, config: RunConfig, spec: SuiteSpec) -> str:
    try:
        return negotiate(agent_spec, spec.conventions, agent_name=config.agent, suite_name=spec.name)
    except ConventionError as exc:
        raise VlaevalError(str(exc)) from exc


def _preflight(instance: Any, config: RunConfig, spec: SuiteSpec) -> None:
    """Fail before a run directory exists when the agent is unknown or its conventions do not fit.

    Workers build their own agents; here only the class-level spec of a registered agent (or the
    instance's) is checked, so a large model is never loaded just to be thrown away.  A registered
    target may also offer ``preflight(options)``, a cheap check of what construction would need
    (``kosmos-lstm``: the pretrained weights in the local cache), run here so that a missing file
    fails in a fraction of a second instead of after a worker has started and imported torch.
    """
    from vlaeval.plugins.manager import registries

    if instance is not None:
        _negotiate(agent_spec_of(instance), config, spec)
        return
    agents = registries().agent
    if config.agent in agents:
        target = agents.get(config.agent).load()
        declared = getattr(target, "spec", None)
        if isinstance(declared, AgentSpec):  # not a per-instance property
            _negotiate(declared, config, spec)
        preflight = getattr(target, "preflight", None)
        if callable(preflight):
            preflight(dict(config.agent_options))
    elif ":" not in config.agent and not Path(config.agent).exists():  # no name, URI, module:attr or path: a typo
        agents.get(config.agent)  # raises the did-you-mean error before a worker is spawned


def _load_suite(spec: SuiteSpec) -> Suite:
    from vlaeval.plugins.registry import import_target

    cls = import_target(spec.target, what=f"suite {spec.name!r}")
    return cls()


class _Tally:
    """Running numbers for the progress bar."""

    def __init__(self, chained: bool, records: list[EpisodeRecord]) -> None:
        self.chained = chained
        self.n = self.successes = self.lengths = 0
        for r in records:
            self.add(r)

    def add(self, record: EpisodeRecord) -> None:
        self.n += 1
        self.successes += record.success
        self.lengths += record.chain_length

    def text(self) -> str:
        if not self.n:
            return ""
        if self.chained:
            return f"avg_len={self.lengths / self.n:.2f} full_chains={self.successes / self.n:.0%}"
        return f"success={self.successes / self.n:.0%}"


def _progress_bar(total: int, initial: int, spec: SuiteSpec, *, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    unit = "chain" if spec.protocol.chain_length > 1 else "episode"
    return tqdm(total=total, initial=initial, unit=unit, desc=spec.name, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)


#: The JSON type of each saved config field.
_CONFIG_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "agent": str, "suite": str, "setting": str, "episodes": int, "seed": int, "step_timeout": (int, float), "agent_options": dict,
}


def _config_from_manifest(manifest: Mapping[str, Any], run_dir: Path) -> RunConfig:
    try:
        config = RunConfig(**manifest["config"])
    except (KeyError, TypeError) as exc:
        raise VlaevalError(f"{run_dir}/manifest.json has no valid run config ({exc}); it cannot be resumed") from exc
    for name, kind in _CONFIG_TYPES.items():  # the manifest is a file people edit
        value = getattr(config, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VlaevalError(f"{run_dir}/manifest.json: config.{name} cannot be {value!r}; restore it to resume the run")
    return config


def _fingerprint(config: RunConfig, spec: SuiteSpec) -> dict[str, Any]:
    """The fields that decide which episodes a run plays and what can happen in them, and their hash.

    Stored in the manifest and stamped in every stored record, so a resume can tell rows of this
    configuration from rows of another.  The episode count is not one of them: ``--resume RUN
    --episodes N`` legitimately extends a run.
    """
    fields = {
        "agent": config.agent, "agent_options": dict(config.agent_options), "suite": config.suite, "suite_version": spec.version,
        "setting": config.setting, "seed": config.seed, "step_timeout": float(config.step_timeout),
    }
    return {"config_hash": config_hash(fields), "fields": fields}


def _check_finished(run_dir: Path, manifest: Mapping[str, Any], fingerprint: Mapping[str, Any], done: Mapping[int, EpisodeRecord],
                    episodes: Sequence[EpisodeSpec]) -> None:
    """Refuse to add episodes to rows that were played under another configuration.

    The manifest is an editable file: resuming after changing its agent, setting or seed would mix
    rows of two configurations in one run.  The rows are the ground truth, so their own columns
    and episode seeds are checked first (all that runs from older versions have), then the
    fingerprint recorded in the manifest (which names the field that changed) and the one stamped
    in each row (which catches a manifest edited together with its fingerprint).
    """
    if not done:
        return  # nothing to mix: the configuration as it stands becomes the run's
    fields, fix = fingerprint["fields"], "restore manifest.json or start a new run"
    seeds = {e.index: e.seed for e in episodes}
    for rec in done.values():
        for row in rec.rows:
            for column in ("agent", "suite", "suite_version", "setting"):
                if row[column] != fields[column]:
                    remedy = f"install version {row[column]!r} of the suite or start a new run" if column == "suite_version" else fix
                    raise VlaevalError(f"{run_dir}: {column} differs: episode {rec.episode} was played with {column} "
                                       f"{row[column]!r}, the run would now use {fields[column]!r}; {remedy}")
        if rec.episode not in seeds:
            raise VlaevalError(f"{run_dir}: episode {rec.episode} is finished but the manifest plans {len(seeds)} episodes; {fix}")
        if rec.seed != seeds[rec.episode]:
            raise VlaevalError(f"{run_dir}: seed differs: episode {rec.episode} was played with episode seed {rec.seed}, "
                               f"the manifest's seed {fields['seed']} gives it {seeds[rec.episode]}; {fix}")
    recorded = manifest.get("fingerprint")
    before = recorded.get("fields") if isinstance(recorded, dict) else None
    if isinstance(before, dict):
        changed = [k for k in fields if k in before and canonical_json(before[k]) != canonical_json(fields[k])]
        if changed:
            raise VlaevalError(f"{run_dir}: {changed[0]} differs: the finished episodes were played with {changed[0]} "
                               f"{canonical_json(before[changed[0]])}, the manifest now says {canonical_json(fields[changed[0]])}; {fix}")
    for rec in done.values():
        if rec.config_hash is not None and rec.config_hash != fingerprint["config_hash"]:
            raise VlaevalError(f"{run_dir}: episode {rec.episode} was played with a different configuration (config_hash "
                               f"{rec.config_hash}, the manifest gives {fingerprint['config_hash']}): the agent options or step "
                               f"timeout differ; {fix}")


def spec_of(suite: str) -> SuiteSpec:
    """The registered suite's spec (a clear error for an unknown name)."""
    from vlaeval.plugins.manager import registries

    return registries().suite.get(suite).spec


def _start_manifest(manifest: dict[str, Any], run_id: str, config: RunConfig, spec: SuiteSpec, workers: int, pending: int) -> dict[str, Any]:
    from vlaeval import __version__

    if not manifest:
        setting = spec.setting(config.setting)
        manifest = {
            "run_id": run_id,
            "vlaeval_version": __version__,
            "config": dataclasses.asdict(config),
            "suite": {
                "name": spec.name,
                "version": spec.version,
                "setting": config.setting,
                "train_scenes": list(setting.train_scenes),
                "protocol": dataclasses.asdict(spec.protocol),
                "env_ids": list(spec.env_ids),
            },
            "seeds": {"base": config.seed, "per_episode": "SeedSequence([base, episode index]); see the seed column"},
            "versions": _versions(spec),
            "git": _git_revision(),
            "host": {"hostname": socket.gethostname(), "user": _user(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "started_at": _now(),
            "finished_at": None,
            "status": "running",
            "sessions": [],
        }
    manifest["status"] = "running"
    manifest["sessions"].append({"started": _now(), "ended": None, "pid": os.getpid(), "workers": workers, "pending": pending})
    return manifest


def _versions(spec: SuiteSpec) -> dict[str, str]:
    from importlib import metadata

    from vlaeval import __version__

    out = {"python": platform.python_version(), "vlaeval": __version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    reported = getattr(_load_suite(spec), "versions", None)  # a suite's simulator may have no package version (calvin_env: a git revision)
    if callable(reported):
        out.update(reported())
    return out


def _git_revision() -> dict[str, Any] | None:
    """The revision of the vlaeval checkout in use, if it is one (editable installs)."""
    src = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _new_run_id(suite: str, agent: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_agent = "".join(c if c.isalnum() or c in "-_" else "_" for c in agent)[:40]
    return f"{stamp}-{suite}-{safe_agent}-{uuid.uuid4().hex[:6]}"
