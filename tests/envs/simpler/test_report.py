"""Per-variant / per-axis aggregation of simpler rows (no simulator)."""

from __future__ import annotations

import pandas as pd
import pytest

from vlaeval.envs.simpler.report import task_table
from vlaeval.envs.simpler.spec import variants_for
from vlaeval.envs.simpler.suite import SimplerSuite, annotate


def test_variant_aggregation_is_mean_over_variants():
    episodes = [e for e in SimplerSuite().episodes("variant-aggregation", 0) if e.tasks[0] == "pick_coke_can"]
    rows = pd.DataFrame({
        "agent": "a", "suite": "simpler", "setting": "variant-aggregation", "task": "pick_coke_can",
        "episode": [e.index for e in episodes],
        # succeed everywhere except under darker lighting, where only the first 9 of 27 succeed
        "success": [e.options["variant_name"] != "lighting=darker" or e.options["layout_index"] < 9 for e in episodes],
    })
    annotated = annotate(rows)
    assert set(annotated["variant"]) == {name for name, _ in variants_for("pick_coke_can", "variant-aggregation")}
    (row,) = task_table(rows).to_dict("records")
    assert row["success"] == pytest.approx((8 + 1 / 3) / 9)
    assert row["lighting"] == pytest.approx((1 + 1 / 3) / 2)
    assert row["background"] == 1.0 and row["distractors"] == 1.0 and row["table"] == 1.0
