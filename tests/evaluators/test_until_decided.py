"""``vlaeval run --until decided``: sequential early stopping in seeded order (issue 13)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import vlaeval
from tests.conftest import run_cli
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.runner import RunResult
from vlaeval.results.gate import run_gate
from vlaeval.results.report import build_report
from vlaeval.results.sequential import PairedTest, StoppingRule, ThresholdTest, paired_prefix, seeded_prefix
from vlaeval.results.store import EPISODES_FILE, PARQUET_FILE, ResultStore, load_results, read_manifest, write_manifest

GOOD = "toy://solver?skill=1.0"
BAD = "toy://solver?skill=0.2"


def _run(tmp_path: Path, agent: str, run_id: str, **kw: Any) -> RunResult:
    return vlaeval.evaluate(agent, "toy", out=tmp_path, run_id=run_id, progress=False, **kw)


def _successes(run_dir: Path) -> dict[int, float]:
    return {int(i): float(ok) for i, ok in load_results(run_dir).groupby("episode")["success"].all().items()}


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    return _run(tmp_path, GOOD, "base").run_dir  # all 40 episodes of the toy suite, every one solved


def test_a_clearly_worse_agent_stops_early_with_the_same_n_for_any_number_of_workers(tmp_path: Path, baseline: Path) -> None:
    rule = StoppingRule(against=str(baseline))
    one = _run(tmp_path, BAD, "one", until=rule)
    two = _run(tmp_path, BAD, "two", until=rule, workers=2)
    decision = one.decision
    assert decision is not None and decision.verdict == "worse" and 0 < decision.n < 40
    assert two.decision == decision
    # the verdict is the paired test's on the seeded prefix, recomputed from the stored rows
    assert PairedTest(0.05).decide(paired_prefix(_successes(baseline), _successes(one.run_dir))) == decision
    assert sorted(_successes(one.run_dir)) == list(range(decision.n))  # one worker: exactly the episodes the test needed
    assert set(range(decision.n)) <= set(_successes(two.run_dir))  # two: those, and those the other worker finished meanwhile
    # a report counts the episodes the test saw, so its numbers do not depend on the workers either
    one_report, two_report = build_report([one.run_dir]), build_report([two.run_dir])
    assert one_report.runs[0].episodes == two_report.runs[0].episodes == decision.n
    assert [m.estimate for m in one_report.metrics] == [m.estimate for m in two_report.metrics]
    manifest = read_manifest(one.run_dir)
    assert manifest["status"] == "decided" and manifest["finished_at"] and manifest["config"]["until"] == {
        "alpha": 0.05, "against": str(baseline), "threshold": None, "delta": None}
    assert manifest["stopping"]["verdict"] == "worse" and manifest["stopping"]["n"] == decision.n
    assert manifest["stopping"]["reason"] == decision.reason and manifest["stopping"]["statistic"] >= 2 / 0.05
    assert manifest["stopping"]["reference"]["episodes"] == 40


def test_resume_continues_the_same_test(tmp_path: Path, baseline: Path) -> None:
    rule = StoppingRule(against=str(baseline))
    whole = _run(tmp_path, BAD, "whole", until=rule).decision
    assert whole is not None and whole.n > 3
    # killed after 3 episodes: the log holds episodes 0-2, the manifest still says running
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "whole", cut)
    lines = (cut / EPISODES_FILE).read_text().splitlines(keepends=True)
    (cut / EPISODES_FILE).write_text("".join(lines[:3]))
    (cut / PARQUET_FILE).unlink()
    manifest = read_manifest(cut)
    write_manifest(cut, {**{k: v for k, v in manifest.items() if k != "stopping"}, "status": "running"})

    resumed = vlaeval.evaluate(BAD, resume=cut, progress=False)
    assert resumed.decision == whole
    assert (cut / EPISODES_FILE).read_text().startswith("".join(lines[:3]))  # the first 3 were kept, not replayed
    assert read_manifest(cut)["status"] == "decided" and len(read_manifest(cut)["sessions"]) == 2

    again = vlaeval.evaluate(BAD, resume=cut, progress=False)  # decided already: nothing is played
    assert again.decision == whole and len(ResultStore(cut).completed()) == whole.n
    assert read_manifest(cut)["sessions"][-1]["pending"] == 0


def test_an_edited_or_changed_test_is_refused(tmp_path: Path, baseline: Path) -> None:
    run = _run(tmp_path, BAD, "r", until=StoppingRule(against=str(baseline)), episodes=3).run_dir  # undecided after 3
    assert read_manifest(run)["status"] == "finished" and read_manifest(run)["stopping"]["verdict"] == "continue"
    with pytest.raises(VlaevalError, match=r"was started with a paired test .*its test cannot change mid-run"):
        vlaeval.evaluate(BAD, resume=run, until=StoppingRule(against=str(baseline), alpha=0.1), progress=False)
    manifest = read_manifest(run)
    manifest["config"]["until"]["alpha"] = 0.2
    write_manifest(run, manifest)
    with pytest.raises(VlaevalError, match=r"until differs: the finished episodes were played with until .*\"alpha\":0.05"):
        vlaeval.evaluate(BAD, resume=run, episodes=10, progress=False)
    manifest["config"]["until"]["alpha"] = 0.05
    write_manifest(run, manifest)
    (baseline / PARQUET_FILE).unlink()  # the reference's results change under the test
    log = baseline / EPISODES_FILE
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0].replace('"success": true', '"success": false') + "".join(lines[1:]))
    with pytest.raises(VlaevalError, match=r"results of --against .* on its first 3 episodes changed since this run's test began"):
        vlaeval.evaluate(BAD, resume=run, episodes=10, progress=False)


def test_the_reference_must_be_on_the_same_episodes(tmp_path: Path, baseline: Path) -> None:
    other_seed = _run(tmp_path, GOOD, "seed5", seed=5).run_dir
    with pytest.raises(VlaevalError, match=r"the runs used different seeds"):
        _run(tmp_path, BAD, "x", until=StoppingRule(against=str(other_seed)))
    short = _run(tmp_path, GOOD, "short", episodes=10).run_dir
    with pytest.raises(VlaevalError, match=r"has no result for 10 of the 20 episodes this run plans .* pass --episodes 10 or less"):
        _run(tmp_path, BAD, "y", until=StoppingRule(against=str(short)), episodes=20)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    planned = _run(tmp_path, GOOD, "z", until=StoppingRule(against=str(short)))  # without --episodes: the reference's 10
    assert read_manifest(planned.run_dir)["config"]["episodes"] == 10


def test_threshold_tests_stop_above_and_below(tmp_path: Path) -> None:
    rule = StoppingRule(threshold=0.8)
    above = _run(tmp_path, GOOD, "above", until=rule)
    below, below2 = _run(tmp_path, BAD, "below", until=rule), _run(tmp_path, BAD, "below2", until=rule, workers=2)
    assert above.decision is not None and above.decision.verdict == "above" and above.decision.n < 40
    assert below.decision is not None and below.decision.verdict == "below" and below.decision == below2.decision
    assert ThresholdTest(0.8).decide(seeded_prefix(_successes(below.run_dir))) == below.decision
    short = _run(tmp_path, BAD, "short", until=rule, episodes=2)  # too few to decide: finished, undecided
    assert short.decision is not None and not short.decision.decided and read_manifest(short.run_dir)["status"] == "finished"
    extended = vlaeval.evaluate(BAD, resume=short.run_dir, episodes=40, progress=False)  # the same test, on more episodes
    assert extended.decision == below.decision and read_manifest(short.run_dir)["status"] == "decided"


def test_report_and_gate_treat_a_decided_run_as_stopped_not_interrupted(tmp_path: Path, baseline: Path) -> None:
    run = _run(tmp_path, BAD, "r", until=StoppingRule(against=str(baseline))).run_dir
    report = build_report([run])
    assert not report.runs[0].incomplete and report.incomplete == ()
    (note,) = report.notes
    assert "stopped early, as --until decided asks" in note and "decided 'worse' after" in note and "of 40 planned episodes" in note
    gate = run_gate(run, baseline)  # another agent: the subject of the gate, noted, not refused
    assert any(n.startswith("protocol differs (the agent under test): agent.name: ") for n in gate.notes)
    assert not gate.passed and not gate.incomplete  # it fails for being worse, not for being short
    assert any("stopped early" in n for n in gate.notes)


def test_cli(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--agent", BAD, "--suite", "toy", "--out", str(tmp_path), "--no-progress"]
    assert run_cli(*args, "--run-id", "c", "--until", "decided", "--against", str(baseline), "--alpha", "0.05") == 0
    out = capsys.readouterr().out
    assert "decided (worse): B is worse than A" in out
    assert read_manifest(tmp_path / "c")["config"]["until"]["against"] == str(baseline.resolve())
    assert run_cli("run", "--resume", str(tmp_path / "c"), "--no-progress", "--until", "decided", "--against", str(baseline)) == 0
    for extra, message in ((["--threshold", "0.8"], "set the test of --until decided"),
                           (["--until", "decided"], "needs either --against RUN"),
                           (["--until", "decided", "--threshold", "0.8", "--delta", "0.1"], "--delta is the margin of the paired test"),
                           (["--until", "decided", "--threshold", "1.5"], "--threshold must be strictly between 0 and 1")):
        assert run_cli(*args, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
