"""Aggregating per-episode tables into metrics with intervals, for one or many runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vlaeval.errors import VlaevalError
from vlaeval.results.stats import Estimate, Proportion, Sample, estimate
from vlaeval.results.store import MANIFEST_FILE, load_results, read_manifest

SETTING_LEVEL_TASK = "*"


@dataclass(frozen=True)
class RunSummary:
    """One run in a report."""

    label: str
    run_id: str
    run_dir: str
    agent: str
    suite: str
    suite_version: str
    setting: str
    chain_length: int
    episodes: int
    errors: int
    planned: int | None = None  # the manifest's config.episodes
    status: str | None = None  # the manifest's status: running, interrupted, failed or finished

    @property
    def incomplete(self) -> bool:
        """Whether the run stopped before its last episode (a killed run still says ``running``).

        Its metrics then cover only the episodes it got to: neither final nor, at face value,
        comparable with a finished run's.  Without a manifest nothing is known, so nothing is said.
        """
        return self.status not in (None, "finished") or (self.planned is not None and self.episodes < self.planned)

    @property
    def progress(self) -> str:
        """E.g. ``42 of 300 episodes, status interrupted``."""
        done = f"{self.episodes} of {self.planned} episodes" if self.planned is not None else f"{self.episodes} episodes"
        return done + (f", status {self.status}" if self.status else "")


@dataclass(frozen=True)
class MetricResult:
    """One metric of one run on one task (``task == "*"`` for suite/setting-level metrics)."""

    run: str
    suite: str
    suite_version: str
    setting: str
    task: str
    metric: str
    estimate: Estimate
    higher_is_better: bool
    sample: Sample

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What must match for two runs' results to be compared."""
        return (self.suite, self.setting, self.task, self.metric)


@dataclass(frozen=True)
class Report:
    runs: tuple[RunSummary, ...]
    metrics: tuple[MetricResult, ...]

    @property
    def notes(self) -> tuple[str, ...]:
        """Caveats every format must show, one line each: which runs are incomplete."""
        return tuple(dict.fromkeys(
            f"{r.run_dir} is incomplete ({r.progress}); finish it with `vlaeval run --resume {r.run_dir}`" for r in self.runs if r.incomplete
        ))

    def to_frame(self) -> Any:
        """Long format: one row per run, suite, setting, task and metric."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "run": m.run,
                    "suite": m.suite,
                    "suite_version": m.suite_version,
                    "setting": m.setting,
                    "task": m.task,
                    "metric": m.metric,
                    "value": m.estimate.value,
                    "ci_low": m.estimate.low,
                    "ci_high": m.estimate.high,
                    "n": m.estimate.n,
                    "interval": m.estimate.method,
                }
                for m in self.metrics
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return {
            "runs": [{**dataclasses.asdict(r), "incomplete": r.incomplete} for r in self.runs],
            "metrics": self.to_frame().to_dict(orient="records"),
            "confidence": 0.95,
            "notes": list(self.notes),
        }

    def groups(self) -> list[tuple[str, str]]:
        """(suite, setting) pairs in first-seen order."""
        seen: dict[tuple[str, str], None] = {}
        for m in self.metrics:
            seen.setdefault((m.suite, m.setting), None)
        return list(seen)

    def wide(self, suite: str, setting: str) -> Any:
        """Side-by-side table for one suite/setting: rows (task, metric), one column per run."""
        import pandas as pd

        cells: dict[tuple[str, str], dict[str, str]] = {}
        for m in self.metrics:
            if (m.suite, m.setting) == (suite, setting):
                cells.setdefault((m.task, m.metric), {})[m.run] = format_estimate(m.estimate, isinstance(m.sample, Proportion))
        frame = pd.DataFrame.from_dict(cells, orient="index")
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["task", "metric"])
        return frame[[r.label for r in self.runs if r.label in frame.columns]].fillna("")


def format_estimate(est: Estimate, proportion: bool) -> str:
    if proportion:
        return f"{est.value:.1%} [{est.low:.1%}, {est.high:.1%}] n={est.n}"
    return f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}] n={est.n}"


def build_report(run_dirs: Sequence[str | os.PathLike[str]]) -> Report:
    """Compute every registered metric for each run directory."""
    if not run_dirs:
        raise VlaevalError("no run directories given")
    runs: list[RunSummary] = []
    metrics: list[MetricResult] = []
    frames = [(Path(d), load_results(d)) for d in run_dirs]
    labels = _labels([(d, f) for d, f in frames])
    for (run_dir, frame), label in zip(frames, labels):
        if frame.empty:
            raise VlaevalError(f"{run_dir} has no finished episodes yet")
        manifest = _manifest(run_dir)
        chain_length = _chain_length(manifest, frame)
        config = manifest.get("config")
        planned, status = config.get("episodes") if isinstance(config, dict) else None, manifest.get("status")
        for (suite, version, setting), rows in frame.groupby(["suite", "suite_version", "setting"], sort=False):
            runs.append(
                RunSummary(
                    label, str(rows["run_id"].iloc[0]), str(run_dir), str(rows["agent"].iloc[0]), suite, version, setting,
                    chain_length, int(rows["episode"].nunique()), int(rows.groupby("episode")["error"].apply(lambda e: e.notna().any()).sum()),
                    planned if isinstance(planned, int) else None, status if isinstance(status, str) else None,
                )
            )
            metrics.extend(compute_metrics(rows, label, chain_length))
    return Report(tuple(runs), tuple(metrics))


def compute_metrics(rows: Any, label: str, chain_length: int) -> list[MetricResult]:
    """Every registered metric on the rows of one run, suite and setting."""
    from vlaeval.plugins.manager import registries

    suite, version, setting = (str(rows[c].iloc[0]) for c in ("suite", "suite_version", "setting"))
    out: list[MetricResult] = []
    entries = sorted(registries().metric, key=lambda e: (e.spec.level != "setting",))
    for entry in entries:
        spec, fn = entry.spec, entry.load()
        groups = [(SETTING_LEVEL_TASK, rows)] if spec.level == "setting" else list(rows.groupby("task", sort=True))
        for task, group in groups:
            result = fn(group, chain_length)
            for name, sample in _named_samples(spec.name, result):
                out.append(MetricResult(label, suite, version, setting, str(task), name, estimate(sample), spec.higher_is_better, sample))
    return out


def _named_samples(name: str, result: Sample | Mapping[str, Sample] | None) -> list[tuple[str, Sample]]:
    if result is None:
        return []
    if isinstance(result, Mapping):
        return list(result.items())
    return [(name, result)]


def _manifest(run_dir: Path) -> Mapping[str, Any]:
    """The run's manifest, or nothing for results without one (e.g. a table assembled by hand)."""
    return read_manifest(run_dir) if (run_dir / MANIFEST_FILE).exists() else {}


def _chain_length(manifest: Mapping[str, Any], frame: Any) -> int:
    try:
        return int(manifest["suite"]["protocol"]["chain_length"])
    except (KeyError, TypeError, ValueError):
        return int(frame["position"].max())


def _labels(frames: list[tuple[Path, Any]]) -> list[str]:
    """Agent names, disambiguated by run id when one agent appears in several runs."""
    agents = [str(f["agent"].iloc[0]) if not f.empty else d.name for d, f in frames]
    return [a if agents.count(a) == 1 else f"{a} ({d.name})" for a, (d, _) in zip(agents, frames)]
