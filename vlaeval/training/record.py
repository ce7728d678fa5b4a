"""Recording rollouts of any agent into a demonstration dataset (:mod:`vlaeval.training.demos`).

For the ``calvin`` suite with ``scenes`` given, training chains are drawn *per scene*: each
episode resets to a random scene state sampled from its seed in that scene's own layout
(:func:`vlaeval.envs.calvin.scene.random_scene_obs`, the env's random reset made explicit), its
symbolic state is read off that state, and a chain of tasks that is valid for it (CALVIN's
symbolic model, :mod:`vlaeval.envs.calvin.tasks`) is sampled from the allowed tasks.  The
official chains cannot be reused directly: their scene vectors are built for scene D's layout
(block slot order, shelf positions), so in scenes A-C they would place blocks inside furniture.
Every other suite records its own protocol episodes.

Episodes are fully determined before anything runs (seeded per episode index), and each worker
writes a shard file; shards are merged in episode order, so a dataset does not depend on the
number of workers.  Episodes are played by the runner's rollout core
(:mod:`vlaeval.evaluators.rollout`) with its protocol and guards: an agent that raises, hangs
past the step timeout or returns a bad action fails that demo (kept, flagged ``failed``, its
``error`` attribute saying why) and recording goes on.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np

from vlaeval.durable import write_text
from vlaeval.envs.suite import EpisodeSpec, episode_seed
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.guards import DEFAULT_STEP_TIMEOUT
from vlaeval.evaluators.rollout import Observer, Played

#: The articulated CALVIN tasks (drawer, sliding door, LED, light bulb): the focused subset.
ARTICULATED_TASKS: tuple[str, ...] = (
    "open_drawer", "close_drawer", "move_slider_left", "move_slider_right",
    "turn_on_led", "turn_off_led", "turn_on_lightbulb", "turn_off_lightbulb",
)
TASK_GROUPS: Mapping[str, tuple[str, ...]] = {"articulated": ARTICULATED_TASKS}


@dataclass(frozen=True)
class RecordConfig:
    """What ``vlaeval record`` records (saved as ``record.json`` next to the data)."""

    agent: str
    suite: str = "calvin"
    setting: str | None = None
    scenes: tuple[str, ...] = ()
    episodes: int = 10  # per scene (calvin with scenes), else in total
    tasks: tuple[str, ...] = ()  # allowed tasks for sampled chains (empty = all)
    chain_length: int = 1
    balance: bool = True  # draw sampled chains so every task gets about as many demos (sample_chain)
    cameras: tuple[str, ...] = ("rgb_static",)
    seed: int = 0
    max_steps: int | None = None  # per subtask (default: the suite protocol's)
    valid_fraction: float = 0.1
    workers: int = 1
    agent_options: Mapping[str, Any] = field(default_factory=dict)
    step_timeout: float = DEFAULT_STEP_TIMEOUT  # seconds one agent call may take before its demo fails


# --- CALVIN training chains -------------------------------------------------------------------

def calvin_symbolic_state(scene_obs: np.ndarray, scene: str) -> dict[str, Any]:
    """CALVIN's symbolic state (tasks.STATE_KEYS) of a resting scene vector in a scene's layout."""
    from vlaeval.envs.calvin.scene import SCENES

    layout = SCENES[scene]
    state: dict[str, Any] = {
        "led": int(round(scene_obs[5])),
        "lightbulb": int(round(scene_obs[4])),
        "slider": "left" if scene_obs[0] > layout.door_travel / 2 else "right",
        "drawer": "open" if scene_obs[1] > 0.11 else "closed",
        "grasped": 0,
    }
    names = ("table", "slider_left", "slider_right")
    for slot, colour in enumerate(layout.block_order):
        x, y, z = scene_obs[6 + 6 * slot : 9 + 6 * slot]
        where = "table"
        for name, region in zip(names, layout.regions):
            if region.x[0] - 1e-6 <= x <= region.x[1] + 1e-6 and region.y[0] - 1e-6 <= y <= region.y[1] + 1e-6 and abs(z - region.z) < 0.02:
                where = name
                break
        state[f"{colour}_block"] = where
    return state


def sample_chain(state: Mapping[str, Any], rng: np.random.Generator, allowed: Sequence[str], length: int,
                 counts: MutableMapping[str, int] | None = None) -> tuple[str, ...]:
    """A random valid chain (distinct categories, unique successor each step), possibly shorter
    than ``length`` when no allowed task applies any more; empty if none applies at the start.

    With ``counts`` (tasks sampled so far, updated in place) each step draws among the applicable
    tasks sampled least so far.  Uniform draws over what applies would follow CALVIN's symbolic
    model: block tasks apply more often than e.g. ``push_into_drawer`` (an open drawer and a block
    on the table), so a few tasks would get a handful of demos and the policy would never learn them.
    """
    from vlaeval.envs.calvin.tasks import TASK_CATEGORY, apply_task

    chain: list[str] = []
    current = dict(state)
    for _ in range(length):
        used = {TASK_CATEGORY[t] for t in chain}
        options = [t for t in allowed if TASK_CATEGORY[t] not in used and apply_task(current, t) is not None]
        if not options:
            break
        if counts is not None:
            least = min(counts.get(t, 0) for t in options)
            options = [t for t in options if counts.get(t, 0) == least]
        task = options[int(rng.integers(len(options)))]
        if counts is not None:
            counts[task] = counts.get(task, 0) + 1
        chain.append(task)
        current = apply_task(current, task)
    return tuple(chain)


def calvin_training_episodes(scene: str, n: int, seed: int, tasks: Sequence[str] = (), chain_length: int = 1,
                             instruction_set: str = "train", first_index: int = 0, balance: bool = True) -> list[EpisodeSpec]:
    """``n`` training episodes in ``scene``: random scene state from the episode seed and a valid
    chain of allowed tasks for it (states where no allowed task applies are redrawn); with
    ``balance`` the chains are drawn so every task is sampled about equally often (:func:`sample_chain`)."""
    from vlaeval.envs.calvin.initial_state import neutral_robot_obs
    from vlaeval.envs.calvin.language import INSTRUCTION_SETS
    from vlaeval.envs.calvin.scene import SCENES, random_scene_obs
    from vlaeval.envs.calvin.tasks import TASKS

    allowed = tuple(tasks) or TASKS
    unknown = sorted(set(allowed) - set(TASKS))
    if unknown:
        raise VlaevalError(f"unknown CALVIN task(s): {', '.join(unknown)}")
    instructions = INSTRUCTION_SETS[instruction_set]
    scene_code = ord(scene) - ord("A") + 1
    out = []
    counts: dict[str, int] | None = {} if balance else None
    for i in range(n):
        ep_seed = episode_seed(seed * 100 + scene_code, first_index + i)
        rng = np.random.default_rng(ep_seed)
        for _ in range(1000):
            scene_obs = random_scene_obs(SCENES[scene], rng)
            chain = sample_chain(calvin_symbolic_state(scene_obs, scene), rng, allowed, chain_length, counts)
            if chain:
                break
        else:
            raise VlaevalError(f"no allowed task applies to 1000 random states of scene {scene}")
        chosen = tuple(instructions[t][int(rng.integers(len(instructions[t])))] for t in chain)
        out.append(EpisodeSpec(
            index=first_index + i, tasks=chain, instructions=chosen, seed=ep_seed,
            options={"robot_obs": neutral_robot_obs().tolist(), "scene_obs": scene_obs.tolist(),
                     "tasks": list(chain), "instructions": list(chosen)},
        ))
    return out


# --- recording --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shard:
    config: RecordConfig
    items: tuple[tuple[str, EpisodeSpec], ...]  # (scene or "", episode)
    path: str


def _plan(config: RecordConfig) -> list[tuple[str, EpisodeSpec]]:
    from vlaeval.plugins.manager import load_suite, suite_spec

    spec = suite_spec(config.suite)
    if config.scenes:
        if config.suite != "calvin":
            raise VlaevalError("--scenes is only understood by the calvin suite")
        instruction_set = spec.setting(config.setting).options.get("instructions", "train")
        items = []
        for scene in config.scenes:
            for ep in calvin_training_episodes(scene, config.episodes, config.seed, config.tasks, config.chain_length,
                                               instruction_set, first_index=len(items), balance=config.balance):
                items.append((scene, ep))
        return items
    if config.tasks:
        raise VlaevalError("--tasks needs --scenes (sampled training chains); protocol episodes have fixed tasks")
    setting = spec.setting(config.setting).name
    episodes = list(load_suite(spec).episodes(setting, spec.protocol.seed if config.seed is None else config.seed))
    return [("", ep) for ep in episodes[: config.episodes]]


@dataclass(frozen=True)
class _ShardResult:
    path: str
    demos: int
    failed: int  # demos whose chain was not solved, errors included
    errors: int  # demos ended by an agent or env failure
    action_type: str

    @classmethod
    def read(cls, path: str) -> "_ShardResult":
        """The result of a finished shard, from its file's attributes (a resumed recording reads
        the shards an earlier, interrupted one finished)."""
        import h5py

        with h5py.File(path, "r") as f:
            return cls(path, len(f["data"]), int(f.attrs["failed"]), int(f.attrs["errors"]), str(f.attrs["action_type"]))


def _record_shard(shard: _Shard) -> _ShardResult:
    """Play a shard's episodes and write them to ``shard.path`` (via a ``.partial`` file renamed
    when complete, so a shard file that exists is finished)."""
    import h5py

    from vlaeval.agents.resolve import agent_spec_of
    from vlaeval.envs.pool import SyncEnvPool
    from vlaeval.evaluators.executors import Pairing, build_agent
    from vlaeval.evaluators.rollout import play
    from vlaeval.plugins.manager import suite_spec

    config = shard.config
    spec = suite_spec(config.suite)
    agent = build_agent(config.agent, config.agent_options)
    try:
        agent_spec = agent_spec_of(agent)
        pairing = Pairing.negotiate(spec, spec.setting(config.setting).name, config.agent, config.agent_options, agent_spec)
        # The env renders what the dataset needs, whatever the recorded agent itself reads.
        keys = tuple(dict.fromkeys((*agent_spec.observation_keys, *config.cameras)))
        renders = dataclasses.replace(pairing, agent_spec=dataclasses.replace(agent_spec, observation_keys=keys))
        partial = f"{shard.path}.partial"
        with h5py.File(partial, "w") as f:
            writer = _DemoWriter(f.create_group("data"), config.cameras)
            for scene, items in itertools.groupby(shard.items, key=lambda item: item[0]):
                pool = SyncEnvPool(lambda: renders.make_env(**({"scene": scene} if scene else {})), 1)
                try:
                    pairing.bind(agent, pool, 0)
                    writer.enter(scene, pool.action_space)
                    for _ in play(pool, [agent], [episode for _, episode in items], max_steps=config.max_steps or spec.protocol.max_steps,
                                  step_timeout=config.step_timeout, observers=[writer]):
                        pass  # the writer keeps what it needs
                finally:
                    pool.close()
            f.attrs.update({"failed": writer.failed, "errors": writer.errors, "action_type": pairing.action_type})
        os.replace(partial, shard.path)
    finally:
        if callable(getattr(agent, "close", None)):
            agent.close()
    return _ShardResult(shard.path, len(shard.items), writer.failed, writer.errors, pairing.action_type)


class _DemoWriter(Observer):
    """Writes every played episode as one demo into an HDF5 ``data`` group: what the agent saw
    before each action, the action, the reward (1 at the step that solved a subtask) and the
    subtask each step belongs to; an episode that an agent or env failure ended is written too,
    flagged failed, with the error as its ``error`` attribute."""

    def __init__(self, data: Any, cameras: Sequence[str]) -> None:
        self.data = data
        self.cameras = tuple(cameras)
        self.scene, self.action_size = "", 0
        self.failed = self.errors = 0
        self._trajectories: dict[int, _Trajectory] = {}

    def enter(self, scene: str, action_space: Any) -> None:
        """The episodes that follow play in ``scene`` ("" for the suite's own), with ``action_space``."""
        self.scene, self.action_size = scene, action_space.shape[0]

    def episode_started(self, slot: int, episode: EpisodeSpec) -> None:
        self._trajectories[slot] = _Trajectory()

    def subtask_started(self, slot: int, position: int) -> None:
        self._trajectories[slot].position = position

    def step(self, slot: int, observation: Any, action: np.ndarray, success: bool) -> None:
        t = self._trajectories[slot]
        if t.frames is None:
            t.frames = {k: [] for k in ("robot_obs", "scene_obs", *self.cameras) if k in observation}
        for key, frames in t.frames.items():
            frames.append(np.asarray(observation[key]))
        t.actions.append(action)
        t.subtask.append(t.position)
        t.rewards.append(1.0 if success else 0.0)

    def episode_ended(self, played: Played) -> None:
        from vlaeval.training.demos import Demo, write_demo

        t = self._trajectories.pop(played.slot)
        episode = played.episode
        demo = Demo(
            actions=np.stack(t.actions) if t.actions else np.zeros((0, self.action_size), np.float32),
            obs={k: np.stack(v) for k, v in (t.frames or {}).items() if v},
            rewards=np.asarray(t.rewards, np.float32), subtask=np.asarray(t.subtask, np.int64),
            tasks=tuple(episode.tasks), instructions=tuple(episode.instructions),
            subtask_success=tuple(r.success for r in played.subtasks), scene=self.scene, seed=episode.seed,
        )
        group = self.data.create_group(f"demo_{episode.index}")
        write_demo(group, demo)
        self.failed += not demo.success
        error = next((r.error for r in played.subtasks if r.error is not None), None)
        if error is not None:
            group.attrs["error"] = error
            self.errors += 1


@dataclass
class _Trajectory:
    frames: dict[str, list[np.ndarray]] | None = None  # by observation key, from the first step on
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    subtask: list[int] = field(default_factory=list)
    position: int = 0


#: Where a recording keeps its finished shards until they are merged (and a rerun resumes from).
SHARDS_DIR = ".record-shards"


def record(config: RecordConfig, out: str | os.PathLike[str], *, progress: bool = True, shard_size: int = 10) -> dict[str, Any]:
    """Record ``config`` into ``out/demos.hdf5`` (+ ``record.json``); returns a summary.

    Resumable: finished shards stay in ``out/.record-shards`` until the merge, so running the same
    recording again after an interruption (kill -9 included) plays only the shards that had not
    finished.  A different configuration in the same ``out`` is refused.
    """
    from vlaeval.training.demos import DEMO_FILE, merge_shards

    out_dir = Path(out)
    target = out_dir / DEMO_FILE
    if target.exists():
        raise VlaevalError(f"{target} already exists; pick another --out")
    items = _plan(config)
    if not items:
        raise VlaevalError("nothing to record (0 episodes)")
    shard_dir = out_dir / SHARDS_DIR
    plan_file = shard_dir / "config.json"
    plan = json.dumps({"config": dataclasses.asdict(config), "shard_size": shard_size}, sort_keys=True)
    if plan_file.is_file() and plan_file.read_text() != plan:
        raise VlaevalError(f"{out_dir} holds an interrupted recording of another configuration; rerun that one, "
                           f"pick another --out, or delete {shard_dir} to start over")
    shard_dir.mkdir(parents=True, exist_ok=True)
    write_text(plan_file, plan)
    n_shards = max(1, math.ceil(len(items) / shard_size))
    shards = [_Shard(config, tuple(items[k * shard_size : (k + 1) * shard_size]), str(shard_dir / f"shard-{k:05d}.hdf5"))
              for k in range(n_shards)]
    finished = [_ShardResult.read(s.path) for s in shards if Path(s.path).is_file()]
    pending = [s for s in shards if not Path(s.path).is_file()]
    started = time.perf_counter()
    failed = errors = 0
    action_types: set[str] = set()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="episode", desc="record", file=sys.stderr, dynamic_ncols=True)
        if finished:
            bar.write(f"resuming: {sum(r.demos for r in finished)} of {len(items)} episodes were recorded before")

    def done(result: _ShardResult) -> None:
        nonlocal failed, errors
        failed += result.failed
        errors += result.errors
        action_types.add(result.action_type)
        if bar is not None:
            bar.update(result.demos)
            bar.set_postfix_str(f"failed={failed}")

    try:
        for result in finished:
            done(result)
        if config.workers == 1:
            for shard in pending:
                done(_record_shard(shard))
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(config.workers, mp_context=mp.get_context("spawn")) as pool:
                for fut in as_completed([pool.submit(_record_shard, s) for s in pending]):
                    done(fut.result())
        header = {
            "suite": config.suite, "setting": config.setting, "agent": config.agent, "scenes": list(config.scenes),
            "cameras": list(config.cameras), "tasks": list(config.tasks), "chain_length": config.chain_length,
            "action_type": action_types.pop(),  # every shard negotiates the same one
            "seed": config.seed, "env_args": {"env_name": "vlaeval/Calvin-v0" if config.suite == "calvin" else config.suite,
                                             "type": "vlaeval", "env_kwargs": {"cameras": list(config.cameras)}},
        }
        summary = merge_shards([Path(s.path) for s in shards], target, header, config.valid_fraction, config.seed)
    finally:
        if bar is not None:
            bar.close()
    shutil.rmtree(shard_dir, ignore_errors=True)
    summary["errors"] = errors
    summary["seconds"] = round(time.perf_counter() - started, 1)
    cfg = dataclasses.asdict(config)
    write_text(out_dir / "record.json", json.dumps({"config": cfg, "summary": summary}, indent=2) + "\n")
    return summary
