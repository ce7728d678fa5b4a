"""vlaeval-toy's metric: how directly successful attempts reach their goal."""

from __future__ import annotations

from typing import Any

from vlaeval.results.stats import Values

TOY_SUITES = ("toy", "toy-chain")


def steps_to_success(rows: Any, chain_length: int) -> Values | None:
    """One value per successful attempt: the steps it took.

    Every registered metric is computed for every suite, so it returns None outside the toy
    suites, and when nothing succeeded (no sample, rather than an empty one).
    """
    if rows["suite"].iloc[0] not in TOY_SUITES:
        return None
    steps = rows.loc[rows["success"].astype(bool), "steps"]
    return Values(tuple(float(s) for s in steps)) if len(steps) else None
