"""Built-in agents reached exactly as a third-party one would be: names, URIs, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import vlaeval
from tests.conftest import run_cli
from vlaeval.agents.remote.server import start_server_in_thread
from vlaeval.agents.resolve import make_agent
from vlaeval.plugins.manager import registries

STABLE = ["task", "episode", "position", "seed", "success", "steps", "error"]


def test_every_builtin_agent_is_registered_through_the_plugin() -> None:
    from vlaeval.agents.expert.agent import CalvinExpert
    from vlaeval.agents.kosmos import kosmos_lstm, kosmos_lstm_cpu, kosmos_lstm_tiny
    from vlaeval.agents.random import RandomAgent
    from vlaeval.agents.replay import ReplayAgent

    agents = {e.name: e for e in registries().agent}
    implementations = {"random": RandomAgent, "replay": ReplayAgent, "expert": CalvinExpert, "kosmos-lstm": kosmos_lstm,
                       "kosmos-lstm-tiny": kosmos_lstm_tiny, "kosmos-lstm-cpu": kosmos_lstm_cpu}
    for name, implementation in implementations.items():
        assert agents[name].plugin == "vlaeval.agents.plugin"
        assert agents[name].load() is implementation  # the name leads to the built-in code, not just to something callable
    assert type(make_agent("random")) is RandomAgent and type(make_agent("expert")) is CalvinExpert


def test_a_served_agent_evaluates_like_the_in_process_one(tmp_path: Path) -> None:
    """`vlaeval serve` + `--agent ws://...` on the toy suite gives the in-process results."""
    from vlaeval_toy.agents import Solver

    local = vlaeval.evaluate("toy://solver?skill=0.5", "toy-chain", episodes=8, out=tmp_path, progress=False, run_id="local")
    with start_server_in_thread(lambda: Solver(skill=0.5)) as server:
        assert make_agent(server.uri).spec == Solver.spec  # the handshake carries the conventions
        remote = vlaeval.evaluate(server.uri, "toy-chain", episodes=8, out=tmp_path, progress=False, run_id="remote")
    pd.testing.assert_frame_equal(local.results[STABLE], remote.results[STABLE])


def test_an_unreachable_server_is_a_one_line_error(tmp_path: Path) -> None:
    code = run_cli("run", "--agent", "ws://127.0.0.1:9", "--suite", "toy", "--agent-opt", "retries=0",
                   "--agent-opt", "connect_timeout_s=1", "--out", str(tmp_path))
    assert code == 2


def test_export_then_run_the_exported_directory_on_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exported"
    assert run_cli("export", "--agent", "kosmos-lstm-tiny", "--format", "onnx", "--out", str(out)) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "step-200.onnx"}
    agent = make_agent(str(out), {"runtime": "onnx"})
    try:
        assert agent._workdir == out  # reuses the exported graph instead of exporting again
        assert agent.spec.observation_keys == ("rgb_static",)
    finally:
        agent.close()
    assert run_cli("export", "--agent", "kosmos-lstm-tiny", "--format", "tensorrt", "--out", str(tmp_path / "trt")) == 2
    assert "TensorRT is not importable" in capsys.readouterr().err


def test_missing_pretrained_weights_and_corrupt_checkpoints_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_cli("run", "--agent", "kosmos-lstm", "--suite", "calvin", "-n", "1", "--out", str(tmp_path)) == 2
    assert "huggingface-cli download microsoft/kosmos-2-patch14-224" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert run_cli("run", "--agent", "kosmos-lstm-tiny", "--checkpoint", str(broken), "--suite", "calvin", "-n", "1", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_kosmos_lstm_tiny_runs_a_calvin_chain_end_to_end(tmp_path: Path, runtime: str) -> None:
    result = vlaeval.evaluate("kosmos-lstm-tiny", "calvin", episodes=1, out=tmp_path, progress=False,
                              agent_options={"runtime": runtime, "num_threads": 1})
    row = result.results.iloc[0]
    assert row["error"] is None and row["steps"] == 360 and not row["success"]  # random weights: a real, failed attempt
