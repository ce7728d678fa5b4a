"""The regression gate on constructed result sets: it passes and fails when it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chain, run_cli, write_run
from vlaeval.errors import VlaevalError
from vlaeval.results.gate import run_gate


def _episodic(tmp_path: Path, name: str, successes: int, n: int = 100, version: str = "1") -> Path:
    rows = [[{"task": "reach_left", "success": i < successes}] for i in range(n)]
    return write_run(tmp_path / name, rows, suite="toy", version=version, chain_length=1)


def test_gate_fails_on_a_significant_drop(tmp_path: Path) -> None:
    result = run_gate(_episodic(tmp_path, "cur", 70), _episodic(tmp_path, "base", 95))
    assert not result.passed
    worse = {(c.task, c.metric) for c in result.comparisons if c.regressed}
    assert worse == {("*", "success_rate"), ("reach_left", "task_success")}
    assert "gate: FAIL" in result.verdict()


def test_gate_passes_within_noise_and_on_improvement(tmp_path: Path) -> None:
    base = _episodic(tmp_path, "base", 95)
    assert run_gate(_episodic(tmp_path, "noise", 92), base).passed
    assert run_gate(_episodic(tmp_path, "better", 100), base).passed


def test_gate_on_chains_catches_a_shorter_average_length(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", [chain(True, True, True)] * 45 + [chain(True, False)] * 5)
    cur = write_run(tmp_path / "cur", [chain(True, True, True)] * 25 + [chain(True, False)] * 25)
    result = run_gate(cur, base)
    by_metric = {(c.task, c.metric): c for c in result.comparisons}
    assert by_metric[("*", "avg_len")].regressed and by_metric[("*", "success@3")].regressed
    assert not by_metric[("*", "success@1")].regressed  # both 100 %
    same = write_run(tmp_path / "same", [chain(True, True, True)] * 45 + [chain(True, False)] * 5)
    assert run_gate(same, base).passed


def test_holm_correction_prevents_false_alarms_from_many_tasks(tmp_path: Path) -> None:
    base = _episodic(tmp_path, "base", 18, n=20)
    cur = _episodic(tmp_path, "cur", 14, n=20)
    unadjusted = run_gate(cur, base, alpha=0.2, correction="none")
    adjusted = run_gate(cur, base, alpha=0.2, correction="holm")
    assert all(c.p_adjusted >= c.p_value for c in adjusted.comparisons)
    assert not unadjusted.passed and adjusted.passed


def test_gate_refuses_to_compare_different_suite_versions(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match=r"suite 'toy' changed version \(1 in the baseline, 2 in the run\)"):
        run_gate(_episodic(tmp_path, "cur", 90, version="2"), _episodic(tmp_path, "base", 90))


def test_gate_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _episodic(tmp_path, "base", 95)
    for run, code in ((_episodic(tmp_path, "ok", 94), 0), (_episodic(tmp_path, "bad", 60), 1)):
        assert run_cli("gate", str(run), "--baseline", str(base)) == code
    out = capsys.readouterr().out
    assert "gate: PASS" in out and "gate: FAIL" in out and "p(worse)" in out
    assert run_cli("gate", str(base), "--baseline", str(base), "--alpha", "2") == 2


def test_paired_gate_catches_a_drop_on_identical_episodes_that_the_unpaired_gate_misses(tmp_path: Path) -> None:
    """Half the episodes are hard for both runs; the run loses 6 of the easy ones and wins none back.
    Unpaired, 14/40 against 20/40 is within noise (Fisher one-sided p ~ 0.12); paired, 6 discordant
    pairs all going one way have p = 0.5**6 = 0.016 (0.047 after Holm over the 3 metrics: the toy
    plugin's own metric has no paired test and keeps the unpaired one)."""
    def run(name: str, lost: int) -> Path:
        rows = [[{"task": "reach_left", "success": i < 20 and i >= lost}] for i in range(40)]
        return write_run(tmp_path / name, rows, suite="toy", chain_length=1)

    base, cur = run("base", 0), run("cur", 6)
    assert run_gate(cur, base).passed
    paired = run_gate(cur, base, paired=True)
    assert not paired.passed
    by_metric = {c.metric: c for c in paired.comparisons}
    assert by_metric["success_rate"].p_value == pytest.approx(0.5**6)
    assert by_metric["success_rate"].p_adjusted == pytest.approx(3 * 0.5**6)
    assert {c.metric: c.test for c in paired.comparisons} == {
        "success_rate": "paired McNemar exact", "task_success": "paired McNemar exact", "toy_steps": "unpaired"}
    assert "one-sided paired tests" in paired.verdict()
    assert run_gate(base, cur, paired=True).passed  # the one-sided test: better is never a regression


def test_paired_gate_refuses_runs_on_different_episodes(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match="--paired needs the run and the baseline on identical episodes: .*episode"):
        run_gate(_episodic(tmp_path, "cur", 30, n=40), _episodic(tmp_path, "base", 30, n=50), paired=True)
