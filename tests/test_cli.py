"""The command line: listings, episode listing, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _vlaeval(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vlaeval", *argv], capture_output=True, text=True)


def test_episodes_lists_one_json_object_per_line_without_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("episodes", "--suite", "toy-chain", "--format", "json", "-n", "3") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [ep["index"] for ep in lines] == [0, 1, 2]
    assert all(len(ep["tasks"]) == 3 and len(ep["instructions"]) == 3 and "start" in ep["options"] for ep in lines)


def test_listings_name_their_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("agents", "--json") == 0
    agents = {a["name"]: a for a in json.loads(capsys.readouterr().out)}
    assert agents["toy-solver"]["origin"] == "vlaeval-toy 0.3.0" and agents["random"]["origin"] == "built-in"
    assert run_cli("suites") == 0
    assert "toy-chain" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--agent", "toy-solver", "--suite", "tooy"], "error: unknown suite 'tooy'. Did you mean 'toy'"),
        (["run", "--agent", "toy-solver", "--suite", "toy", "--workers", "0"], "Invalid value for '--workers'"),
        (["run", "--agent", "toy-solver", "--suite", "toy", "--agent-opt", "skill"], "'skill' is not key=value"),
        (["run", "--suite", "toy"], "pass --agent"),
        (["run", "--resume", "/no/such/run"], "does not exist"),
        (["episodes", "--suite", "toy", "--setting", "nope"], "error: unknown setting 'nope' in suite 'toy'"),
        (["gate", ".", "--baseline", "."], "error: "),
    ],
)
def test_user_errors_are_short_and_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    proc = _vlaeval(*argv, *(["--out", str(tmp_path)] if argv[0] == "run" and "--resume" not in argv else []))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 4


def test_run_then_report_then_gate_from_the_command_line(tmp_path: Path) -> None:
    def run(run_id: str, *options: str) -> Path:
        done = _vlaeval("run", "--agent", "toy-solver", "--suite", "toy", "--episodes", "20", "--out", str(tmp_path), "--run-id", run_id,
                        "--no-progress", *options)
        assert done.returncode == 0, done.stderr
        return tmp_path / run_id

    baseline = run("baseline")
    report = _vlaeval("report", str(baseline))
    assert report.returncode == 0 and "success_rate" in report.stdout
    gated = _vlaeval("gate", str(run("worse", "--agent-opt", "skill=0.3")), "--baseline", str(baseline))
    assert gated.returncode == 1 and "gate: FAIL" in gated.stdout, gated.stdout + gated.stderr  # a real regression fails the gate
    assert _vlaeval("gate", str(run("again")), "--baseline", str(baseline)).returncode == 0  # an equal agent passes it


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--agent", "expert", "--suite", "calvin", "--episodes", "0"], "error: Invalid value for '--episodes'"),
        (["run", "--agnt", "expert"], "error: No such option '--agnt'"),
        (["report"], "error: Missing argument 'RUN_DIRS...'"),
        (["frobnicate"], "error: No such command 'frobnicate'"),
    ],
)
def test_click_usage_errors_are_one_line_like_every_other_mistake(argv: list[str], message: str) -> None:
    proc = _vlaeval(*argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    command = " ".join(["vlaeval", *argv[:1]]) if argv[0] != "frobnicate" else "vlaeval"
    assert lines[0].endswith(f"(see `{command} --help`)"), lines[0]
