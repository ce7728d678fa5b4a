"""A corrupt exported ONNX graph fails the agent when it is built, not every episode it plays.

The exported agent (``vlaeval export`` output: checkpoint + ``step-*.onnx``) is tiny and built
locally; the graph is then overwritten with garbage or truncated, as a failed copy leaves it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the kosmos agents need the agents extra (pip install 'vlaeval[agents]')")
pytest.importorskip("onnxruntime", reason="the ONNX runtime needs the onnx extra (pip install 'vlaeval[onnx]')")

import tests.agents.kosmos_helpers  # noqa: E402,F401 - single-threaded torch on this shared machine
import vlaeval  # noqa: E402
from vlaeval.agents.resolve import make_agent  # noqa: E402
from vlaeval.errors import VlaevalError  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlaeval.agents.kosmos import KosmosLSTMAgent

    out = tmp_path_factory.mktemp("export") / "agent"
    agent = KosmosLSTMAgent(runtime="torch")
    try:
        agent.export(out, "onnx")
    finally:
        agent.close()
    return out


def corrupted(exported: Path, into: Path, how: str) -> tuple[Path, Path]:
    """A copy of the exported agent whose step graph is damaged; returns it and the graph."""
    copy = into / "agent"
    shutil.copytree(exported, copy)
    (graph,) = copy.glob("step-*.onnx")
    data = graph.read_bytes()
    graph.write_bytes(b"not an onnx model" if how == "garbage" else data[: len(data) // 2])
    return copy, graph


def test_an_intact_export_loads_its_graph_when_built(exported: Path) -> None:
    agent = make_agent(str(exported), {"runtime": "onnx"})
    try:
        assert agent.runtime_name == "onnx"  # before any step
    finally:
        agent.close()


@pytest.mark.parametrize("runtime", ["onnx", "auto"])
@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_corrupt_export_is_a_one_line_error_when_built(exported: Path, tmp_path: Path, how: str, runtime: str) -> None:
    agent_dir, graph = corrupted(exported, tmp_path, how)
    with pytest.raises(VlaevalError) as raised:
        make_agent(str(agent_dir), {"runtime": runtime})
    message = str(raised.value)
    assert "\n" not in message
    assert str(graph) in message and "INVALID_PROTOBUF" in message
    assert f"vlaeval export --agent {agent_dir} --out {agent_dir}" in message


def test_the_suggested_re_export_repairs_the_agent(exported: Path, tmp_path: Path) -> None:
    agent_dir, _ = corrupted(exported, tmp_path, "garbage")
    export = subprocess.run([sys.executable, "-m", "vlaeval", "export", "--agent", str(agent_dir), "--out", str(agent_dir)],
                            capture_output=True, text=True)
    assert export.returncode == 0, export.stderr
    agent = make_agent(str(agent_dir), {"runtime": "onnx"})
    assert agent.runtime_name == "onnx"
    agent.close()


def test_evaluate_fails_before_any_episode(exported: Path, tmp_path: Path) -> None:
    agent_dir, graph = corrupted(exported, tmp_path, "garbage")
    with pytest.raises(VlaevalError, match=f"cannot load {graph}"):
        vlaeval.evaluate(str(agent_dir), "calvin", episodes=1, agent_options={"runtime": "onnx"}, out=tmp_path / "runs",
                         run_id="r", progress=False)
    assert not [log for log in (tmp_path / "runs").rglob("episodes.jsonl") if log.read_text().strip()]  # no episode recorded


def test_vlaeval_run_exits_2_with_a_one_line_error(exported: Path, tmp_path: Path) -> None:
    agent_dir, graph = corrupted(exported, tmp_path, "garbage")
    run = subprocess.run([sys.executable, "-m", "vlaeval", "run", "--agent", str(agent_dir), "--runtime", "onnx", "--suite", "calvin",
                          "--episodes", "1", "--no-progress", "--out", str(tmp_path / "runs")], capture_output=True, text=True)
    assert run.returncode == 2, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot load {graph}" in errors[0] and "vlaeval export" in errors[0]
    assert "Traceback" not in run.stderr and "errored" not in run.stdout
    assert not [log for log in (tmp_path / "runs").rglob("episodes.jsonl") if log.read_text().strip()]
