"""``vlaeval/Simpler-v0`` speed against plain ManiSkill3 ``PickCube-v1`` with the same camera, same run.

    VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json \
        nice -n 15 python benchmarks/bench_simpler.py [--steps 150] [--size 224] [--task pick_coke_can]

Measures, for each env: cold start (``gym.make`` + first ``reset``), steps per second with a
rendered RGB camera of the given size (random actions), and reset time.  Both run
``sim_backend="cpu"``, ``pd_ee_delta_pose``, 100 Hz physics; PickCube is also configured at the
suite's 5 Hz control rate so both do the same physics work per step (its default 20 Hz is shown
too).  Goal (issue): simpler within 20 % of PickCube's steps/s.  The amortisation line shows
the cold start divided over an evaluation of N episodes of the task's budget.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _bench(make, reset, step, steps: int) -> dict[str, float]:
    t0 = time.perf_counter()
    env = make()
    reset(env)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(3):
        reset(env)
    reset_s = (time.perf_counter() - t0) / 3
    rng = np.random.default_rng(0)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step(env, rng)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    env.close()
    return {"cold_start_s": cold, "reset_s": reset_s, "steps_per_s": steps / wall, "steps_per_cpu_s": steps / max(cpu, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--task", default="pick_coke_can")
    parser.add_argument("--episodes", type=int, default=100, help="episodes for the amortisation line")
    args = parser.parse_args()

    import gymnasium
    import mani_skill.envs  # noqa: F401
    import torch

    import vlaeval.envs.registration  # noqa: F401
    from vlaeval.envs.simpler.spec import TASK_INFO
    from vlaeval.envs.simpler.suite import SimplerSuite

    episode = next(e for e in SimplerSuite().episodes("variant-aggregation", 0) if e.tasks[0] == args.task)
    size = (args.size, args.size)

    def simpler_step(env, rng):
        a = rng.uniform(-1, 1, 7) * np.array([0.05, 0.05, 0.05, 0.1, 0.1, 0.1, 1.0])
        env.step(a.astype(np.float32))

    def simpler_reset(env):
        env.reset(seed=episode.seed, options=dict(episode.options))

    def pickcube(control_freq):
        def make():
            return gymnasium.make("PickCube-v1", obs_mode="rgb", control_mode="pd_ee_delta_pose", sim_backend="cpu",
                                  render_backend="cpu", sensor_configs=dict(width=args.size, height=args.size),
                                  sim_config=dict(sim_freq=100, control_freq=control_freq))
        return make

    def pc_step(env, rng):
        env.step(torch.as_tensor(rng.uniform(-1, 1, 7).astype(np.float32))[None])

    def pc_reset(env):
        env.reset(seed=0)

    results = {
        "PickCube-v1 (5 Hz control)": _bench(pickcube(5), pc_reset, pc_step, args.steps),
        f"vlaeval/Simpler-v0 {args.task}": _bench(
            lambda: gymnasium.make("vlaeval/Simpler-v0", render=True, overlay=False, image_size=size),
            simpler_reset, simpler_step, args.steps),
        f"vlaeval/Simpler-v0 {args.task} + overlay": _bench(
            lambda: gymnasium.make("vlaeval/Simpler-v0", render=True, overlay=True, image_size=size),
            simpler_reset, simpler_step, args.steps),
        "vlaeval/Simpler-v0 state only (expert)": _bench(
            lambda: gymnasium.make("vlaeval/Simpler-v0", render=False), simpler_reset, simpler_step, args.steps),
        "PickCube-v1 (default 20 Hz control)": _bench(pickcube(20), pc_reset, pc_step, args.steps),
    }
    print(f"{'env':45s} {'cold start s':>12s} {'reset s':>8s} {'steps/s':>8s} {'steps/CPU-s':>11s}")
    for name, r in results.items():
        print(f"{name:45s} {r['cold_start_s']:12.1f} {r['reset_s']:8.3f} {r['steps_per_s']:8.1f} {r['steps_per_cpu_s']:11.1f}")
    base = results["PickCube-v1 (5 Hz control)"]["steps_per_s"]
    ours = results[f"vlaeval/Simpler-v0 {args.task}"]
    print(f"simpler / PickCube steps/s: {ours['steps_per_s'] / base:.2f} (goal >= 0.80)")
    budget = TASK_INFO[args.task].budget
    work = args.episodes * (ours["reset_s"] + budget / ours["steps_per_s"])
    print(f"amortisation: cold start {ours['cold_start_s']:.1f} s vs {args.episodes} episodes x {budget} steps "
          f"= {work:.0f} s of episodes -> {100 * ours['cold_start_s'] / (ours['cold_start_s'] + work):.1f} % of the run")


if __name__ == "__main__":
    main()
