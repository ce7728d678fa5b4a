"""Evaluation throughput at scale: batched lock-step envs, local workers and Ray, against 1 env.

    python benchmarks/bench_scale.py [--episodes 4] [--envs 4] [--workers 2] [--repeats 1] [--threads 1]

Runs ``kosmos-lstm-tiny`` (random weights, so every CALVIN chain fails its first subtask after
the full 360 steps: equal-length episodes) on ``calvin`` with both cameras, and reports chains
per minute for

  (a) 1 env, sequential (``--envs-per-worker 1 --workers 1``),
  (b) ``--envs`` lock-step envs with batched inference in one process (``--envs-per-worker N``,
      envs in subprocesses),
  (c) ``--workers`` local worker processes,
  (d) ``--workers`` Ray tasks on a local Ray instance (``--executor ray``; the instance is started
      before timing, as a cluster would already be running, and its start-up is printed apart),

each as a ratio to (a) in the same run, with the CPU seconds spent per chain (this process and
its env subprocesses / local workers; not measurable for Ray workers), which shows what a
configuration costs apart from how many idle cores the machine had.  Configurations are interleaved per repeat so machine
load hits them alike; every timing is the wall time of a whole ``vlaeval.evaluate`` call (agent
and env start-up, worker spawn, storing results included).  The per-episode rows of every
configuration are checked to be equal to (a)'s (``success``/``steps``/``error``).  Goals (issue:
evaluation at scale): (b) or (c) >= 1.7x (a); (d) within 15 % of (c).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

STABLE = ["episode", "position", "task", "success", "steps", "error"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=4, help="CALVIN chains per configuration (360 steps each)")
    parser.add_argument("--envs", type=int, default=4, help="lock-step envs for (b)")
    parser.add_argument("--workers", type=int, default=2, help="workers for (c) and (d)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="agent intra-op threads (cpu-performance.md §2.3)")
    parser.add_argument("--runtime", default="auto", help="agent runtime: auto, torch, onnx")
    parser.add_argument("--only", default="abcd", help="subset of configurations to run, e.g. 'ab'")
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on loopback only
    import vlaeval

    options = {"num_threads": args.threads, "runtime": args.runtime}
    configs = {
        "a": ("1 env, sequential", dict(workers=1, envs_per_worker=1)),
        "b": (f"{args.envs} envs batched, 1 process", dict(workers=1, envs_per_worker=args.envs, env_mode="async")),
        "c": (f"{args.workers} local workers", dict(workers=args.workers)),
        "d": (f"Ray, {args.workers} workers", dict(workers=args.workers, executor="ray")),
    }
    chosen = [k for k in "abcd" if k in args.only]
    if "d" in chosen:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
        print(f"local Ray instance started in {time.perf_counter() - started:.1f} s (not counted)")
    out = tempfile.mkdtemp(prefix="vlaeval-bench-scale-")
    times: dict[str, list[float]] = {k: [] for k in chosen}
    cpu: dict[str, list[float]] = {k: [] for k in chosen}
    frames: dict[str, object] = {}
    for repeat in range(args.repeats):
        for key in chosen:
            label, kw = configs[key]
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            result = vlaeval.evaluate("kosmos-lstm-tiny", "calvin", episodes=args.episodes, out=out, progress=False,
                                      agent_options=options, **kw)
            wall = time.perf_counter() - started
            times[key].append(wall)
            cpu[key].append(_cpu_seconds() - cpu_started)
            frames.setdefault(key, result.results)
            print(f"repeat {repeat + 1} ({key}) {label}: {wall:.1f} s, {args.episodes / wall * 60:.2f} chains/min", flush=True)
    print()
    base = statistics.median(times["a"]) if "a" in times else None
    print(f"{'configuration':<28} {'chains/min':>10} {'ratio to (a)':>12} {'CPU s/chain':>11}  rows equal to (a)")
    for key in chosen:
        label, _ = configs[key]
        wall = statistics.median(times[key])
        ratio = f"{base / wall:.2f}x" if base else "-"
        same = "-"
        if "a" in frames and key != "a":
            a, k = frames["a"], frames[key]
            same = "yes" if a[STABLE].reset_index(drop=True).equals(k[STABLE].reset_index(drop=True)) else "NO"
        cpu_text = "-" if key == "d" else f"{statistics.median(cpu[key]) / args.episodes:.1f}"  # Ray workers are not our children
        print(f"({key}) {label:<24} {args.episodes / wall * 60:>10.2f} {ratio:>12} {cpu_text:>11}  {same}")
    if "c" in times and "d" in times:
        print(f"Ray vs local workers: {statistics.median(times['c']) / statistics.median(times['d']):.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (env subprocesses, local workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
