"""CALVIN env speed against upstream calvin_env and a raw-PyBullet floor, all measured in the same run.

    python benchmarks/bench_calvin.py [--chains 3] [--steps 300] [--chunk 25]
                                      [--throughput-chains 20] [--processes 2] [--repeats 3] [--turn-chains 5]
                                      [--expert-chains 100] [--workers 2]

Prints steps per second (wall and per CPU-second) of ``vlaeval/Calvin-v0`` with both cameras
(200x200 static + 84x84 gripper) and with cameras off, next to two yardsticks stepped on the same
workload in turns with it:

* **upstream**: CALVIN's own ``PlayTableSimEnv`` (calvin_env, built as upstream builds it by
  :func:`vlaeval.envs.calvin_upstream.build.make_upstream_env`: ``scene=calvin_scene_D
  robot=panda_longer_finger``, TinyRenderer, ``cameras=static_and_gripper`` (the same 200x200 +
  84x84) or ``no_cameras``, 8 substeps of 1/240 s), stepped with the same relative actions
  (gripper binarised by sign, as upstream's wrapper does; converted before the clock starts) from
  the same initial state.  It runs in a child process of its own: upstream creates its robot's
  pedestal with no pybullet client id, so it is only correct as the first pybullet client of its
  process.  The child steps a chunk when told to and reports that chunk's wall and CPU time, so
  upstream and ours alternate chunk by chunk and a change in machine load hits both alike.  Where
  calvin_env is not installed, the ratio falls back to :data:`UPSTREAM_FALLBACK_STEPS_PER_CPU_S`,
  figures remembered from another machine (not comparable with this run), and the output says so.
* **floor**: raw PyBullet doing the same ``stepSimulation`` calls and camera renders of the same
  bodies with no env logic, simulating exactly what the env simulates (it replays the env's
  recorded motor commands; the final states are checked to match bit for bit); env/floor is what
  the env's logic (IK, contacts, predicates, observation building) adds.  The floor renders the
  static camera as the env does (:class:`~vlaeval.envs.calvin.cameras.StaticCamera`: fixed
  geometry rasterised once); a second floor that rasterises every body every frame shows what
  that saves.

The env, the floors and upstream each have an instance of their own; every episode starts from
the same reset in all of them (untimed), and they take turns in chunks of ``--chunk`` steps.

Two workloads, because what a step costs depends on what the arm does (contacts are physics
work, and the IK's share of a step is larger when the physics is light):

* ``expert chains``: the scripted expert's actions on the first ``--chains`` official chains,
  recorded once through the harness's own episode loop and replayed from the same resets: the
  states an evaluation visits, chained subtasks and all.  Upstream replays them open loop: its
  states drift from ours (its blocks and desk are not ours), the kind of work per step hardly.
* ``random actions``: ``--steps`` uniform random actions from chain 0's initial state, the
  workload of the upstream comparison in issue 15 (the arm flails; the blocks mostly rest).

Then evaluation throughput with cameras off, where past the single-process floor the lever is
processes: chains per minute of ``--processes`` processes per side replaying the expert's first
``--throughput-chains`` chains, each side judging success with its own check: ours
``Calvin-v0``'s step (which judges the current subtask), upstream ``PlayTableSimEnv.step`` plus
``Tasks.get_task_info_for_set`` on the current subtask, as upstream's evaluation calls it (one env
per process, reset from each chain's initial state, as upstream's evaluation keeps one).  Both
sides step exactly the recorded actions (a chain's reset is timed too), so the work is the same
whatever upstream's open-loop states make of the subtasks; neither side runs an agent or writes
results.  The sides take turns every ``--turn-chains`` chains (each group dealt to the processes
by step count, the same way on both sides; the side that goes first alternates), the whole list
``--repeats`` times.  Last, the wall time of the scripted expert on the first ``--expert-chains``
official chains through ``vlaeval.evaluate`` with ``--workers``.

Goals (issue 15): both cameras >= 6x upstream in the same run; cameras off, env <= 1.10x its floor.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

#: FALLBACK ONLY, used when calvin_env is not installed: upstream's steps per CPU-second as
#: measured once on another, slower and loaded machine.  Not comparable with a run's own rates;
#: with calvin_env installed upstream is measured in the same run and these are not used.
UPSTREAM_FALLBACK_STEPS_PER_CPU_S = {"both cameras": 7.5, "cameras off": 140.0}
CAMERAS = {"both cameras": ("rgb_static", "rgb_gripper"), "cameras off": ()}
#: Goals (issue 15).
GOAL_CAMERAS_X_UPSTREAM = 6.0
GOAL_OFF_OVER_FLOOR = 1.10


@dataclass(frozen=True)
class Rollout:
    """One episode's reset and actions, and the motor commands the env sent for them (one
    ``setJointMotorControlArray`` per step), which the floors replay."""

    seed: int
    options: dict
    actions: tuple[np.ndarray, ...]
    commands: tuple[dict[str, list[float]], ...]


@dataclass(frozen=True)
class Chain:
    """One official chain as the expert played it on ``calvin``: its reset, tasks, every action
    stepped, and how many subtasks it solved."""

    seed: int
    options: dict
    tasks: tuple[str, ...]
    actions: tuple[np.ndarray, ...]
    solved: int


class _Clock:
    """Wall and CPU time accumulated over the chunks one contestant ran."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.steps = 0

    def run(self, fn: Callable[[], None], steps: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            fn()
        self.add(time.perf_counter() - wall, time.process_time() - cpu, steps)

    def add(self, wall: float, cpu: float, steps: int) -> None:
        self.wall += wall
        self.cpu += cpu
        self.steps += steps

    def rates(self) -> tuple[float, float]:
        """(steps per wall second, steps per CPU second)."""
        return self.steps / self.wall, self.steps / max(self.cpu, 1e-9)


def _make(cameras: tuple[str, ...]):
    """An env as ``gymnasium.make`` returns it, wrappers included: the env contestant steps that,
    because it is what the harness steps (the floors only use its world)."""
    import gymnasium

    import vlaeval.envs.registration  # noqa: F401

    return gymnasium.make("vlaeval/Calvin-v0", scene="D", cameras=cameras)


def _with_commands(seed: int, options: dict, actions: Sequence[np.ndarray]) -> Rollout:
    """Step the actions once, untimed, recording the motor command the controller sent at every
    step (the env's one setJointMotorControlArray call per step)."""
    import pybullet as pb

    env = _make(())
    env.reset(seed=seed, options=dict(options))
    commands: list[dict[str, list[float]]] = []
    send = pb.setJointMotorControlArray

    def recording_send(*args: object, **kwargs: object) -> None:
        commands.append({"targetPositions": list(kwargs["targetPositions"]), "forces": list(kwargs["forces"])})
        send(*args, **kwargs)

    pb.setJointMotorControlArray = recording_send
    try:
        for action in actions:
            env.step(action)
    finally:
        pb.setJointMotorControlArray = send
        env.close()
    if len(commands) != len(actions):
        raise RuntimeError(f"expected one motor command per step, recorded {len(commands)} for {len(actions)} steps")
    return Rollout(seed, dict(options), tuple(actions), tuple(commands))


def expert_chains_played(chains: int) -> list[Chain]:
    """The expert on the first official chains, played by the harness's episode loop (agent reset
    per subtask, 360 steps each, chain stops at a failure), every action it stepped kept."""
    import gymnasium

    from vlaeval.agents.base import AgentContext
    from vlaeval.agents.expert.agent import CalvinExpert
    from vlaeval.envs.calvin.spec import CALVIN_SPEC
    from vlaeval.envs.calvin.suite import CalvinSuite
    from vlaeval.evaluators.episode import EpisodeContext, run_episode

    class Recorder(gymnasium.Wrapper):
        """Keeps every action the episode loop steps."""

        def __init__(self, env: gymnasium.Env) -> None:
            super().__init__(env)
            self.actions: list[np.ndarray] = []

        def step(self, action):  # type: ignore[no-untyped-def]
            self.actions.append(np.array(action, copy=True))
            return self.env.step(action)

    ctx = EpisodeContext(run_id="bench", agent="expert", suite="calvin", suite_version=CALVIN_SPEC.version,
                         setting="D->D", max_steps=CALVIN_SPEC.protocol.max_steps, step_timeout=60.0)
    env = Recorder(_make(()))
    agent = CalvinExpert()
    agent.bind(AgentContext("calvin", "D->D", "relative_ee", env.action_space, env.observation_space, env.unwrapped))
    played = []
    for episode in CalvinSuite().episodes("D->D", 0)[:chains]:
        env.actions = []
        record = run_episode(env, agent, episode, ctx)
        played.append(Chain(episode.seed, dict(episode.options), tuple(episode.tasks), tuple(env.actions),
                            sum(bool(row["success"]) for row in record.rows)))
    env.close()
    return played


def random_workload(steps: int) -> list[Rollout]:
    from vlaeval.envs.calvin.suite import CalvinSuite

    episode = CalvinSuite().episodes("D->D", 0)[0]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 7)).astype(np.float32)
    return [_with_commands(episode.seed, dict(episode.options), list(actions))]


# --- contestants in child processes ------------------------------------------------------------


class _ChildEnv:
    """What a child process holds: one env, ours (``Calvin-v0`` as ``gymnasium.make`` returns it)
    or upstream's (``PlayTableSimEnv`` and its ``Tasks`` oracle), and the episodes it replays."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.env: Any = None
        self.oracle: Any = None
        self.episodes: list[tuple[int, dict, tuple[str, ...], list[Any]]] = []
        self.feed: Iterator[Any] = iter(())

    def build(self, cameras: bool) -> str:
        """A fresh env rendering both cameras or none (the previous one is closed first, which
        frees upstream's pybullet client 0); returns what upstream's is (or ``ours``)."""
        self.close()
        if self.side == "upstream":
            from vlaeval.envs.calvin_upstream.build import make_upstream_env
            from vlaeval.envs.calvin_upstream.install import installation

            self.env, self.oracle = make_upstream_env(cameras)
            views = ", ".join(f"{c.name} {c.width}x{c.height}" for c in self.env.cameras) or "no cameras"
            return f"calvin_env {installation().revision[:7]}, {self.env.action_repeat} substeps, {views}"
        self.env = _make(CAMERAS["both cameras" if cameras else "cameras off"])
        return "ours"

    def load(self, episodes: Sequence[tuple[int, dict, Sequence[str], Sequence[np.ndarray]]]) -> None:
        """Episodes to replay: (seed, options, tasks, actions).  Upstream's actions are converted
        to its relative form here (7 values, gripper exactly +1 or -1), before any clock runs."""
        from vlaeval.envs.calvin.robot import binarise_gripper

        def convert(action: np.ndarray) -> Any:
            if self.side == "upstream":
                return np.array([*np.asarray(action, dtype=np.float64)[:6], binarise_gripper(float(action[6]))])
            return action

        self.episodes = [(seed, dict(options), tuple(tasks), [convert(a) for a in actions])
                         for seed, options, tasks, actions in episodes]

    def reset(self, index: int) -> None:
        """Reset to episode ``index``'s initial state (untimed) and feed its actions to :meth:`run`."""
        self._reset(index)
        self.feed = iter(self.episodes[index][3])

    def _reset(self, index: int) -> Any:
        seed, options, _, _ = self.episodes[index]
        if self.side == "upstream":
            self.env.reset(robot_obs=np.asarray(options["robot_obs"]), scene_obs=np.asarray(options["scene_obs"]))
            return self.env.get_info()
        self.env.reset(seed=seed, options=dict(options))
        return None

    def run(self, steps: int) -> tuple[float, float]:
        """Step the next ``steps`` actions; (wall, CPU) seconds they took in this process."""
        step, feed = self.env.step, self.feed
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step(next(feed))
        return time.perf_counter() - wall, time.process_time() - cpu

    def replay(self, indices: Sequence[int]) -> tuple[float, float, int, int]:
        """The loaded episodes ``indices``, each from its reset, each step judged by this side's
        own success check (ours: the env's step; upstream: its oracle on the current subtask,
        against the info dict of the subtask's start).  Returns (wall, CPU, steps, subtasks solved)."""
        wall, cpu = time.perf_counter(), time.process_time()
        steps = solved = 0
        for index in indices:
            tasks, actions = self.episodes[index][2:]
            start = self._reset(index)
            position = 0
            if self.side == "upstream":
                judge = self.oracle.get_task_info_for_set
                for action in actions:
                    info = self.env.step(action)[3]
                    if position < len(tasks) and tasks[position] in judge(start, info, {tasks[position]}):
                        position, start = position + 1, info
            else:
                for action in actions:
                    position += bool(self.env.step(action)[4]["is_success"])
            steps += len(actions)
            solved += position
        return time.perf_counter() - wall, time.process_time() - cpu, steps, solved

    def close(self) -> None:
        if self.env is None:
            return
        if self.side == "upstream":
            from vlaeval.envs.calvin_upstream.build import close_upstream_env

            close_upstream_env(self.env)
        else:
            self.env.close()
        self.env = None


def _serve(conn: Any, side: str) -> None:
    """A child process's loop: run the parent's ``(method, *args)`` on a :class:`_ChildEnv` and
    send back ``("ok", result)`` or ``("error", message)``; ``("close",)`` ends it."""
    child = _ChildEnv(side)
    while True:
        method, *args = conn.recv()
        try:
            result = getattr(child, method)(*args)
        except Exception as exc:  # reported to the parent, which raises it there
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("ok", result))
        if method == "close":
            return


class Child:
    """A :class:`_ChildEnv` in a spawned process of its own (so upstream's env is the first
    pybullet client of its process), driven over a pipe."""

    def __init__(self, side: str) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.side = side
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, side), daemon=True, name=f"bench-{side}")
        self.process.start()
        theirs.close()

    def send(self, method: str, *args: Any) -> None:
        self.conn.send((method, *args))

    def receive(self) -> Any:
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.side} child: {result}")
        return result

    def call(self, method: str, *args: Any) -> Any:
        self.send(method, *args)
        return self.receive()

    def close(self) -> None:
        try:
            self.call("close")
        except (EOFError, OSError, RuntimeError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def upstream_unavailable() -> str | None:
    """Why upstream cannot be measured here (calvin_env missing or incomplete), or None."""
    from vlaeval.envs.calvin_upstream.install import installation
    from vlaeval.errors import VlaevalError

    try:
        installation()
    except VlaevalError as exc:
        return str(exc)
    return None


# --- measurements ------------------------------------------------------------------------------


def measure(cameras: tuple[str, ...], workload: list[Rollout], chunk: int = 25,
            upstream: Child | None = None) -> dict[str, tuple[float, float]]:
    """Rates of the env, the floor, (with the static camera) a floor that renders every frame in
    full and (given its child) upstream's env.  Each runs in its own env instance; every episode
    starts from the same reset in all of them (untimed), and they take turns in chunks of
    ``chunk`` steps, so a change in machine load during the run hits all of them alike."""
    import pybullet as pb

    from vlaeval.envs.calvin.cameras import GRIPPER, STATIC, StaticCamera, gripper_view, static_view
    from vlaeval.envs.calvin.env import SUBSTEPS
    from vlaeval.envs.calvin.robot import GRIPPER_CAM_LINK, MOTOR_JOINTS, load_panda

    env = _make(cameras)
    floor_env = _make(cameras).unwrapped
    robot = floor_env.body_ids["robot"]
    grip_p = GRIPPER.projection()
    #: What each contestant consumes in the current rollout: the env its actions, a floor the
    #: env's motor commands.
    feeds: dict[str, Iterator] = {}

    def floor_step(name: str, world, render_static: Callable[[], object]) -> Callable[[], None]:
        client = world.client_id

        def raw_step() -> None:
            pb.setJointMotorControlArray(robot, MOTOR_JOINTS, pb.POSITION_CONTROL, **next(feeds[name]),
                                         physicsClientId=client)
            for _ in range(SUBSTEPS):
                pb.stepSimulation(physicsClientId=client)
            if "rgb_static" in cameras:
                render_static()
            if "rgb_gripper" in cameras:
                pos, orn = pb.getLinkState(robot, GRIPPER_CAM_LINK, computeForwardKinematics=True, physicsClientId=client)[4:6]
                pb.getCameraImage(world.gripper_size, world.gripper_size, gripper_view(pos, orn), grip_p, shadow=0,
                                  renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client)

        return raw_step

    # The floor renders the static camera the way the env does (fixed geometry rasterised once,
    # moving bodies every frame), so the ratio keeps measuring the env's logic, not its renderer.
    static_camera = StaticCamera(floor_env.client_id, floor_env.static_size, floor_env.fixed_visuals, arm=robot,
                                 arm_model=load_panda)
    steppers = {
        "env": lambda: env.step(next(feeds["env"])),
        "floor": floor_step("floor", floor_env, lambda: static_camera.render(rgb=True, depth=False)),
    }
    worlds = {"env": env.unwrapped, "floor": floor_env}
    if "rgb_static" in cameras:
        full_env = worlds["full-render floor"] = _make(cameras).unwrapped
        view, projection = static_view(), STATIC.projection()
        steppers["full-render floor"] = floor_step("full-render floor", full_env, lambda: pb.getCameraImage(
            full_env.static_size, full_env.static_size, view, projection, shadow=0, renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=full_env.client_id))
    clocks = {name: _Clock() for name in steppers}
    turns: dict[str, Callable[[int], None]] = {
        name: (lambda steps, fn=fn, clock=clocks[name]: clock.run(fn, steps)) for name, fn in steppers.items()}
    if upstream is not None:
        built = upstream.call("build", bool(cameras))
        views = ("static 200x200", "gripper 84x84") if cameras else ("no cameras",)
        if f" {SUBSTEPS} substeps" not in built or not all(view in built for view in views):
            raise RuntimeError(f"upstream's env is not the workload's configuration: {built}")
        upstream.call("load", [(r.seed, r.options, (), r.actions) for r in workload])
        clocks["upstream"] = _Clock()
        turns["upstream"] = lambda steps: clocks["upstream"].add(*upstream.call("run", steps), steps)
    for index, rollout in enumerate(workload):
        env.reset(seed=rollout.seed, options=dict(rollout.options))
        for name, world in worlds.items():
            if name != "env":
                world.reset(seed=rollout.seed, options=dict(rollout.options))
            feeds[name] = iter(rollout.actions if name == "env" else rollout.commands)
        if upstream is not None:
            upstream.call("reset", index)
        steps = len(rollout.actions)
        for start in range(0, steps, chunk):
            for turn in turns.values():
                turn(min(chunk, steps - start))
        final = [pb.getJointStates(robot, MOTOR_JOINTS, physicsClientId=w.client_id) for w in worlds.values()]
        if any(state != final[0] for state in final[1:]):
            raise RuntimeError("a floor's simulation diverged from the env's: it would not be doing the same physics work")
    for world in worlds.values():
        world.close()
    return {name: clock.rates() for name, clock in clocks.items()}


def _split(chains: Sequence[int], steps: Sequence[int], parts: int) -> list[list[int]]:
    """Chain indices dealt to ``parts`` processes, longest first onto the one with the fewest steps."""
    shares: list[list[int]] = [[] for _ in range(parts)]
    load = [0] * parts
    for chain in sorted(chains, key=lambda c: -steps[c]):
        i = load.index(min(load))
        shares[i].append(chain)
        load[i] += steps[chain]
    return shares


def throughput(chains: Sequence[Chain], processes: int, repeats: int, turn_chains: int,
               with_upstream: bool) -> dict[str, tuple[float, float]]:
    """Chains per minute of ``processes`` processes replaying ``chains`` with cameras off, ours and
    upstream's taking turns: every ``repeats``, each group of ``turn_chains`` consecutive chains
    is replayed by one side and then the other (dealt to the processes by step count, the same
    way on both sides; the side that goes first alternates from group to group), so load from
    other processes hits both alike.  Prints each repeat and the total; returns each side's
    (chains per wall-minute, chains per CPU-minute) over all turns."""
    sides = ["ours", "upstream"] if with_upstream else ["ours"]
    children = {side: [Child(side) for _ in range(processes)] for side in sides}
    steps = [len(c.actions) for c in chains]
    groups = [range(i, min(i + turn_chains, len(chains))) for i in range(0, len(chains), turn_chains)]
    deals = [_split(group, steps, processes) for group in groups]
    expected = sum(c.solved for c in chains)
    totals = {side: [0.0, 0.0] for side in sides}  # wall, CPU over all repeats
    ratios: dict[str, list[float]] = {"wall": [], "CPU": []}
    try:
        for side in sides:  # built and loaded in parallel, untimed
            for child in children[side]:
                child.send("build", False)
            for child in children[side]:
                child.receive()
            for child in children[side]:
                child.call("load", [(c.seed, c.options, c.tasks, c.actions) for c in chains])
        print(f"\nthroughput, cameras off: the expert's first {len(chains)} chains ({sum(steps)} steps, {expected} "
              f"subtasks solved on calvin) replayed by {processes} processes per side, the sides taking turns every "
              f"{turn_chains} chains")
        print(f"{'repeat':>6} {'side':<9} {'wall s':>7} {'CPU s':>7} {'chains/min':>11} {'chains/CPU-min':>15} "
              f"{'steps/s':>8} {'solved':>7}")
        for repeat in range(repeats):
            wall = {side: 0.0 for side in sides}
            cpu = {side: 0.0 for side in sides}
            solved = {side: 0 for side in sides}
            for number, deal in enumerate(deals):
                for side in (sides if (repeat * len(deals) + number) % 2 == 0 else sides[::-1]):
                    started = time.perf_counter()
                    for child, share in zip(children[side], deal):
                        child.send("replay", share)
                    results = [child.receive() for child in children[side]]
                    wall[side] += time.perf_counter() - started
                    cpu[side] += sum(r[1] for r in results)
                    solved[side] += sum(r[3] for r in results)
            for side in sides:
                totals[side][0] += wall[side]
                totals[side][1] += cpu[side]
                print(f"{repeat + 1:>6} {side:<9} {wall[side]:>7.1f} {cpu[side]:>7.1f} "
                      f"{len(chains) / wall[side] * 60:>11.1f} {len(chains) / cpu[side] * 60:>15.1f} "
                      f"{sum(steps) / wall[side]:>8.0f} {solved[side]:>7}")
            if solved["ours"] != expected:
                print(f"       warning: ours solved {solved['ours']} subtasks replaying, the expert {expected}: the "
                      f"replay is not deterministic")
            if with_upstream:
                ratios["wall"].append(wall["upstream"] / wall["ours"])
                ratios["CPU"].append(cpu["upstream"] / cpu["ours"])
    finally:
        for side in sides:
            for child in children[side]:
                child.close()
    replayed = len(chains) * repeats
    rates = {side: (replayed / wall * 60, replayed / cpu * 60) for side, (wall, cpu) in totals.items()}
    for side, (per_wall, per_cpu) in rates.items():
        wall, cpu = totals[side]
        print(f"{'all':>6} {side:<9} {wall:>7.1f} {cpu:>7.1f} {per_wall:>11.1f} {per_cpu:>15.1f}")
    if with_upstream:
        (ours_wall, ours_cpu), (up_wall, up_cpu) = rates["ours"], rates["upstream"]
        print(f"ours/upstream chains per minute with {processes} processes each: {ours_wall / up_wall:.2f}x over all "
              f"turns ({_span(ratios['wall'])}x by repeat); per CPU-minute {ours_cpu / up_cpu:.2f}x "
              f"({_span(ratios['CPU'])}x)")
        print("(upstream's 'solved' is its own oracle on the expert's actions replayed open loop, not its closed-loop "
              "success; both sides step the same actions)")
    return rates


def expert_chains(chains: int, workers: int) -> float:
    import vlaeval

    started = time.perf_counter()
    result = vlaeval.evaluate("expert", "calvin", episodes=chains, workers=workers, out="/tmp/vlaeval-bench", progress=False)
    wall = time.perf_counter() - started
    print(f"\nexpert on {chains} chains with {workers} worker(s): {wall:.1f} s wall "
          f"({wall / chains:.2f} s per chain), avg_len={result.summary().get('avg_len', float('nan')):.2f}")
    return wall


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=3, help="official chains of the expert workload (0 to skip)")
    parser.add_argument("--steps", type=int, default=300, help="steps of the random-action workload (0 to skip)")
    parser.add_argument("--chunk", type=int, default=25, help="steps each contestant runs before the next takes a turn")
    parser.add_argument("--throughput-chains", type=int, default=20, help="chains replayed per side (0 to skip)")
    parser.add_argument("--processes", type=int, default=2, help="processes per side in the throughput test")
    parser.add_argument("--repeats", type=int, default=3, help="times each side replays the throughput chains")
    parser.add_argument("--turn-chains", type=int, default=5,
                        help="chains one side replays before the other takes its turn in the throughput test")
    parser.add_argument("--expert-chains", type=int, default=100, help="0 to skip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-upstream", action="store_true",
                        help="do not measure upstream calvin_env even if installed (the fallback figures are used)")
    args = parser.parse_args(argv)

    unavailable = "--no-upstream given" if args.no_upstream else upstream_unavailable()
    upstream = None if unavailable else Child("upstream")
    if upstream is not None:
        upstream.send("build", False)  # it imports and builds while the expert is recorded here
    played = expert_chains_played(max(args.chains, args.throughput_chains))
    workloads = {}
    if args.chains:
        workloads["expert chains"] = [_with_commands(c.seed, c.options, c.actions) for c in played[:args.chains]]
    if args.steps:
        workloads["random actions"] = random_workload(args.steps)
    if upstream is not None:
        print(f"upstream: PlayTableSimEnv in a child process ({upstream.receive()}; with cameras: static 200x200, "
              f"gripper 84x84), in turns with ours every {args.chunk} steps")
    else:
        print(f"upstream NOT MEASURED ({unavailable}): 'x upstream' below divides by FALLBACK figures remembered "
              f"from another machine ({UPSTREAM_FALLBACK_STEPS_PER_CPU_S['both cameras']} and "
              f"{UPSTREAM_FALLBACK_STEPS_PER_CPU_S['cameras off']} steps/CPU-s), not comparable with this run")
    print(f"{'workload':<15} {'configuration':<14} {'steps':>6} {'env steps/s':>12} {'env steps/CPU-s':>16} "
          f"{'floor steps/CPU-s':>18} {'env/floor time':>15} {'upstream steps/CPU-s':>21} {'x upstream':>11} "
          f"{'x upstream wall':>16} {'full-render floor':>18}")
    verdicts = []
    try:
        for workload, rollouts in workloads.items():
            steps = sum(len(r.actions) for r in rollouts)
            for label, cameras in CAMERAS.items():
                rates = measure(cameras, rollouts, args.chunk, upstream)
                (env_wall, env_cpu), (_, floor_cpu) = rates["env"], rates["floor"]
                full = f"{rates['full-render floor'][1]:.1f}" if "full-render floor" in rates else "-"
                if "upstream" in rates:
                    up_wall, up_cpu = rates["upstream"]
                    up = f"{up_cpu:.1f}"
                    x_wall = f"{env_wall / up_wall:.2f}x"
                else:
                    up_cpu, up, x_wall = UPSTREAM_FALLBACK_STEPS_PER_CPU_S[label], "fallback*", "-"
                print(f"{workload:<15} {label:<14} {steps:>6} {env_wall:>12.1f} {env_cpu:>16.1f} {floor_cpu:>18.1f} "
                      f"{floor_cpu / env_cpu:>14.2f}x {up:>21} {env_cpu / up_cpu:>10.2f}x {x_wall:>16} {full:>18}")
                if label == "both cameras":
                    verdicts.append((f"both cameras >= {GOAL_CAMERAS_X_UPSTREAM:g}x upstream ({workload})",
                                     env_cpu / up_cpu, env_cpu / up_cpu >= GOAL_CAMERAS_X_UPSTREAM))
                else:
                    verdicts.append((f"cameras off env/floor <= {GOAL_OFF_OVER_FLOOR:.2f}x ({workload})",
                                     floor_cpu / env_cpu, floor_cpu / env_cpu <= GOAL_OFF_OVER_FLOOR))
    finally:
        if upstream is not None:
            upstream.close()
    print("env/floor time: the env's cost per step relative to raw stepSimulation + renders of the same bodies;")
    print("x upstream: env steps/CPU-s over upstream PlayTableSimEnv's on the same actions from the same state,")
    print("measured in turns with it (x upstream wall: the same in steps per wall second); full-render floor: the")
    print("floor with the static camera rasterising every body every frame.")
    if unavailable:
        print(f"* fallback: upstream not measured ({unavailable}); x upstream divides by remembered figures, "
              f"not this run's.")
    for goal, value, met in verdicts:
        caveat = " (fallback figures)" if unavailable and "upstream" in goal else ""
        print(f"goal {goal}: {value:.3f}x, {'met' if met else 'NOT met'}{caveat}")
    if args.throughput_chains:
        throughput(played[:args.throughput_chains], args.processes, args.repeats, args.turn_chains, not unavailable)
    if args.expert_chains:
        expert_chains(args.expert_chains, args.workers)


if __name__ == "__main__":
    main()
