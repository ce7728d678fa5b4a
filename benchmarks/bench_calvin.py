"""CALVIN env speed against a raw-PyBullet floor measured in the same run.

    python benchmarks/bench_calvin.py [--chains 3] [--steps 300] [--expert-chains 100] [--workers 2] [--chunk 25]

Prints steps per second (wall and per CPU-second) of ``vlaeval/Calvin-v0`` with both cameras
(200x200 static + 84x84 gripper) and with cameras off, next to a floor that does the same number
of ``stepSimulation`` calls and camera renders of the same bodies with no env logic, simulating
exactly what the env simulates (it replays the env's recorded motor commands; the final states
are checked to match bit for bit); the ratio is what the env's logic (IK, contacts, predicates,
observation building) adds.  The floor renders the static camera as the env does
(:class:`~vlaeval.envs.calvin.cameras.StaticCamera`: fixed geometry rasterised once); a second
floor that rasterises every body every frame shows what that saves.  Env and floors run in
separate env instances and take turns in chunks of steps, so load from other processes on a
shared machine skews none of them against the others.

Two workloads, because what a step costs depends on what the arm does (contacts are physics
work, and the IK's share of a step is larger when the physics is light):

* ``expert chains``: the scripted expert's actions on the first ``--chains`` official chains,
  recorded once through the harness's own episode loop and replayed from the same resets: the
  states an evaluation visits, chained subtasks and all.  The goals are judged on this workload.
* ``random actions``: ``--steps`` uniform random actions from chain 0's initial state, a common
  stress test (the arm flails; the blocks mostly rest).

Then the wall time of the scripted expert on the first N official chains.  Goals (issue 3):
>= 40 steps per CPU-second with both cameras (5x upstream's 7-8), >= 140 steps/s with cameras
off, logic overhead under 25 % of the floor.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

UPSTREAM_STEPS_PER_CPU_S = {"both cameras": 7.5, "cameras off": 140.0}
CAMERAS = {"both cameras": ("rgb_static", "rgb_gripper"), "cameras off": ()}


@dataclass(frozen=True)
class Rollout:
    """One episode's reset and actions, and the motor commands the env sent for them (one
    ``setJointMotorControlArray`` per step), which the floors replay."""

    seed: int
    options: dict
    actions: tuple[np.ndarray, ...]
    commands: tuple[dict[str, list[float]], ...]


class _Clock:
    """Wall and CPU time accumulated over the chunks one contestant ran."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.steps = 0

    def run(self, fn: Callable[[], None], steps: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            fn()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
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


def _with_commands(seed: int, options: dict, actions: list[np.ndarray]) -> Rollout:
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


def expert_workload(chains: int) -> list[Rollout]:
    """The expert's actions on the first official chains, played by the harness's episode loop
    (agent reset per subtask, 360 steps each, chain stops at a failure)."""
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
    rollouts = []
    for episode in CalvinSuite().episodes("D->D", 0)[:chains]:
        env.actions = []
        run_episode(env, agent, episode, ctx)
        rollouts.append(_with_commands(episode.seed, dict(episode.options), env.actions))
    env.close()
    return rollouts


def random_workload(steps: int) -> list[Rollout]:
    from vlaeval.envs.calvin.suite import CalvinSuite

    episode = CalvinSuite().episodes("D->D", 0)[0]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 7)).astype(np.float32)
    return [_with_commands(episode.seed, dict(episode.options), list(actions))]


def measure(cameras: tuple[str, ...], workload: list[Rollout], chunk: int = 25) -> dict[str, tuple[float, float]]:
    """Rates of the env, the floor and (with the static camera) a floor that renders every frame in
    full.  Each runs in its own env instance; every episode starts from the same reset in all of
    them (untimed), and they take turns in chunks of ``chunk`` steps, so a change in machine load
    during the run hits all of them alike."""
    import pybullet as pb

    from vlaeval.envs.calvin.cameras import GRIPPER, STATIC, StaticCamera, gripper_view, static_view
    from vlaeval.envs.calvin.env import SUBSTEPS
    from vlaeval.envs.calvin.robot import GRIPPER_CAM_LINK, MOTOR_JOINTS

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
    static_camera = StaticCamera(floor_env.client_id, floor_env.static_size, floor_env.fixed_visuals)
    contestants = {
        "env": lambda: env.step(next(feeds["env"])),
        "floor": floor_step("floor", floor_env, lambda: static_camera.render(rgb=True, depth=False)),
    }
    worlds = {"env": env.unwrapped, "floor": floor_env}
    if "rgb_static" in cameras:
        full_env = worlds["full-render floor"] = _make(cameras).unwrapped
        view, projection = static_view(), STATIC.projection()
        contestants["full-render floor"] = floor_step("full-render floor", full_env, lambda: pb.getCameraImage(
            full_env.static_size, full_env.static_size, view, projection, shadow=0, renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=full_env.client_id))
    clocks = {name: _Clock() for name in contestants}
    for rollout in workload:
        env.reset(seed=rollout.seed, options=dict(rollout.options))
        for name, world in worlds.items():
            if name != "env":
                world.reset(seed=rollout.seed, options=dict(rollout.options))
            feeds[name] = iter(rollout.actions if name == "env" else rollout.commands)
        steps = len(rollout.actions)
        for start in range(0, steps, chunk):
            for name, fn in contestants.items():
                clocks[name].run(fn, min(chunk, steps - start))
        final = [pb.getJointStates(robot, MOTOR_JOINTS, physicsClientId=w.client_id) for w in worlds.values()]
        if any(state != final[0] for state in final[1:]):
            raise RuntimeError("a floor's simulation diverged from the env's: it would not be doing the same physics work")
    for world in worlds.values():
        world.close()
    return {name: clock.rates() for name, clock in clocks.items()}


def expert_chains(chains: int, workers: int) -> float:
    import vlaeval

    started = time.perf_counter()
    result = vlaeval.evaluate("expert", "calvin", episodes=chains, workers=workers, out="/tmp/vlaeval-bench", progress=False)
    wall = time.perf_counter() - started
    print(f"expert on {chains} chains with {workers} worker(s): {wall:.1f} s wall "
          f"({wall / chains:.2f} s per chain), avg_len={result.summary().get('avg_len', float('nan')):.2f}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=3, help="official chains of the expert workload")
    parser.add_argument("--steps", type=int, default=300, help="steps of the random-action workload (0 to skip)")
    parser.add_argument("--expert-chains", type=int, default=100, help="0 to skip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=25, help="steps each contestant runs before the next takes a turn")
    args = parser.parse_args()

    workloads = {"expert chains": expert_workload(args.chains)}
    if args.steps:
        workloads["random actions"] = random_workload(args.steps)
    print(f"{'workload':<15} {'configuration':<14} {'steps':>6} {'env steps/s':>12} {'env steps/CPU-s':>16} "
          f"{'floor steps/CPU-s':>18} {'env/floor time':>15} {'x upstream':>11} {'full-render floor':>18}")
    for workload, rollouts in workloads.items():
        steps = sum(len(r.actions) for r in rollouts)
        for label, cameras in CAMERAS.items():
            rates = measure(cameras, rollouts, args.chunk)
            (env_wall, env_cpu), (_, floor_cpu) = rates["env"], rates["floor"]
            full = f"{rates['full-render floor'][1]:.1f}" if "full-render floor" in rates else "-"
            print(f"{workload:<15} {label:<14} {steps:>6} {env_wall:>12.1f} {env_cpu:>16.1f} {floor_cpu:>18.1f} "
                  f"{floor_cpu / env_cpu:>14.2f}x {env_cpu / UPSTREAM_STEPS_PER_CPU_S[label]:>10.1f}x {full:>18}")
    print("env/floor time: the env's cost per step relative to raw stepSimulation + renders (goal < 1.25x, on the")
    print("expert chains); x upstream: against the upstream CALVIN env's measured 7.5 steps/CPU-s (both cameras) and")
    print("140 (cameras off); full-render floor: the floor with the static camera rasterising every body every frame.")
    if args.expert_chains:
        expert_chains(args.expert_chains, args.workers)


if __name__ == "__main__":
    main()
