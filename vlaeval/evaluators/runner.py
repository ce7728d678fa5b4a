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
from typing import Any, Iterator, Mapping, Sequence

from vlaeval.agents.resolve import agent_spec_of
from vlaeval.conventions import AgentSpec
from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.executors import Event, Executor, InProcess, Shard, negotiated_action_type
from vlaeval.evaluators.guards import DEFAULT_STEP_TIMEOUT
from vlaeval.evaluators.rollout import EpisodeContext
from vlaeval.evaluators.video import VideoPlan, episodes_to_record, require_writer
from vlaeval.plugins.manager import load_suite as _load_suite
from vlaeval.plugins.manager import suite_spec as spec_of
from vlaeval.results.fingerprint import (
    agent_option_defaults,
    describe_difference,
    fingerprint_hash,
    protocol_differences,
    protocol_fingerprint,
)
from vlaeval.results.sequential import Decision, SequentialRun, StoppingRule, outcomes_hash, reference_outcomes, reference_size
from vlaeval.results.store import EpisodeRecord, ResultStore, canonical_json, config_hash, read_manifest, write_manifest

#: Seconds agent construction and ``bind()`` may each take in a worker (real models load slowly).
DEFAULT_SETUP_TIMEOUT = 600.0
TRACKED_PACKAGES = ("numpy", "gymnasium", "pluggy", "pandas", "pybullet", "torch", "transformers", "onnxruntime", "mani_skill")
#: Seconds a run waits at its end for a render fingerprint still being taken (simpler: 10-25 s).
RENDER_TIMEOUT = 180.0


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
    until: StoppingRule | None = None  # --until decided: the sequential test that may end the run early


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
    instance = None if isinstance(agent, str) else agent
    if resume is not None:
        run_dir = Path(resume)
        manifest = read_manifest(run_dir)
        config = _config_from_manifest(manifest, run_dir)
        for given, saved, what in ((agent if isinstance(agent, str) else None, config.agent, "agent"), (suite, config.suite, "suite")):
            if given is not None and given != saved:
                raise VlaevalError(f"{run_dir} is a run of {what} {saved!r}, not {given!r}; drop --{what} or start a new run")
        if until is not None and until != config.until:
            started = f"with a {config.until.describe()}" if config.until else "without --until decided"
            raise VlaevalError(f"{run_dir} was started {started}; its test cannot change mid-run: drop --until and its options to resume it")
        if episodes is not None and episodes != config.episodes:
            available = spec_of(config.suite).protocol.episodes
            if not config.episodes < episodes <= available:
                raise VlaevalError(
                    f"{run_dir} evaluates {config.episodes} episodes; --resume can extend it to more "
                    f"(up to {available}), not change it to {episodes}"
                )
            config = dataclasses.replace(config, episodes=episodes)
            manifest["config"] = _config_dict(config)
        run_id = manifest["run_id"]
    else:
        if suite is None:
            raise VlaevalError("no suite given: pass --suite (see `vlaeval suites`)")
        manifest = {}
        config = None
    spec: SuiteSpec = spec_of(config.suite if config else suite)
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

    owns_agent = instance is None
    _preflight(instance, config, spec)
    ray_session = None
    if executor == "ray":
        from vlaeval.evaluators.ray_executor import RaySession

        ray_session = RaySession(address)  # join (or start) Ray before a run directory exists
    suite_impl = _load_suite(spec)
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

    store.write_parquet()
    from vlaeval.results.report import counted_results

    results = counted_results(run_dir)
    hooks.vlaeval_run_finished(run=info, results=results)
    return RunResult(run_id, run_dir, results, spec.protocol.chain_length, sequential.decision if sequential is not None else None)


def _jobs(run_id: str, config: RunConfig, pending: Sequence[EpisodeSpec], workers: int, instance: Any, owns_agent: bool,
          envs_per_worker: int = 1, env_mode: str = "auto", video: VideoPlan | None = None) -> list[Shard]:
    """The shards: pending episodes dealt round-robin over at most ``workers`` of them."""
    spec = spec_of(config.suite)
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


#: The JSON type of each saved config field.
_CONFIG_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "agent": str, "suite": str, "setting": str, "episodes": int, "seed": int, "step_timeout": (int, float), "agent_options": dict,
    "until": (dict, type(None)),
}


def _config_dict(config: RunConfig) -> dict[str, Any]:
    """The config as the manifest saves it; ``until`` only when set, so runs without a stopping
    rule keep the manifest (and config hash) they always had."""
    saved = dataclasses.asdict(config)
    if config.until is None:
        del saved["until"]
    return saved


def _default_episodes(spec: SuiteSpec, until: StoppingRule | None) -> int:
    """All of the protocol's episodes; for a paired test, those the reference run has (it pairs no more)."""
    if until is not None and until.against is not None:
        return min(reference_size(until.against), spec.protocol.episodes) or spec.protocol.episodes
    return spec.protocol.episodes


def _config_from_manifest(manifest: Mapping[str, Any], run_dir: Path) -> RunConfig:
    try:
        config = RunConfig(**manifest["config"])
    except (KeyError, TypeError) as exc:
        raise VlaevalError(f"{run_dir}/manifest.json has no valid run config ({exc}); it cannot be resumed") from exc
    for name, kind in _CONFIG_TYPES.items():  # the manifest is a file people edit
        value = getattr(config, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VlaevalError(f"{run_dir}/manifest.json: config.{name} cannot be {value!r}; restore it to resume the run")
    if config.until is not None:
        config = dataclasses.replace(config, until=StoppingRule.from_config(config.until, f"{run_dir}/manifest.json"))
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
    if config.until is not None:  # a stopping rule decides how many episodes are played; absent, older hashes stay valid
        fields["until"] = dataclasses.asdict(config.until)
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
        checked = [k for k in {**before, **fields} if k in before or k == "until"]  # not fields older versions lacked
        changed = [k for k in checked if canonical_json(before.get(k)) != canonical_json(fields.get(k))]
        if changed:
            raise VlaevalError(f"{run_dir}: {changed[0]} differs: the finished episodes were played with {changed[0]} "
                               f"{canonical_json(before.get(changed[0]))}, the manifest now says {canonical_json(fields.get(changed[0]))}; {fix}")
    for rec in done.values():
        if rec.config_hash is not None and rec.config_hash != fingerprint["config_hash"]:
            raise VlaevalError(f"{run_dir}: episode {rec.episode} was played with a different configuration (config_hash "
                               f"{rec.config_hash}, the manifest gives {fingerprint['config_hash']}): the agent options or step "
                               f"timeout differ; {fix}")


def _sequential_run(run_dir: Path, manifest: Mapping[str, Any], config: RunConfig, spec: SuiteSpec, episodes: Sequence[EpisodeSpec],
                    done: Mapping[int, EpisodeRecord]) -> SequentialRun | None:
    """The run's sequential test, fed with the episodes already finished (a resume continues it).

    A paired test needs its reference run on these very episodes, checked before anything is
    played; a resumed one also needs the reference to still hold the results the test began with,
    or the "same test" would silently pair with other outcomes.
    """
    rule = config.until
    if rule is None:
        return None
    reference = None
    if rule.against is not None:
        reference = reference_outcomes(rule.against, suite=spec.name, version=spec.version, setting=config.setting,
                                       episodes=[(e.index, e.seed, e.tasks) for e in episodes])
        stopping = manifest.get("stopping")
        before = stopping.get("reference") if isinstance(stopping, dict) else None
        if isinstance(before, dict) and isinstance(before.get("episodes"), int) and before["episodes"] <= len(reference):
            if outcomes_hash(reference, before["episodes"]) != before.get("sha256"):
                raise VlaevalError(f"{run_dir}: the results of --against {rule.against} on its first {before['episodes']} episodes "
                                   f"changed since this run's test began; the test cannot continue: start a new run")
    return SequentialRun(rule, {i: float(r.success) for i, r in done.items()}, reference)


class _Provenance:
    """How a run's scores were produced: its protocol fingerprint and render fingerprint, in its manifest.

    ``manifest["fingerprint"]`` (``config_hash``) is what the user asked for, the fields a resume
    checks so that rows of two configurations never mix in one run.  ``manifest["protocol"]``
    (``protocol_hash``, :mod:`vlaeval.results.fingerprint`) is everything that changes a score,
    asked for or not (package versions, the observation shapes and control rate the environment
    really has, the renderer): what ``report`` and ``gate`` compare between runs.  Its
    environment half exists only where environments are built, in the workers, so it is
    completed at the first ``ready``.  Agent options are filled in with the registered target's
    keyword defaults; a factory taking ``**options`` (``kosmos-lstm*``) declares none, and a runtime
    picked at the first step (``runtime=auto``) is recorded as requested: pin ``--runtime`` to make
    the runtime itself part of the protocol.  Each resumed session recomputes the protocol; a
    difference from the recorded one (other than more episodes) is printed and listed in the
    session as ``protocol_differences``, and the protocol now in force is kept.

    The render fingerprint (:mod:`vlaeval.envs.fingerprint`) is taken only when the agent reads a
    camera, once per run (a resumed session keeps a recorded one), by the driver in a subprocess
    (``python -m vlaeval.envs.fingerprint``) started at the first ``ready``.  Not in the workers: W
    of them would take it W times, and a worker's agent would wait for it; not in the driver's
    own process: simpler builds a SAPIEN scene for it (10-25 s, a Vulkan device), which the
    process holding the results store should neither wait for nor keep loaded.  So it costs no
    wall time while episodes play; a run that ends first waits for it, at most
    :data:`RENDER_TIMEOUT`.  It describes the machine running ``vlaeval run``; with Ray, other
    nodes may render otherwise (``vlaeval doctor`` on each checks that).  Thumbnails are left out
    of the manifest (about 2 kB per frame and camera): they only serve the tolerance check against
    the committed reference, done here, and frame hashes tell runs apart exactly.
    """

    def __init__(self, manifest: dict[str, Any], config: RunConfig, spec: SuiteSpec, episodes: Sequence[EpisodeSpec],
                 protocol_episodes: Sequence[EpisodeSpec]) -> None:
        self.manifest, self.config, self.spec = manifest, config, spec
        self.episodes, self.protocol_episodes = episodes, protocol_episodes
        self.render: _RenderCheck | None = None

    def ready(self, payload: dict[str, Any]) -> None:
        """Fingerprint the protocol from a worker's ready payload (its ``env`` entry is removed)."""
        env = payload.pop("env", {})
        agent_spec = AgentSpec(**payload["spec"])
        recorded = self.manifest.get("render")
        if any(k.startswith("rgb") for k in agent_spec.observation_keys) and not (isinstance(recorded, dict) and "renderer" in recorded):
            self.render = _RenderCheck(self.spec.name)
        renderer = recorded.get("renderer") if isinstance(recorded, dict) and self.render is None else None
        protocol = protocol_fingerprint(
            suite=self.spec, setting=self.config.setting, episodes=self.episodes, agent=self.config.agent, agent_spec=agent_spec,
            action_type=payload["action_type"], agent_options=_option_defaults(self.config.agent) | dict(self.config.agent_options),
            env_kwargs=env.get("env_kwargs"), observation_shapes=env.get("observation_shapes"), control_hz=env.get("control_hz"),
            renderer=renderer, protocol_episodes=self.protocol_episodes,
        )
        before = self.manifest.get("protocol")
        if isinstance(before, dict):
            changed = protocol_differences(before, protocol)
            for name, old, new in changed:
                print(f"warning: this session's protocol differs from the run's: "
                      f"{describe_difference(name, old, new, ('the finished episodes', 'this session'))}", file=sys.stderr)
            if changed:
                self.manifest["sessions"][-1]["protocol_differences"] = [name for name, _, _ in changed]
        self._set(protocol)

    def poll(self) -> bool:
        """Record the render fingerprint if it has just finished; whether the manifest changed."""
        if self.render is None or not self.render.done():
            return False
        self._record(self.render.result())
        return True

    def finish(self, *, wait: bool) -> None:
        """At the run's end: wait for the render fingerprint (a finished run) or drop it."""
        if self.render is None:
            return
        if wait:
            if not self.render.done():
                print(f"waiting for the render fingerprint of {self.spec.name!r} (at most {RENDER_TIMEOUT:g} s)", file=sys.stderr)
            self._record(self.render.result(RENDER_TIMEOUT))
        else:
            self.render.cancel()
            self.render = None

    def _record(self, result: tuple[dict[str, Any] | None, str | None]) -> None:
        from vlaeval.envs.fingerprint import compare_render, load_reference

        self.render = None
        fp, error = result
        if fp is None:
            print(f"warning: render fingerprint of {self.spec.name!r} not taken: {error}", file=sys.stderr)
            self.manifest["render"] = {"error": error}
            return
        try:
            reference = load_reference(self.spec.name)
        except VlaevalError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            reference = None
        differences = compare_render(fp, reference) if reference is not None else []
        for line in differences:
            print(f"warning: render fingerprint of {self.spec.name!r} differs from its reference: {line}", file=sys.stderr)
        self.manifest["render"] = {"renderer": fp["renderer"], "frames": [{k: v for k, v in f.items() if k != "thumbnail_png"} for f in fp["frames"]],
                                   "reference": reference is not None, "differences": differences}
        if isinstance(self.manifest.get("protocol"), dict):
            self._set({**self.manifest["protocol"], "renderer": dict(fp["renderer"])})

    def _set(self, protocol: dict[str, Any]) -> None:
        self.manifest["protocol"] = protocol
        self.manifest["protocol_hash"] = fingerprint_hash(protocol)


class _RenderCheck:
    """``python -m vlaeval.envs.fingerprint SUITE`` running beside the evaluation (see :class:`_Provenance`)."""

    def __init__(self, suite: str) -> None:
        import tempfile

        self.suite = suite
        self.errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: warnings can never fill it and stall the child
        self.proc = subprocess.Popen([sys.executable, "-m", "vlaeval.envs.fingerprint", suite], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.errors, text=True)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def result(self, timeout: float | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """(the fingerprint, None) or (None, why there is none)."""
        import json

        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            return None, f"still running after {timeout:g} s; see `vlaeval doctor --suite {self.suite}`"
        self.errors.seek(0)
        lines = [line.strip() for line in self.errors.read().splitlines() if line.strip()]
        self.errors.close()
        if self.proc.returncode != 0 or not out.strip():
            return None, (lines[-1] if lines else f"exit status {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1]), None

    def cancel(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.errors.close()


def _option_defaults(agent: str) -> dict[str, Any]:
    """The constructor defaults of a registered agent (already imported by :func:`_preflight`);
    none for URIs, paths and instances, whose constructors the driver does not know."""
    from vlaeval.plugins.manager import registries

    agents = registries().agent
    return agent_option_defaults(agents.get(agent).load()) if agent in agents else {}



def _start_manifest(manifest: dict[str, Any], run_id: str, config: RunConfig, spec: SuiteSpec, workers: int, pending: int) -> dict[str, Any]:
    from vlaeval.version import __version__

    if not manifest:
        setting = spec.setting(config.setting)
        manifest = {
            "run_id": run_id,
            "vlaeval_version": __version__,
            "config": _config_dict(config),
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

    from vlaeval.version import __version__

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
