"""The README's plugin examples: each is vlaeval-toy's code, and each works through the CLI.

vlaeval-toy is installed like any third-party distribution (see ``tests/conftest.py``), so these
tests use its hooks exactly as a user's ``vlaeval`` would find them: through its entry point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import vlaeval
from tests.conftest import PLUGIN_SOURCES, read_jsonl, run_cli, run_cli_process, write_run
from vlaeval.plugins import hookspecs
from vlaeval.results.stats import Values

README = Path(__file__).resolve().parents[2] / "README.md"
TOY = PLUGIN_SOURCES / "vlaeval-toy"


def test_every_plugin_snippet_in_the_readme_is_the_toy_plugins_code() -> None:
    text = README.read_text()
    docs = text[text.index("\n## Plugins\n"):text.index("\n## Development\n")]
    blocks = re.findall(r"```(?:python|toml)\n(.*?)```", docs, flags=re.S)
    assert len(blocks) >= 10
    for block in blocks:
        first, _, body = block.partition("\n")
        path = TOY / first.removeprefix("# ")
        assert first.startswith("# ") and path.is_file(), f"a README plugin snippet must start with '# <file of vlaeval-toy>': {first!r}"
        assert body in path.read_text(), f"the README's snippet of {path.name} is not that file's code:\n{body}"
    for hook in (n for n in dir(hookspecs) if n.startswith("vlaeval_")):
        assert f"def {hook}(" in "".join(blocks), f"the README has no example of {hook}"


def test_a_run_reaches_the_observer_hooks_and_the_metric_and_reporter_report_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "events.jsonl"
    run = run_cli_process("run", "--agent", "toy-solver", "--suite", "toy-chain", "-n", "3", "--out", str(tmp_path), "--run-id", "r",
                          "--no-progress", env={"VLAEVAL_TOY_LOG": str(log)})
    assert run.returncode == 0, run.stderr
    assert read_jsonl(log) == [
        {"event": "run_started", "run_id": "r", "suite": "toy-chain", "pending": 3},
        *({"event": "episode_finished", "run_id": "r", "episode": i, "success": True} for i in range(3)),
        {"event": "run_finished", "run_id": "r", "success_rate": 1.0},
    ]

    assert run_cli("metrics", "--json") == 0
    toy_steps = next(m for m in json.loads(capsys.readouterr().out) if m["name"] == "toy_steps")
    assert (toy_steps["plugin"], toy_steps["origin"]) == ("toy", "vlaeval-toy 0.3.0")

    results = vlaeval.load_results(tmp_path / "r")
    assert run_cli("report", str(tmp_path / "r"), "--format", "json") == 0
    reported = {m["task"]: m for m in json.loads(capsys.readouterr().out)["metrics"] if m["metric"] == "toy_steps"}
    for task, rows in results.groupby("task"):
        assert (reported[task]["value"], reported[task]["n"]) == (rows["steps"].mean(), len(rows))

    assert run_cli("report", str(tmp_path / "r"), "--format", "toy-summary") == 0
    assert capsys.readouterr().out == "toy-solver on toy-chain/default: 100% [44%, 100%] over 3 episodes\n"
    out = tmp_path / "summary.txt"
    assert run_cli("report", str(tmp_path / "r"), "--format", "toy-summary", "--out", str(out)) == 0
    assert capsys.readouterr().out == "" and out.read_text() == "toy-solver on toy-chain/default: 100% [44%, 100%] over 3 episodes\n"


def test_the_metric_applies_to_the_toy_suites_only(tmp_path: Path) -> None:
    from vlaeval_toy.metrics import steps_to_success

    rows = [[{"task": "reach_left", "success": True}], [{"task": "reach_left", "success": False}]]
    toy = vlaeval.load_results(write_run(tmp_path / "toy", rows, suite="toy", chain_length=1))
    assert steps_to_success(toy, 1) == Values((10.0,))  # write_run's rows took 10 steps
    assert steps_to_success(toy[~toy["success"]], 1) is None
    assert steps_to_success(vlaeval.load_results(write_run(tmp_path / "calvin", rows, suite="calvin", chain_length=1)), 1) is None


def test_the_trainer_writes_a_checkpoint_that_plays_like_the_run_it_imitates(tmp_path: Path) -> None:
    from vlaeval_toy.agents import Solver

    run = run_cli_process("run", "--agent", "toy://solver?skill=0.5", "--suite", "toy", "-n", "20", "--out", str(tmp_path), "--run-id", "half",
                          "--no-progress")
    assert run.returncode == 0, run.stderr
    train = run_cli_process("train", "toy", "--run", str(tmp_path / "half"), "--out", str(tmp_path / "ckpt"))
    assert train.returncode == 0, train.stderr
    skill = vlaeval.load_results(tmp_path / "half")["success"].mean()
    assert 0 < skill < 1 and train.stdout == f"{tmp_path / 'ckpt'}: skill={skill:.3f}\n"

    trained = run_cli_process("run", "--agent", "toy-solver", "--checkpoint", str(tmp_path / "ckpt"), "--suite", "toy", "-n", "20",
                              "--out", str(tmp_path), "--run-id", "trained", "--no-progress")
    assert trained.returncode == 0, trained.stderr
    same_skill = vlaeval.evaluate(Solver(skill=skill), "toy", episodes=20, out=tmp_path, run_id="same", progress=False)
    assert vlaeval.load_results(tmp_path / "trained")["success"].tolist() == same_skill.results["success"].tolist()


def test_the_plugin_command_is_a_vlaeval_command() -> None:
    goals = run_cli_process("toy-goals")
    assert goals.returncode == 0, goals.stderr
    assert goals.stdout == "reach_left: -0.6\nreach_right: +0.6\nreach_center: +0.0\n"
    assert "toy-goals" in run_cli_process("--help").stdout
