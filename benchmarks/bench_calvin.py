"""CALVIN env speed against a raw-PyBullet floor measured in the same run.

    python benchmarks/bench_calvin.py [--steps 300] [--expert-chains 100] [--workers 2]

Prints steps per second (wall and per CPU-second) of ``vlaeval/Calvin-v0`` with both cameras
(200x200 static + 84x84 gripper) and with cameras off, next to a floor that does the same number
of ``stepSimulation`` calls and camera renders of the same bodies, moving the same way (it replays
the joint positions the env's controller reached as raw motor targets) with no env logic; the
ratio is what the env's logic (IK, contacts, predicates, observation building) adds.  Then the wall time
of the scripted expert on the first N official chains.  Goals (issue 3): >= 40 steps per
CPU-second with both cameras (5x upstream's 7-8), >= 140 steps/s with cameras off, logic
overhead under 25 % of the floor.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

UPSTREAM_STEPS_PER_CPU_S = {"both cameras": 7.5, "cameras off": 140.0}


def _timed(fn: Callable[[], None], steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second) of ``steps`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - wall), steps / max(time.process_time() - cpu, 1e-9)


def measure(cameras: tuple[str, ...], steps: int) -> dict[str, tuple[float, float]]:
    import gymnasium
    import pybullet as pb

    import vlaeval.envs.registration  # noqa: F401
    from vlaeval.envs.calvin.cameras import GRIPPER, STATIC, gripper_view, static_view
    from vlaeval.envs.calvin.env import SUBSTEPS
    from vlaeval.envs.calvin.robot import ARM_JOINTS, FINGER_JOINTS, GRIPPER_CAM_LINK
    from vlaeval.envs.calvin.suite import CalvinSuite

    episode = CalvinSuite().episodes("D->D", 0)[0]
    env = gymnasium.make("vlaeval/Calvin-v0", scene="D", cameras=cameras).unwrapped
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, 7)).astype(np.float32)
    robot = env.body_ids["robot"]
    joints = list(ARM_JOINTS + FINGER_JOINTS)

    # An untimed pass records the joint positions the controller reached after every step; the
    # floor replays them as motor targets, so both do the same physics work (a settled arm
    # simulates much faster than a moving one, which would flatter the env's overhead).
    env.reset(seed=episode.seed, options=dict(episode.options))
    reached = []
    for action in actions:
        env.step(action)
        reached.append([s[0] for s in pb.getJointStates(robot, joints, physicsClientId=env.client_id)])

    env.reset(seed=episode.seed, options=dict(episode.options))
    it = iter(actions)
    env_rate = _timed(lambda: env.step(next(it)), steps)

    env.reset(seed=episode.seed, options=dict(episode.options))
    client = env.client_id
    static_v, static_p, grip_p = static_view(), STATIC.projection(), GRIPPER.projection()
    targets = iter(reached)

    def raw_step() -> None:
        pb.setJointMotorControlArray(robot, joints, pb.POSITION_CONTROL, targetPositions=next(targets), physicsClientId=client)
        for _ in range(SUBSTEPS):
            pb.stepSimulation(physicsClientId=client)
        if "rgb_static" in cameras:
            pb.getCameraImage(env.static_size, env.static_size, static_v, static_p, shadow=0, renderer=pb.ER_TINY_RENDERER,
                              flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client)
        if "rgb_gripper" in cameras:
            pos, orn = pb.getLinkState(robot, GRIPPER_CAM_LINK, computeForwardKinematics=True, physicsClientId=client)[4:6]
            pb.getCameraImage(env.gripper_size, env.gripper_size, gripper_view(pos, orn), grip_p, shadow=0,
                              renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client)

    floor_rate = _timed(raw_step, steps)
    env.close()
    return {"env": env_rate, "floor": floor_rate}


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
    args = parser.parse_args()

    print(f"{'configuration':<14} {'env steps/s':>12} {'env steps/CPU-s':>16} {'floor steps/CPU-s':>18} {'env/floor time':>15} {'x upstream':>11}")
    for label, cameras in (("both cameras", ("rgb_static", "rgb_gripper")), ("cameras off", ())):
        rates = measure(cameras, args.steps)
        (env_wall, env_cpu), (_, floor_cpu) = rates["env"], rates["floor"]
        print(f"{label:<14} {env_wall:>12.1f} {env_cpu:>16.1f} {floor_cpu:>18.1f} {floor_cpu / env_cpu:>14.2f}x "
              f"{env_cpu / UPSTREAM_STEPS_PER_CPU_S[label]:>10.1f}x")
    print("env/floor time: the env's cost per step relative to raw stepSimulation + renders (goal < 1.25x);")
    print("x upstream: against the upstream CALVIN env's measured 7.5 steps/CPU-s (both cameras) and 140 (cameras off).")
    if args.expert_chains:
        expert_chains(args.expert_chains, args.workers)


if __name__ == "__main__":
    main()
