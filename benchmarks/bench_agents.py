"""Per-step latency (batch 1) and throughput (batch 8) of ``kosmos-lstm-tiny``: torch eager vs ONNX Runtime.

Both runtimes run in the same process on the same inputs, interleaved repeat by repeat so
machine load hits both alike.  Each repeat records wall time and process CPU time; on a shared
machine the CPU-time ratio is the one that holds up (cpu-performance.md, "how the numbers were
taken").  Usage: ``python benchmarks/bench_agents.py [--threads 1] [--repeats 7] [--calls 30]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch

from vlaeval.agents.kosmos import KosmosLSTMAgent, get_preset
from vlaeval.agents.kosmos.export import example_inputs
from vlaeval.agents.kosmos.model import build_model
from vlaeval.agents.kosmos.runtime import create_runner


def _time(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Seconds per call (wall, CPU) over ``calls`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        call()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def _compare(label: str, batch: int, calls: dict[str, Callable[[], object]], repeats: int, n: int) -> None:
    """Interleaved repeats of each runtime's call; prints medians and the ONNX/torch ratio."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for call in calls.values():
        _time(call, 3)  # warm-up
    for _ in range(repeats):
        for name, call in calls.items():
            samples[name].append(_time(call, n))
    med = {k: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v)) for k, v in samples.items()}
    for name, (wall, cpu) in med.items():
        print(f"  {label} B{batch} {name:5s}: wall {wall * 1e3:7.2f} ms/call ({batch / wall:7.1f} samples/s), "
              f"CPU {cpu * 1e3:7.2f} ms/call")
    print(f"  {label} B{batch} ONNX Runtime speed-up over torch eager: wall {med['torch'][0] / med['onnx'][0]:.2f}x, "
          f"CPU {med['torch'][1] / med['onnx'][1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="kosmos-lstm-tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(get_preset(args.preset))
    with tempfile.TemporaryDirectory() as workdir:
        runners = {n: create_runner(model, n, workdir=workdir, num_threads=args.threads) for n in ("torch", "onnx")}
        print(f"{args.preset}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
              f"{args.threads} thread(s), median of {args.repeats} repeats x {args.calls} calls, full 16-step window")
        for batch in (1, 8):
            inputs = example_inputs(model, batch=batch, text_len=6)
            inputs["history_mask"][:] = 1.0
            calls = {n: functools.partial(r, inputs) for n, r in runners.items()}
            _compare("network", batch, calls, args.repeats, args.calls)
    # End to end through the agent (tokenising from cache, numpy state, decoding), batch 1.
    rng = np.random.default_rng(0)
    obs = {"rgb_static": rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)}
    agents = {rt: KosmosLSTMAgent(args.preset, runtime=rt, num_threads=args.threads) for rt in ("torch", "onnx")}
    calls = {rt: functools.partial(a.act, obs, "open the drawer") for rt, a in agents.items()}
    _compare("agent.act", 1, calls, args.repeats, args.calls)
    for agent in agents.values():
        agent.close()


if __name__ == "__main__":
    main()
