"""Our 34 predicates against upstream's Tasks oracle on the same states (each run in a fresh process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("calvin_env", reason="upstream calvin_env is not installed (bash scripts/install-calvin-upstream.sh)")

from tests.envs.calvin_upstream.fresh import in_fresh_process  # noqa: E402
from vlaeval.envs.calvin.suite import CalvinSuite  # noqa: E402
from vlaeval.envs.calvin.tasks import TASKS  # noqa: E402


def _crosscheck(out: str, *args: str) -> tuple[int, dict[str, Any]]:
    from vlaeval.evaluators.calvin_crosscheck import main

    status = main([*args, "--out", out])
    return status, json.loads(Path(out).read_text())


def test_predicates_agree_with_upstream_on_one_chains_rollouts(tmp_path: Path) -> None:
    """CI-sized: the expert's, a noisy expert's and a random rollout from chain 0's initial state."""
    status, report = in_fresh_process(_crosscheck, str(tmp_path / "cc.json"), "--pairs", "3000", "--chains", "0",
                                      "--min-positives", "0")
    assert report["disagreements"] == 0 and status == 0, report["listed_disagreements"]
    assert report["rollouts"] == {"expert": 1, "noisy-expert": 1, "random": 1}
    assert report["pairs"] >= 2000 and set(report["confusion"]) == set(TASKS)
    for task in CalvinSuite().episodes("D->D", 0)[0].tasks:  # the expert solved each, so upstream said so
        assert report["confusion"][task]["tp"] > 0, task


@pytest.mark.slow
def test_predicates_agree_with_upstream_on_20000_pairs_with_20_positives_per_task(tmp_path: Path) -> None:
    status, report = in_fresh_process(_crosscheck, str(tmp_path / "cc.json"), "--pairs", "20000",
                                      "--min-positives", "20")
    assert report["disagreements"] == 0 and status == 0, report["listed_disagreements"]
    assert report["pairs"] >= 20000
    assert min(c["tp"] + c["fn"] for c in report["confusion"].values()) >= 20
