"""Runtime parity: closed-loop success per runtime, open-loop action differences on shared observations.

The toy tests use an agent whose "runtimes" differ in known ways, so every number parity reports
can be checked exactly; the slow test holds kosmos-lstm-tiny's torch and ONNX runtimes (and
TensorRT where it is importable and a GPU is present) to identical results on three calvin chains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_cli_process
from vlaeval.conventions import AgentSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.parity import PARITY_FILE, run_parity

AGENT = "tests.evaluators.test_parity:RuntimeSolver"
#: ONNX Runtime against torch on the same FP32 graph (tests/agents/test_onnx_export.py); measured
#: differences are around 1e-7.
KOSMOS_ACTION_TOLERANCE = 1e-4


class RuntimeSolver:
    """The toy solver with a ``runtime`` option: ``exact``; ``offset`` adds 1e-3 to every step's
    motion; ``broken`` pushes the wrong way in the episodes whose seed is odd."""

    spec = AgentSpec(action_type="relative_ee", observation_keys=("state",))

    def __init__(self, runtime: str = "exact") -> None:
        if runtime not in ("exact", "offset", "broken"):
            raise ValueError(f"runtime {runtime!r} is not available here")
        self.runtime = runtime
        self.episode_seed = 0

    def seed(self, seed: int) -> None:
        self.episode_seed = seed

    def reset(self) -> None:
        pass

    def act(self, observation: Any, instruction: str) -> np.ndarray:
        x, goal = observation["state"]
        step = float(np.clip((goal - x) / 0.1, -1, 1))
        if self.runtime == "offset":
            step += 1e-3
        elif self.runtime == "broken" and self.episode_seed % 2:
            step = -step
        return np.array([step, 0, 0, 0, 0, 0, 1], dtype=np.float32)


def test_parity_reports_known_runtime_differences(tmp_path: Path) -> None:
    from vlaeval.envs.suite import episode_seed

    n = 12
    odd = sum(episode_seed(0, i) % 2 for i in range(n))
    assert 0 < odd < n
    result = run_parity(AGENT, ["exact", "offset", "broken"], "toy", out=tmp_path, episodes=n)
    exact, offset, broken = result.closed_loop
    assert (exact.runtime, exact.success_rate, exact.difference) == ("exact", 1.0, None)
    # broken fails exactly its odd-seed episodes: a paired difference of -odd/n, exact McNemar p
    assert broken.success_rate == pytest.approx((n - odd) / n) and broken.same_rows == n - odd
    assert broken.difference == pytest.approx(-odd / n) and broken.low < broken.difference < broken.high
    assert broken.p_value == pytest.approx(min(1.0, 2 * 0.5**odd))
    assert offset.success_rate == 1.0 and offset.difference == 0.0
    assert Path(broken.run_dir) == tmp_path / "broken" and (tmp_path / "broken" / "manifest.json").exists()

    # open loop: every runtime is asked on the reference's observations, so the offset shows as
    # exactly 1e-3 on the first action dimension at every step, not as a growing drift
    by_name = {a.runtime: a for a in result.open_loop}
    steps = by_name["offset"].steps
    assert steps == by_name["broken"].steps > n
    assert by_name["offset"].max_abs == pytest.approx(1e-3, rel=1e-3) and by_name["offset"].mean_abs == pytest.approx(1e-3 / 7, rel=1e-3)
    assert by_name["offset"].max_abs_per_dim[1:] == (0.0,) * 6 and by_name["offset"].differing_steps == steps
    assert by_name["broken"].max_abs_per_dim[0] > 0.5 and 0 < by_name["broken"].differing_steps < steps
    assert result.replay_matches == n  # the replay reproduced the reference's closed loop

    saved = json.loads((tmp_path / PARITY_FILE).read_text())
    assert saved["reference"] == "exact" and [c["runtime"] for c in saved["closed_loop"]] == ["exact", "offset", "broken"]
    table = result.table()
    assert f"reproduced exact's closed-loop rows in {n}/{n} episodes" in table and "McNemar" in table


def test_parity_refuses_bad_runtimes_before_running_anything(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match="at least two different runtimes"):
        run_parity(AGENT, ["exact", "exact"], "toy", out=tmp_path, episodes=2)
    with pytest.raises(VlaevalError, match="drop --agent-opt runtime="):
        run_parity(AGENT, ["exact", "broken"], "toy", out=tmp_path, episodes=2, agent_options={"runtime": "exact"})
    with pytest.raises(VlaevalError, match="runtime 'tensorrt' is not available here"):
        run_parity(AGENT, ["exact", "tensorrt"], "toy", out=tmp_path, episodes=2)
    assert not any(tmp_path.iterdir())  # not even the first runtime's run was started


def test_parity_command(tmp_path: Path) -> None:
    done = run_cli_process("parity", "--agent", AGENT, "--runtimes", "exact,broken", "--suite", "toy", "--episodes", "4",
                           "--out", str(tmp_path / "p"))
    assert done.returncode == 0, done.stderr
    assert "parity of tests.evaluators.test_parity:RuntimeSolver on toy default, 4 episodes, reference runtime exact" in done.stdout
    assert (tmp_path / "p" / PARITY_FILE).exists()


def _tensorrt_usable() -> str | None:
    """None when TensorRT can run here, else why not."""
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError as exc:
        return f"TensorRT is not importable ({exc})"
    return None if torch.cuda.is_available() else "TensorRT is importable but no CUDA device is present"


@pytest.mark.slow
@pytest.mark.parametrize("runtimes", [("torch", "onnx"), ("torch", "onnx", "tensorrt")], ids=["torch-onnx", "with-tensorrt"])
def test_kosmos_tiny_runtimes_agree_on_calvin_chains(tmp_path: Path, runtimes: tuple[str, ...]) -> None:
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is needed (pip install vlaeval[onnx])")
    options: dict[str, Any] = {"num_threads": 1}
    if "tensorrt" in runtimes:
        reason = _tensorrt_usable()
        if reason:
            pytest.skip(reason)
        options["device"] = "cuda"
    chains = 3
    result = run_parity("kosmos-lstm-tiny", list(runtimes), "calvin", out=tmp_path, episodes=chains, agent_options=options)
    reference, *others = result.closed_loop
    for other in others:
        assert other.same_rows == chains  # identical success and steps of every subtask
        assert other.success_rate == reference.success_rate and other.avg_len == reference.avg_len
        assert other.difference == 0.0 and other.p_value == 1.0
    assert result.replay_matches == chains
    for action in result.open_loop:
        assert action.steps >= chains  # at least one step per chain was compared
        assert action.max_abs <= KOSMOS_ACTION_TOLERANCE, action
        assert action.max_abs_per_dim[6] == 0.0  # the gripper decision (±1) never flips
        assert math.isfinite(action.mean_abs)
