"""Reports on hand-built result sets: every number checked against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chain, run_cli, write_run
from vlaeval.conventions import AgentSpec
from vlaeval.results.fingerprint import protocol_fingerprint
from vlaeval.results.plan import detectable, detectable_lines
from vlaeval.results.report import build_report
from vlaeval.results.stats import wilson_interval
from vlaeval.results.store import read_manifest, write_manifest


@pytest.fixture
def chained_run(tmp_path: Path) -> Path:
    # chain lengths 3, 1, 0, 2
    return write_run(tmp_path / "run-a", [chain(True, True, True), chain(True, False), chain(False), chain(True, True, False)])


def _metrics(report, run=None):
    return {(m.task, m.metric): m.estimate for m in report.metrics if run is None or m.run == run}


def test_chained_metrics_match_hand_computed_values(chained_run: Path) -> None:
    report = build_report([chained_run])
    m = _metrics(report)
    assert m[("*", "success@1")].value == 3 / 4
    assert m[("*", "success@2")].value == 2 / 4
    assert m[("*", "success@3")].value == 1 / 4
    assert m[("*", "avg_len")].value == 6 / 4
    assert m[("*", "success_rate")].value == 1 / 4
    # CALVIN per-task SR: successes in the successful prefix, plus the first failure
    assert m[("reach_left", "task_success")].value == 3 / 4
    assert m[("reach_right", "task_success")].value == 2 / 3
    assert m[("reach_center", "task_success")].value == 1 / 2
    low, high = wilson_interval(3, 4)
    assert (m[("*", "success@1")].low, m[("*", "success@1")].high) == pytest.approx((low, high))
    assert m[("*", "avg_len")].method == "bootstrap" and m[("*", "avg_len")].low <= 1.5 <= m[("*", "avg_len")].high
    assert report.runs[0].episodes == 4 and report.runs[0].errors == 0


def test_episodic_suites_get_no_chain_metrics(tmp_path: Path) -> None:
    run = write_run(tmp_path / "ep", [[{"task": "reach_left", "success": s}] for s in (True, False, True)], suite="toy", chain_length=1)
    m = _metrics(build_report([run]))
    assert m[("*", "success_rate")].value == pytest.approx(2 / 3)
    assert not any(metric.startswith(("success@", "avg_len")) for _, metric in m)


def test_side_by_side_comparison_and_formats(chained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = write_run(tmp_path / "run-b", [chain(True, True, True)] * 4, agent="agent-y")
    report = build_report([chained_run, other])
    assert [r.label for r in report.runs] == ["agent-x", "agent-y"]
    wide = report.wide("toy-chain", "default")
    assert list(wide.columns) == ["agent-x", "agent-y"]
    assert wide.loc[("*", "avg_len"), "agent-y"].startswith("3.000 [3.000, 3.000]")

    assert run_cli("report", str(chained_run), str(other), "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    rows = {(r["run"], r["task"], r["metric"]): r for r in data["metrics"]}
    assert rows[("agent-x", "*", "avg_len")]["value"] == 1.5
    assert rows[("agent-y", "*", "success@3")]["value"] == 1.0
    assert rows[("agent-x", "*", "success@1")]["ci_low"] == pytest.approx(wilson_interval(3, 4)[0])

    for fmt, needle in (("markdown", "| task"), ("csv", "run,suite,suite_version,setting,task,metric,value,ci_low,ci_high,n,interval"), ("table", "success@2")):
        out = tmp_path / f"report.{fmt}"
        assert run_cli("report", str(chained_run), str(other), "--format", fmt, "--out", str(out)) == 0
        assert needle in out.read_text()

    html = tmp_path / "report.html"
    assert run_cli("report", str(chained_run), str(other), "--format", "html", "--out", str(html)) == 0
    page = html.read_text()
    # chain curve, where chains break, per-task bars
    assert page.count("data:image/png;base64,") == 3 and "agent-y" in page and "Where chains break" in page


def test_unknown_format_and_missing_results_are_one_line_errors(chained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", str(chained_run), "--format", "jsn") == 2
    assert capsys.readouterr().err.strip() == "error: unknown reporter 'jsn'. Did you mean 'json'? Known: csv, html, json, markdown, table, toy-summary."
    (tmp_path / "empty").mkdir()
    assert run_cli("report", str(tmp_path / "empty")) == 2
    assert "holds no results" in capsys.readouterr().err


def test_report_real_adds_pearson_and_mmrv_against_real_rates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # sim success on reach_left: a 0.75, b 0.25, c 0.5; real: a 0.6, b 0.2, c 0.9 (c and a swap)
    runs = []
    for agent, wins in (("a", 3), ("b", 1), ("c", 2)):
        rows = [[{"task": "reach_left", "success": i < wins}] for i in range(4)]
        runs.append(str(write_run(tmp_path / agent, rows, suite="toy", agent=agent, chain_length=1)))
    real = tmp_path / "real.csv"
    real.write_text("agent,task,success\na,reach_left,60\nb,reach_left,0.2\nc,reach_left,0.9\n")
    assert run_cli("report", *runs, "--real", str(real)) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("reach_left") and "task_success" not in l)
    task, agents, pearson, mmrv = line.split()
    # Pearson by hand: deviations (.25, -.25, 0) and (.033, -.367, .333): 0.1 / sqrt(.125 * .2467) = 0.569;
    # MMRV: a and c disagree,
    # real gap 0.3 for both of them, b agrees with both: (0.3 + 0 + 0.3) / 3 = 0.2
    assert (task, agents, pearson, mmrv) == ("reach_left", "3", "0.569", "0.2")


def test_json_report_writes_undefined_numbers_as_null_not_bare_nan(chained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``json.dumps`` writes float NaN as the bare token ``NaN`` (not JSON) and never calls ``default`` for it."""
    from vlaeval.results import formats
    from vlaeval.results.report import Report

    report = build_report([chained_run])
    payload = report.to_dict()
    monkeypatch.setattr(Report, "to_dict", lambda self: {**payload, "undefined": [float("nan"), {"x": float("inf")}]})
    text = formats.json_format(report)
    parsed = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))
    assert parsed["undefined"] == [None, {"x": None}]


# --- protocol differences and the smallest detectable drop (issue 16) ------------------------------


def _with_protocol(run_dir: Path, agent: str = "agent-x", **changes: Any) -> Path:
    from vlaeval_toy.suite import TOY_CHAIN_SPEC, ToyChainSuite

    every = ToyChainSuite().episodes("default", 0)
    inputs: dict[str, Any] = dict(
        suite=TOY_CHAIN_SPEC, setting="default", episodes=every[:4], agent=agent, agent_spec=AgentSpec(observation_keys=("state",)),
        action_type="relative_ee", agent_options={"skill": 1.0}, observation_shapes={"state": (2,)}, control_hz=10,
        versions={"pybullet": "3.2.7"}, protocol_episodes=every,
    )
    manifest = read_manifest(run_dir)
    write_manifest(run_dir, {**manifest, "protocol": protocol_fingerprint(**(inputs | changes))})
    return run_dir


def test_report_notes_each_field_in_which_the_runs_protocols_differ(chained_run: Path, tmp_path: Path) -> None:
    a = _with_protocol(chained_run)
    b = _with_protocol(write_run(tmp_path / "run-b", [chain(True, True, True)] * 4), versions={"pybullet": "3.2.6"},
                       agent_options={"skill": 0.5})
    c = _with_protocol(write_run(tmp_path / "run-c", [chain(True, False)] * 4, agent="agent-z"), agent="agent-z",
                       agent_options={"skill": 0.2}, control_hz=20)
    assert build_report([a]).notes == ()  # one run: nothing to compare
    assert build_report([a, b, c]).notes == (
        "protocol differs: agent.options.skill: 1.0 in agent-x (run-a), 0.5 in agent-x (run-b)",
        'protocol differs: versions.pybullet: "3.2.7" in agent-x (run-a), "3.2.6" in agent-x (run-b)',
        "protocol differs: control_hz: 10 in agent-x (run-a), 20 in agent-z",  # agent-z's own fields differ by design
    )
    old = write_run(tmp_path / "old", [chain(True)] * 4)
    assert build_report([a, old]).notes == (f"{old} has no protocol fingerprint (made before runs recorded one): its protocol cannot be compared",)


def test_report_states_the_smallest_drop_each_run_could_detect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vlaeval.results.plan import fisher_power

    small = write_run(tmp_path / "small", [[{"task": "reach_left", "success": i % 10 != 0}] for i in range(40)], suite="toy", chain_length=1)
    large = write_run(tmp_path / "large", [[{"task": "reach_left", "success": i % 10 != 0}] for i in range(400)], suite="toy",
                      agent="agent-y", chain_length=1)
    found = {d["run"]: d for d in detectable(build_report([small, large]))}
    for run, n in (("agent-x", 40), ("agent-y", 400)):
        drop = found[run]["success_rate"]
        # the smallest drop with 80 % power (to the bisection's 0.001): a gate of two runs of n at 90 % and 90 % - drop
        assert fisher_power(0.9, drop, n, 0.05, baseline_n=n) >= 0.8 > fisher_power(0.9, drop - 0.002, n, 0.05, baseline_n=n)
        assert found[run]["episodes"] == n and found[run]["avg_len"] is None
    assert 0 < found["agent-y"]["success_rate"] < found["agent-x"]["success_rate"] / 2  # ten times the episodes: about a third

    assert run_cli("report", str(small)) == 0
    line = f"detectable: with 40 episodes, a drop of {100 * found['agent-x']['success_rate']:.1f} points in success_rate would be " \
           "detected with 80% power at one-sided alpha 0.05 against a baseline of the same size"
    assert line in capsys.readouterr().out
    assert run_cli("report", str(small), str(large), "--format", "markdown") == 0
    assert "> detectable: agent-y · default: with 400 episodes, a drop of" in capsys.readouterr().out
    assert run_cli("report", str(small), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["detectable"][0]["success_rate"] == pytest.approx(found["agent-x"]["success_rate"])
    chained = build_report([write_run(tmp_path / "chains", [chain(True, True, i % 4 != 0) for i in range(40)])])
    assert "chains" in detectable_lines(chained)[0] and "in avg_len" in detectable_lines(chained)[0]
