"""The regression gate on constructed result sets: it passes and fails when it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chain, run_cli, write_run
from vlaeval.conventions import AgentSpec
from vlaeval.errors import VlaevalError
from vlaeval.results.fingerprint import protocol_fingerprint
from vlaeval.results.gate import run_gate
from vlaeval.results.store import read_manifest, write_manifest


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


# --- protocol fingerprints (issue 16) -------------------------------------------------------------

RESULTS = Path(__file__).resolve().parents[2] / "results"


def _fingerprinted(run_dir: Path, episodes: slice = slice(None), **changes: Any) -> Path:
    """Give a hand-built run the protocol fingerprint of the toy suite's ``episodes`` (``changes``
    replace inputs of :func:`protocol_fingerprint`)."""
    from vlaeval_toy.suite import TOY_SPEC, ToySuite

    every = ToySuite().episodes("default", 0)
    inputs: dict[str, Any] = dict(
        suite=TOY_SPEC, setting="default", episodes=every[episodes], agent="agent-x", agent_spec=AgentSpec(observation_keys=("state",)),
        action_type="relative_ee", agent_options={"skill": 1.0}, observation_shapes={"state": (2,)},
        versions={"pybullet": "3.2.7", "numpy": "2.4.6"}, protocol_episodes=every,
    )
    manifest = read_manifest(run_dir)
    manifest["protocol"] = protocol_fingerprint(**(inputs | changes))
    write_manifest(run_dir, manifest)
    return run_dir


def test_gate_refuses_a_baseline_with_another_protocol_unless_the_difference_is_accepted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _fingerprinted(_episodic(tmp_path, "base", 38, n=40))
    cur = _fingerprinted(_episodic(tmp_path, "cur", 38, n=40), versions={"pybullet": "3.2.6", "numpy": "2.4.6"})
    with pytest.raises(VlaevalError, match=r"^the baseline's protocol differs from the run's: "
                                           r"versions\.pybullet: \"3\.2\.7\" in the baseline, \"3\.2\.6\" in the run; .*--accept versions\.pybullet"):
        run_gate(cur, base)
    assert run_cli("gate", str(cur), "--baseline", str(base)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the baseline's protocol differs") and "\n" not in err

    for accept in (["versions.pybullet"], ["versions"]):
        result = run_gate(cur, base, accept=accept)
        assert result.passed
        assert result.notes[0] == 'protocol differs (accepted): versions.pybullet: "3.2.7" in the baseline, "3.2.6" in the run'
    with pytest.raises(VlaevalError, match="versions.pybullet"):
        run_gate(cur, base, accept=["version"])  # a prefix of a name, not a group: accepts nothing
    assert run_cli("gate", str(cur), "--baseline", str(base), "--accept", "versions.pybullet", "--accept", "renderer") == 0
    out = capsys.readouterr().out
    assert "note: protocol differs (accepted): versions.pybullet" in out and "note: --accept renderer matches no difference" in out


def test_runs_of_different_sizes_from_one_episode_list_have_the_same_protocol(tmp_path: Path) -> None:
    base = _fingerprinted(_episodic(tmp_path, "base", 38, n=40))
    first20 = _fingerprinted(_episodic(tmp_path, "first20", 19, n=20), episodes=slice(0, 20))
    result = run_gate(first20, base)
    assert result.passed and not any("protocol" in n for n in result.notes)
    assert run_gate(base, first20).passed  # either way round
    later20 = _fingerprinted(_episodic(tmp_path, "later20", 19, n=20), episodes=slice(10, 30))  # not a prefix
    with pytest.raises(VlaevalError, match=r'episodes\.count: 40 in the baseline, 20 in the run; episodes\.indices: "0-39" in the '
                                           r'baseline, "10-29" in the run; episodes\.sha256'):
        run_gate(later20, base)


def test_baselines_without_a_protocol_fingerprint_still_gate_with_a_note(tmp_path: Path) -> None:
    committed = run_gate(RESULTS / "calvin-expert-50", RESULTS / "calvin-expert-50")  # recorded before protocol fingerprints
    assert committed.passed and committed.notes[0] == "baseline and run have no protocol fingerprint (made before runs recorded one): " \
                                                      "only the suite version is checked"
    cur = _fingerprinted(_episodic(tmp_path, "cur", 38, n=40))
    result = run_gate(cur, _episodic(tmp_path, "old", 38, n=40))
    assert result.passed and result.notes[0].startswith("baseline has no protocol fingerprint")
