"""Paired comparison of two runs: hand-computed tests and intervals, and refusal of unpaired runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import vlaeval
from tests.conftest import chain, run_cli, write_run
from vlaeval.errors import VlaevalError
from vlaeval.results.compare import compare_runs, newcombe_interval, render, sign_flip_p_value
from vlaeval.results.stats import paired_change


def _single(tmp_path: Path, name: str, outcomes: list[bool]) -> Path:
    rows = [[{"task": "reach_left" if i % 2 else "reach_right", "success": ok}] for i, ok in enumerate(outcomes)]
    return write_run(tmp_path / name, rows, suite="toy", chain_length=1)


def _by_key(result: object) -> dict[tuple[str, str], object]:
    return {(d.task, d.metric): d for d in result.differences}  # type: ignore[attr-defined]


def test_success_is_compared_by_the_exact_mcnemar_test(tmp_path: Path) -> None:
    # 20 episodes: 10 both solve, 6 only B solves, 1 only A solves, 3 neither
    a = [True] * 10 + [False] * 6 + [True] + [False] * 3
    b = [True] * 10 + [True] * 6 + [False] + [False] * 3
    result = compare_runs(_single(tmp_path, "a", a), _single(tmp_path, "b", b))
    rate = _by_key(result)[("*", "success_rate")]
    assert (rate.n, rate.a, rate.b, rate.b_better, rate.a_better) == (20, 0.55, 0.8, 6, 1)
    # 7 discordant pairs, 1 on the rarer side: p = 2 * (C(7,0) + C(7,1)) / 2^7
    assert rate.p_value == pytest.approx(2 * (1 + 7) / 2**7) and rate.difference == pytest.approx(0.25)
    assert rate.low < 0.25 < rate.high and rate.test == "McNemar exact"
    assert "avg_len" not in {d.metric for d in result.differences}  # a single-step suite has no chains
    # per task (odd episodes reach_left, even reach_right), every attempt is paired
    assert _by_key(result)[("reach_left", "task_success")].n == 10


def test_newcombe_interval_matches_hand_computed_values() -> None:
    # 0/10 against 10/10: no correlation term (a margin is 0); Wilson(0, 10) = [0, 0.2775], Wilson(10, 10) = [0.7225, 1]
    low, high = newcombe_interval([False] * 10, [True] * 10)
    assert low == pytest.approx(1 - math.sqrt(0.2775**2 + 0.2775**2), abs=1e-4) and high == 1.0
    # 12/24 each, 6 in every cell: ad - bc = 0, so phi = 0; Wilson(12, 24) = [0.3143, 0.6857]
    a = [True] * 6 + [True] * 6 + [False] * 6 + [False] * 6
    b = [True] * 6 + [False] * 6 + [True] * 6 + [False] * 6
    low, high = newcombe_interval(a, b)
    assert (low, high) == pytest.approx((-math.sqrt(2) * 0.1857, math.sqrt(2) * 0.1857), abs=1e-4)
    # 9 / 3 / 3 / 9: ad - bc = 72 > n/2, so phi = (72 - 12) / sqrt(12^4) = 60/144, half-width 0.1857 * sqrt(2 - 2 * 60/144)
    a = [True] * 9 + [True] * 3 + [False] * 3 + [False] * 9
    b = [True] * 9 + [False] * 3 + [True] * 3 + [False] * 9
    low, high = newcombe_interval(a, b)
    assert high == pytest.approx(0.1857 * math.sqrt(2 - 120 / 144), abs=1e-4) and low == pytest.approx(-high)
    # swapping the runs negates the interval
    a, b = [True] * 7 + [False] * 5, [True] * 3 + [False] * 2 + [True] * 4 + [False] * 3
    low, high = newcombe_interval(a, b)
    assert newcombe_interval(b, a) == pytest.approx((-high, -low))


def test_sign_flip_p_value_is_exact() -> None:
    # d = (2, -1, 1, 3), sum 5; of the 16 sign patterns, |sum| >= 5 for (+2 +1 +1 +3) = 7, and 5 with either 1 flipped, and their mirrors
    assert sign_flip_p_value([2, -1, 1, 3]) == pytest.approx(6 / 16)
    assert sign_flip_p_value([2, -1, 0, 1, 3, 0]) == pytest.approx(6 / 16)  # ties carry no information
    assert sign_flip_p_value([0, 0, 0]) == 1.0
    assert sign_flip_p_value([1] * 12) == pytest.approx(2 / 2**12)
    before = [True, True, False, True, False, False, True, False, False, True, False, False]
    after = [True, False, True, True, True, True, True, True, False, True, True, False]
    diffs = [int(y) - int(x) for x, y in zip(before, after)]
    assert sign_flip_p_value(diffs) == pytest.approx(paired_change(before, after)["p_value"])  # McNemar is its 0/1 case


def test_chains_compare_average_length_and_pair_tasks_only_where_both_runs_got(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [chain(True, False), chain(True, True, True), chain(False), chain(True, True, False)])
    b = write_run(tmp_path / "b", [chain(True, True, True), chain(True, True, True), chain(True, False), chain(True, False)])
    result = compare_runs(a, b)
    rows = _by_key(result)
    length = rows[("*", "avg_len")]  # lengths A (1, 3, 0, 2), B (3, 3, 1, 1): differences (2, 0, 1, -1)
    assert (length.a, length.b, length.b_better, length.a_better) == (1.5, 2.0, 2, 1)
    assert length.p_value == pytest.approx(sign_flip_p_value([2, 0, 1, -1])) == pytest.approx(6 / 8)
    assert length.low <= 0.5 <= length.high and length.test == "sign-flip exact"
    assert rows[("*", "success@1")].b_better == 1 and rows[("*", "success@3")].b_better == 1
    # attempts both made: episode 0 positions 1-2, episode 1 all 3, episode 2 position 1, episode 3 positions 1-2
    assert {task: rows[(task, "task_success")].n for task in ("reach_left", "reach_right", "reach_center")} == {
        "reach_left": 4, "reach_right": 3, "reach_center": 1}
    right = rows[("reach_right", "task_success")]  # (fail, ok) in episode 0, (ok, ok) in 1, (ok, fail) in 3
    assert (right.a, right.b, right.b_better, right.a_better) == (2 / 3, 2 / 3, 1, 1)
    assert all(0 <= d.p_value <= d.p_adjusted <= 1 for d in result.differences)


def test_identical_runs_differ_by_zero_with_p_one(tmp_path: Path) -> None:
    rows = [chain(True, True, True), chain(True, False), chain(False), chain(True, True, False)] * 3
    result = compare_runs(write_run(tmp_path / "a", rows), write_run(tmp_path / "b", rows, agent="agent-y"))
    assert result.differences and all(d.difference == 0 and d.p_value == 1.0 and d.low <= 0 <= d.high for d in result.differences)
    assert (_by_key(result)[("*", "avg_len")].low, _by_key(result)[("*", "avg_len")].high) == (0.0, 0.0)
    assert "no significant difference" in result.verdict()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed_offset": 1000}, r"the runs used different seeds \(toy, default\): 12 of 12 episodes differ \(episode 0: seed 0 in .*a, 1000 in .*b\)"),
        ({"episodes": 10}, r"different episode lists \(toy, default\): 2 episodes \(10, 11\) only in .*a, 0 episodes only in .*b"),
        ({"version": "2"}, r"suite 'toy' is version 1 in .*a but 2 in .*b"),
        ({"setting": "hard"}, r"ran setting default but .*b ran hard"),
        ({"tasks": True}, r"episode 0, position 1 is task 'reach_right' in .*a but 'reach_left' in .*b"),
    ],
)
def test_runs_on_different_episodes_are_refused_saying_how(tmp_path: Path, change: dict[str, object], message: str) -> None:
    outcomes = [i % 3 != 0 for i in range(12)]
    a = _single(tmp_path, "a", outcomes)
    n = int(change.get("episodes", 12))  # type: ignore[call-overload]
    offset = int(change.get("seed_offset", 0))  # type: ignore[call-overload]
    rows = [[{"task": ("reach_left" if i % 2 else "reach_right") if not change.get("tasks") else "reach_left",
              "success": outcomes[i], "seed": i + offset}] for i in range(n)]
    b = write_run(tmp_path / "b", rows, suite="toy", chain_length=1, version=str(change.get("version", "1")),
                  setting=str(change.get("setting", "default")))
    with pytest.raises(VlaevalError, match=message) as err:
        compare_runs(a, b)
    assert "\n" not in str(err.value)


def test_real_toy_runs_compare_and_other_seeds_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weak = vlaeval.evaluate("toy://solver?skill=0.3", "toy-chain", out=tmp_path, progress=False, episodes=24, run_id="weak").run_dir
    strong = vlaeval.evaluate("toy://solver?skill=0.9", "toy-chain", out=tmp_path, progress=False, episodes=24, run_id="strong").run_dir
    other = vlaeval.evaluate("toy://solver?skill=0.9", "toy-chain", out=tmp_path, progress=False, episodes=24, run_id="other", seed=7).run_dir
    result = compare_runs(weak, strong)
    rows = _by_key(result)
    assert rows[("*", "avg_len")].difference > 0 and rows[("*", "success@3")].n == 24
    assert run_cli("compare", str(weak), str(strong)) == 0
    out = capsys.readouterr().out
    assert "B - A [95% CI]" in out and "avg_len" in out and "compare:" in out
    assert run_cli("compare", str(weak), str(other)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the runs used different seeds (toy-chain, default)") and err.count("\n") == 1


def test_formats_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", [chain(True, False), chain(True, True, True), chain(False)] * 4)
    b = write_run(tmp_path / "b", [chain(True, True, True), chain(True, True, True), chain(True, False)] * 4, agent="agent-y")
    result = compare_runs(a, b)
    data = json.loads(render(result, "json"))
    assert data["a"]["agent"] == "agent-x" and data["b"]["agent"] == "agent-y" and data["confidence"] == 0.95
    by_metric = {(d["task"], d["metric"]): d for d in data["differences"]}
    assert by_metric[("*", "avg_len")]["difference"] == pytest.approx(1.0)
    markdown = render(result, "markdown")
    assert "## toy-chain · default" in markdown and "avg_len" in markdown and "|:--" in markdown
    page = render(result, "html")
    assert page.startswith("<!doctype html>") and "<table>" in page and "agent-y" in page
    with pytest.raises(VlaevalError, match="--format must be one of table, markdown, json, html"):
        render(result, "csv")
    out = tmp_path / "cmp.html"
    assert run_cli("compare", str(a), str(b), "--format", "html", "--out", str(out)) == 0
    assert out.read_text() == page and f"wrote {out}" in capsys.readouterr().out
    assert run_cli("compare", str(a), str(b), "--alpha", "0") == 2
