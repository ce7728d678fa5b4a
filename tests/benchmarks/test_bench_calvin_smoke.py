"""``benchmarks/bench_calvin.py`` runs end to end on a tiny workload and prints its tables.

No timing is asserted (the machine's speed is not the code's); only that every contestant was
measured and the output says where the upstream figures come from.  The script runs as a
subprocess, as a user runs it: its upstream contestant must be the first pybullet client of a
process of its own, and it spawns its children from a ``__main__`` module.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_calvin.py"
#: The smallest run that still goes through every part: 20 random steps with and without cameras
#: (no expert workload), one expert chain replayed once per side, no vlaeval.evaluate.
TINY = ["--chains", "0", "--steps", "20", "--chunk", "10", "--throughput-chains", "1", "--repeats", "1",
        "--expert-chains", "0"]


def _run(*extra: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, *extra], capture_output=True, text=True, timeout=900,
                          cwd=SCRIPT.parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _rows(out: str) -> dict[str, list[str]]:
    return {f"{m.group(1)} {m.group(2)}": m.group(3).split()
            for m in re.finditer(r"^(random actions)\s+(both cameras|cameras off)\s+(.*)$", out, re.MULTILINE)}


def test_without_upstream_the_ratio_is_labelled_as_the_fallback() -> None:
    out = _run("--no-upstream")
    assert "upstream NOT MEASURED (--no-upstream given)" in out
    rows = _rows(out)
    assert set(rows) == {"random actions both cameras", "random actions cameras off"}
    for cells in rows.values():
        assert cells[0] == "20" and "fallback*" in cells
    assert "* fallback: upstream not measured" in out
    assert re.search(r"^\s+1 ours\s", out, re.MULTILINE) and not re.search(r"^\s+1 upstream\s", out, re.MULTILINE)


def test_upstream_is_measured_in_the_same_run() -> None:
    pytest.importorskip("calvin_env",
                        reason="upstream calvin_env is not installed (bash scripts/install-calvin-upstream.sh)")
    out = _run()
    assert "upstream: PlayTableSimEnv in a child process (calvin_env" in out and "fallback" not in out
    rows = _rows(out)
    assert set(rows) == {"random actions both cameras", "random actions cameras off"}
    for cells in rows.values():
        steps, upstream_rate = cells[0], cells[5]
        assert steps == "20" and float(upstream_rate) > 0
    assert re.search(r"^\s+1 ours\s", out, re.MULTILINE) and re.search(r"^\s+1 upstream\s", out, re.MULTILINE)
    assert "ours/upstream chains per minute with 2 processes each" in out
