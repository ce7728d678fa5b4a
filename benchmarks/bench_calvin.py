"""CALVIN env speed against a raw-PyBullet floor measured in the same run.

    python benchmarks/bench_calvin.py [--steps 300] [--expert-chains 100] [--workers 2] [--chunk 25]

Prints steps per second (wall and per CPU-second) of ``vlaeval/Calvin-v0`` with both cameras
(200x200 static + 84x84 gripper) and with cameras off, next to a floor that does the same number
of ``stepSimulation`` calls and camera renders of the same bodies with no env logic, simulating
exactly what the env simulates (it replays the env's recorded motor commands; the final states
are checked to match bit for bit); the ratio is what the env's logic (IK, contacts, predicates,
observation building) adds.  The floor renders the static camera as the env does
(:class:`~vlaeval.envs.calvin.cameras.StaticCamera`: fixed geometry rasterised once); a second
floor that rasterises every body every frame shows what that saves.  Env and floors run in
separate env instances and take turns in chunks of steps, so load from other processes on a
shared machine skews none of them against the others.  Then the wall time of the scripted expert
on the first N official chains.  Goals (issue 3): >= 40 steps per CPU-second with both cameras
(5x upstream's 7-8), >= 140 steps/s with cameras off, logic overhead under 25 % of the floor.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

UPSTREAM_STEPS_PER_CPU_S = {"both cameras": 7.5, "cameras off": 140.0}


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


def measure(cameras: tuple[str, ...], steps: int, chunk: int = 25) -> dict[str, tuple[float, float]]:
    """Rates of the env, the floor and (with the static camera) a floor that renders every frame in
    full.  Each runs in its own env instance and they take turns in chunks of ``chunk`` steps, so
    a change in machine load during the run hits all of them alike."""
    import gymnasium
    import pybullet as pb

    import vlaeval.envs.registration  # noqa: F401
    from vlaeval.envs.calvin.cameras import GRIPPER, STATIC, StaticCamera, gripper_view, static_view
    from vlaeval.envs.calvin.env import SUBSTEPS
    from vlaeval.envs.calvin.robot import GRIPPER_CAM_LINK, MOTOR_JOINTS
    from vlaeval.envs.calvin.suite import CalvinSuite

    episode = CalvinSuite().episodes("D->D", 0)[0]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, 7)).astype(np.float32)

    def make() -> gymnasium.Env:
        """A reset env as ``gymnasium.make`` returns it, wrappers included: the env contestant
        steps that, because it is what the harness steps (the floors only use its world)."""
        env = gymnasium.make("vlaeval/Calvin-v0", scene="D", cameras=cameras)
        env.reset(seed=episode.seed, options=dict(episode.options))
        return env

    # An untimed pass records the motor command (the env's one setJointMotorControlArray call per
    # step) the controller sent at every step; the floors send the same commands, so they simulate
    # exactly what the env simulates (checked below: same final joint state, bit for bit).
    env = make()
    robot = env.unwrapped.body_ids["robot"]
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
    if len(commands) != steps:
        raise RuntimeError(f"expected one motor command per step, recorded {len(commands)} for {steps} steps")
    env.reset(seed=episode.seed, options=dict(episode.options))
    env_actions = iter(actions)

    def floor_step(floor_env: gymnasium.Env, render_static: Callable[[], object]) -> Callable[[], None]:
        client, grip_p = floor_env.client_id, GRIPPER.projection()
        replay = iter(commands)

        def raw_step() -> None:
            pb.setJointMotorControlArray(robot, MOTOR_JOINTS, pb.POSITION_CONTROL, **next(replay), physicsClientId=client)
            for _ in range(SUBSTEPS):
                pb.stepSimulation(physicsClientId=client)
            if "rgb_static" in cameras:
                render_static()
            if "rgb_gripper" in cameras:
                pos, orn = pb.getLinkState(robot, GRIPPER_CAM_LINK, computeForwardKinematics=True, physicsClientId=client)[4:6]
                pb.getCameraImage(floor_env.gripper_size, floor_env.gripper_size, gripper_view(pos, orn), grip_p, shadow=0,
                                  renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client)

        return raw_step

    # The floor renders the static camera the way the env does (fixed geometry rasterised once,
    # moving bodies every frame), so the ratio keeps measuring the env's logic, not its renderer.
    floor_env = make().unwrapped
    static_camera = StaticCamera(floor_env.client_id, floor_env.static_size, floor_env.fixed_visuals)
    contestants = {
        "env": lambda: env.step(next(env_actions)),
        "floor": floor_step(floor_env, lambda: static_camera.render(rgb=True, depth=False)),
    }
    envs = [env.unwrapped, floor_env]
    if "rgb_static" in cameras:
        full_env = make().unwrapped
        envs.append(full_env)
        view, projection = static_view(), STATIC.projection()
        contestants["full-render floor"] = floor_step(full_env, lambda: pb.getCameraImage(
            full_env.static_size, full_env.static_size, view, projection, shadow=0, renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=full_env.client_id))
    clocks = {name: _Clock() for name in contestants}
    for start in range(0, steps, chunk):
        for name, fn in contestants.items():
            clocks[name].run(fn, min(chunk, steps - start))
    final = [pb.getJointStates(robot, MOTOR_JOINTS, physicsClientId=e.client_id) for e in envs]
    if any(state != final[0] for state in final[1:]):
        raise RuntimeError("a floor's simulation diverged from the env's: it would not be doing the same physics work")
    for e in envs:
        e.close()
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
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--expert-chains", type=int, default=100, help="0 to skip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=25, help="steps each contestant runs before the next takes a turn")
    args = parser.parse_args()

    print(f"{'configuration':<14} {'env steps/s':>12} {'env steps/CPU-s':>16} {'floor steps/CPU-s':>18} "
          f"{'env/floor time':>15} {'x upstream':>11} {'full-render floor':>18}")
    for label, cameras in (("both cameras", ("rgb_static", "rgb_gripper")), ("cameras off", ())):
        rates = measure(cameras, args.steps, args.chunk)
        (env_wall, env_cpu), (_, floor_cpu) = rates["env"], rates["floor"]
        full = f"{rates['full-render floor'][1]:.1f}" if "full-render floor" in rates else "-"
        print(f"{label:<14} {env_wall:>12.1f} {env_cpu:>16.1f} {floor_cpu:>18.1f} {floor_cpu / env_cpu:>14.2f}x "
              f"{env_cpu / UPSTREAM_STEPS_PER_CPU_S[label]:>10.1f}x {full:>18}")
    print("env/floor time: the env's cost per step relative to raw stepSimulation + renders (goal < 1.25x);")
    print("x upstream: against the upstream CALVIN env's measured 7.5 steps/CPU-s (both cameras) and 140 (cameras off);")
    print("full-render floor: the floor with the static camera rasterising every body every frame (steps/CPU-s).")
    if args.expert_chains:
        expert_chains(args.expert_chains, args.workers)


if __name__ == "__main__":
    main()
