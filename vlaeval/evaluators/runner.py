"""Running an evaluation: resolve, shard, execute, store, resume.

Episodes are fully determined up front (:meth:`Suite.episodes`), each with its own seed, and the
agent is re-seeded and reset at every episode; so an episode's result depends only on its spec,
never on which worker plays it or what that worker played before.  Sharding them round-robin
over W workers (local processes, or Ray tasks with ``executor="ray"``), each with its own
environments and agent, therefore gives the same results as W = 1, and so does playing N
episodes at once in lock-step environments with batched inference (``envs_per_worker``; see
:mod:`vlaeval.evaluators.rollout`).  Where shards run is an executor's choice
(:mod:`vlaeval.evaluators.executors`).  The driver is the only writer: every finished episode is
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

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vlaeval.agents.resolve import agent_spec_of
from vlaeval.conventions import AgentSpec
from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.config import RunConfig, _fingerprint
from vlaeval.evaluators.executors import Event, Executor, InProcess, Shard, negotiated_action_type
from vlaeval.evaluators.guards import DEFAULT_STEP_TIMEOUT
from vlaeval.evaluators.manifest import _new_run_id, _now, _Provenance, _start_manifest
from vlaeval.evaluators.resume import _check_finished, _resumed_run
from vlaeval.evaluators.rollout import EpisodeContext
from vlaeval.evaluators.until import _default_episodes, _sequential_run
from vlaeval.evaluators.video import VideoPlan, episodes_to_record, require_writer
from vlaeval.plugins.manager import load_suite, suite_spec
from vlaeval.results.sequential import Decision, SequentialRun, StoppingRule
from vlaeval.results.store import EpisodeRecord, ResultStore, write_manifest

#: Seconds agent construction and ``bind()`` may each take in a worker (real models load slowly).
DEFAULT_SETUP_TIMEOUT = 600.0


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
    """The outcome of :func:`evaluate`: where it was stored and the per-episode table (for a run
    its sequential test decided, of the episodes the test saw: :func:`~vlaeval.results.report.counted_results`)."""

    run_id: str
    run_dir: Path
    results: Any  # pandas.DataFrame
    chain_length: int = 1
    decision: Decision | None = None  # the sequential test's, for runs with --until decided

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
    until: StoppingRule | None = None,
    video: int = 0,
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
        until: stop as soon as this sequential test decides (``--until decided``), status
            ``decided``.  Episodes play in seeded order and only the contiguous prefix of finished
            ones is tested, so the verdict and its episode count do not depend on ``workers``; with
            several workers a few episodes past it may finish and are stored too.  With
            ``against`` and no ``episodes``, the run plans the reference run's episodes.  A resumed
            run continues its saved test (``until`` may be repeated, not changed).
        video: film the first ``video`` episodes of each task (of a chain's first subtask) into
            ``RUN_DIR/videos/episode-<index>.mp4`` (needs the ``video`` extra).  Frames are
            rendered beside the agent's observations, never instead of them, so results do not
            depend on it; it is recorded per session in the manifest, not in the configuration a
            resume checks: a resumed session films only the chosen episodes it plays itself.
    """
    from vlaeval.plugins.manager import plugin_manager

    _check_arguments(workers, envs_per_worker, executor, env_mode, address, step_timeout, setup_timeout, video)
    instance = None if isinstance(agent, str) else agent
    run_dir, run_id, manifest, config, spec = _resolve_run(agent, suite, setting=setting, episodes=episodes, seed=seed, out=out,
                                                           resume=resume, agent_options=agent_options, step_timeout=step_timeout,
                                                           run_id=run_id, until=until)

    owns_agent = instance is None
    _preflight(instance, config, spec)
    ray_session = None
    if executor == "ray":
        from vlaeval.evaluators.ray_executor import RaySession

        ray_session = RaySession(address)  # join (or start) Ray before a run directory exists
    suite_impl = load_suite(spec)
    protocol_episodes = list(suite_impl.episodes(config.setting, config.seed))
    all_episodes = protocol_episodes[: config.episodes]
    fingerprint = _fingerprint(config, spec)
    store = ResultStore(run_dir, config_hash=fingerprint["config_hash"])
    done = store.completed()  # read-only: a damaged log or an edited manifest stops the run before anything changes
    _check_finished(run_dir, manifest, fingerprint, done, all_episodes)
    sequential = _sequential_run(run_dir, manifest, config, spec, all_episodes, done)
    store.repair(done)
    decided = sequential is not None and sequential.decision.decided  # e.g. a decided run resumed: nothing left to play
    pending = () if decided else tuple(e for e in all_episodes if e.index not in done)

    manifest = _start_manifest(manifest, run_id, config, spec, workers, len(pending))
    manifest["fingerprint"] = fingerprint  # checked above; runs from older versions (or without rows) adopt it
    provenance = _Provenance(manifest, config, spec, all_episodes, protocol_episodes)
    if sequential is not None:
        manifest["stopping"] = sequential.record()  # from the first write on: a killed run's resume checks its reference too
    manifest["sessions"][-1].update({"envs_per_worker": envs_per_worker, "executor": executor, "setup_timeout": setup_timeout,
                                     "video": video})
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
    plan = VideoPlan(str(run_dir), episodes_to_record(all_episodes, video)) if video else None
    jobs = _jobs(run_id, config, pending, workers, instance, owns_agent, envs_per_worker, env_mode, plan)
    events = _execute(jobs, setup_timeout, ray_session)
    try:
        for kind, payload in events:
            if kind == "ready":
                visible = True
                provenance.ready(payload)  # takes the environment's facts out of the payload
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
            if provenance.poll():
                write_manifest(run_dir, manifest)
            if sequential is not None and sequential.add(payload.episode, float(payload.success)).decided:
                break  # the finally below closes the executor: pending episodes are cancelled
        status = "decided" if sequential is not None and sequential.decision.decided else "finished"
    except VlaevalError:
        status = "failed"
        raise
    finally:
        events.close()  # stop workers / cancel Ray tasks now, not when the generator is collected
        if ray_session is not None:
            ray_session.close()
        if bar is not None:
            bar.close()
        _end_session(run_dir, manifest, status, visible=visible, provenance=provenance, sequential=sequential)

    store.write_parquet()
    from vlaeval.results.report import counted_results

    results = counted_results(run_dir)
    hooks.vlaeval_run_finished(run=info, results=results)
    return RunResult(run_id, run_dir, results, spec.protocol.chain_length, sequential.decision if sequential is not None else None)


def _check_arguments(workers: int, envs_per_worker: int, executor: str, env_mode: str, address: str | None, step_timeout: float,
                     setup_timeout: float, video: int) -> None:
    """Refuse arguments that cannot work, before anything is read or started (see :func:`evaluate`)."""
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
    if video < 0:
        raise VlaevalError(f"--video must be >= 0 episodes per task, not {video}")
    if video:
        require_writer()


def _resolve_run(agent: Any, suite: str | None, *, setting: str | None, episodes: int | None, seed: int | None,
                 out: str | os.PathLike[str], resume: str | os.PathLike[str] | None, agent_options: Mapping[str, Any] | None,
                 step_timeout: float, run_id: str | None, until: StoppingRule | None,
                 ) -> tuple[Path, str, dict[str, Any], RunConfig, SuiteSpec]:
    """The run to play: a resumed one (its saved config, checked against the arguments) or a new one.

    Returns its directory, id, manifest (empty for a new run), config and suite.
    """
    if resume is not None:
        run_dir = Path(resume)
        manifest, config = _resumed_run(run_dir, agent, suite, until, episodes)
        run_id = manifest["run_id"]
    else:
        if suite is None:
            raise VlaevalError("no suite given: pass --suite (see `vlaeval suites`)")
        manifest = {}
        config = None
    spec: SuiteSpec = suite_spec(config.suite if config else suite)
    if config is None:
        setting_obj = spec.setting(setting)
        n = _default_episodes(spec, until) if episodes is None else episodes
        if not 1 <= n <= spec.protocol.episodes:
            raise VlaevalError(f"--episodes must be between 1 and {spec.protocol.episodes} for suite {spec.name!r}, not {n}")
        agent_name = agent if isinstance(agent, str) else type(agent).__name__
        config = RunConfig(
            agent_name, spec.name, setting_obj.name, n, spec.protocol.seed if seed is None else seed, step_timeout, dict(agent_options or {}),
            until,
        )
        run_id = run_id or _new_run_id(spec.name, agent_name)
        run_dir = Path(out) / run_id
        if (run_dir / "manifest.json").exists():
            raise VlaevalError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick another --out")
    return run_dir, run_id, manifest, config, spec


def _end_session(run_dir: Path, manifest: dict[str, Any], status: str, *, visible: bool, provenance: _Provenance,
                 sequential: SequentialRun | None) -> None:
    """Record how this session ended in the manifest (written once the run is visible)."""
    provenance.finish(wait=status in ("finished", "decided"))
    if sequential is not None:
        manifest["stopping"] = sequential.record()
    manifest["status"] = status
    manifest["sessions"][-1]["ended"] = _now()
    manifest["finished_at"] = _now() if status in ("finished", "decided") else None
    if visible:
        write_manifest(run_dir, manifest)
    if status == "interrupted":
        print(f"run interrupted; finish it with: vlaeval run --resume {run_dir}" if visible
              else "run interrupted before the agent was ready; nothing was stored", file=sys.stderr)


def _jobs(run_id: str, config: RunConfig, pending: Sequence[EpisodeSpec], workers: int, instance: Any, owns_agent: bool,
          envs_per_worker: int = 1, env_mode: str = "auto", video: VideoPlan | None = None) -> list[Shard]:
    """The shards: pending episodes dealt round-robin over at most ``workers`` of them."""
    spec = suite_spec(config.suite)
    ctx = EpisodeContext(run_id, config.agent, spec.name, spec.version, config.setting, spec.protocol.max_steps, config.step_timeout)
    workers = min(workers, len(pending))
    return [Shard(w, ctx, dict(config.agent_options), tuple(pending[w::workers]), instance, owns_agent, envs_per_worker, env_mode,
                  video)
            for w in range(workers)]


def _execute(shards: Sequence[Shard], setup_timeout: float, ray_session: Any) -> Iterator[Event]:
    """The shards' events, from the executor that fits.

    Named agents always play in supervised worker processes (or Ray tasks); an instance the
    caller passed in plays in this process when there is a single shard (see the module docstring).
    """
    executor: Executor
    if ray_session is not None:
        from vlaeval.evaluators.ray_executor import RayExecutor

        executor = RayExecutor(ray_session)
    elif len(shards) == 1 and shards[0].agent is not None:
        executor = InProcess()
    else:
        from vlaeval.evaluators.workers import LocalWorkers

        executor = LocalWorkers(setup_timeout=setup_timeout)
    return executor.run(shards)


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
        negotiated_action_type(agent_spec_of(instance), spec, config.agent)
        return
    agents = registries().agent
    if config.agent in agents:
        target = agents.get(config.agent).load()
        declared = getattr(target, "spec", None)
        if isinstance(declared, AgentSpec):  # not a per-instance property
            negotiated_action_type(declared, spec, config.agent)
        preflight = getattr(target, "preflight", None)
        if callable(preflight):
            preflight(dict(config.agent_options))
    elif ":" not in config.agent and not Path(config.agent).exists():  # no name, URI, module:attr or path: a typo
        agents.get(config.agent)  # raises the did-you-mean error before a worker is spawned



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
