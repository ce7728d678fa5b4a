"""Metrics: typed specs (lm-eval's ``MetricSpec``) whose functions turn rows into samples.

A metric function receives the tidy rows of one group (a task, or a whole suite/setting) and
the suite's chain length, and returns a :class:`~vlaeval.results.stats.Proportion` or
:class:`~vlaeval.results.stats.Values` sample (or a mapping name -> sample for a family such as
``success@k``), or None when it does not apply.  Returning samples rather than numbers lets one
statistics layer give every metric its interval and its regression test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vlaeval.results.stats import Proportion, Sample, Values

LEVELS = ("task", "setting")


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Attributes:
        name: metric name (a family's members are named by its function).
        target: ``"module:attr"`` of ``fn(rows: DataFrame, chain_length: int) -> Sample | Mapping | None``.
        description: one line for listings and reports.
        level: ``"task"`` (computed per task) or ``"setting"`` (per suite and setting).
        higher_is_better: direction used by the regression gate.
    """

    name: str
    target: str
    description: str
    level: str = "setting"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"metric {self.name!r}: level must be one of {LEVELS}, not {self.level!r}")


BUILTIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "success_rate",
        "vlaeval.results.metrics:episode_success",
        "share of episodes (whole chains for chained suites) that succeeded",
        level="setting",
    ),
    MetricSpec(
        "success@k",
        "vlaeval.results.metrics:chain_success",
        "share of chains with at least k consecutive successes (CALVIN's SR_k)",
        level="setting",
    ),
    MetricSpec(
        "avg_len",
        "vlaeval.results.metrics:average_length",
        "mean number of consecutive successes per chain (CALVIN's Avg. Len)",
        level="setting",
    ),
    MetricSpec(
        "task_success",
        "vlaeval.results.metrics:task_success",
        "per-task success over every attempt (for chains: attempts up to the first failure)",
        level="task",
    ),
)


def episode_success(rows: Any, chain_length: int) -> Sample | None:
    per_episode = rows.groupby("episode")["success"].all()
    return Proportion(int(per_episode.sum()), int(len(per_episode)))


def chain_lengths(rows: Any) -> Any:
    """Consecutive successes from the start of each chain (a Series indexed by episode)."""
    ordered = rows.sort_values(["episode", "position"])
    return ordered.groupby("episode")["success"].agg(lambda s: int(s.cumprod().sum()))


def chain_success(rows: Any, chain_length: int) -> Mapping[str, Sample] | None:
    if chain_length <= 1:
        return None
    lengths = chain_lengths(rows)
    return {f"success@{k}": Proportion(int((lengths >= k).sum()), int(len(lengths))) for k in range(1, chain_length + 1)}


def average_length(rows: Any, chain_length: int) -> Sample | None:
    if chain_length <= 1:
        return None
    return Values(tuple(float(v) for v in chain_lengths(rows)))


def task_success(rows: Any, chain_length: int) -> Sample | None:
    return Proportion(int(rows["success"].sum()), int(len(rows)))
