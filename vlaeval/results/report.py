"""Aggregating per-episode tables into metrics with intervals, for one or many runs.

Numbers are only comparable when the runs were made the same way, and only meaningful with the
power to see a difference, so a report also says what it knows of both: which runs are
incomplete or stopped early by a sequential test, where several runs' protocol fingerprints
differ (:mod:`vlaeval.results.fingerprint`), and the smallest drop each run could detect
(:func:`vlaeval.results.plan.detectable`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vlaeval.errors import VlaevalError
from vlaeval.results.fingerprint import SUBJECT_FIELDS, accepted, describe_difference, protocol_differences
from vlaeval.results.stats import Estimate, Proportion, Sample, estimate
from vlaeval.results.store import MANIFEST_FILE, load_results, read_manifest

SETTING_LEVEL_TASK = "*"
#: What ``vlaeval report`` states each run could detect: power and one-sided level of one metric tested alone.


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
    status: str | None = None  # the manifest's status: running, interrupted, failed, finished or decided
    stopping: str | None = None  # what its sequential test (--until decided) said, for runs that had one

    @property
    def incomplete(self) -> bool:
        """Whether the run stopped before its last episode (a killed run still says ``running``).

        Its metrics then cover only the episodes it got to: neither final nor, at face value,
        comparable with a finished run's.  Without a manifest nothing is known, so nothing is said.
        A run its sequential test ended (``decided``) has fewer episodes than planned by design.
        """
        if self.status == "decided":
            return False
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
    #: Each run directory's protocol fingerprint (None: made before runs recorded one) and the
    #: fields in which its resumed sessions' protocols differed.
    protocols: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    session_changes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def incomplete(self) -> tuple[str, ...]:
        """One line per incomplete run: what the gate fails on."""
        return tuple(dict.fromkeys(
            f"{r.run_dir} is incomplete ({r.progress}); finish it with `vlaeval run --resume {r.run_dir}`" for r in self.runs if r.incomplete
        ))

    @property
    def notes(self) -> tuple[str, ...]:
        """Caveats every format must show, one line each: incomplete runs, runs a sequential test
        stopped, protocols that changed within a run or differ between the runs."""
        stopped = [f"{r.run_dir} {r.stopping}" for r in self.runs if r.stopping]
        changed = [f"{run_dir} was resumed under another protocol (it differed in {', '.join(fields)}): its episodes were not all "
                   f"played alike" for run_dir, fields in self.session_changes.items() if fields]
        return tuple(dict.fromkeys([*self.incomplete, *stopped, *changed, *self._protocol_notes()]))

    def _protocol_notes(self) -> list[str]:
        """Where the runs' protocols differ from the first run's, one note per field; agent fields
        only between runs of one agent (different agents differ in them by design)."""
        runs = list({r.run_dir: r for r in self.runs}.values())
        if len(runs) < 2 or not any(self.protocols.get(r.run_dir) for r in runs):
            return []  # one run, or runs from before fingerprints: nothing to compare
        missing = [f"{r.run_dir} has no protocol fingerprint (made before runs recorded one): its protocol cannot be compared"
                   for r in runs if not self.protocols.get(r.run_dir)]
        first = next(r for r in runs if self.protocols.get(r.run_dir))
        out = []
        for other in runs:
            if other is first or not self.protocols.get(other.run_dir):
                continue
            same_agent = other.agent == first.agent
            for name, a, b in protocol_differences(self.protocols[first.run_dir], self.protocols[other.run_dir]):
                if same_agent or not accepted(name, SUBJECT_FIELDS):
                    out.append(f"protocol differs: {describe_difference(name, a, b, (first.label, other.label))}")
        return missing + out

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
    protocols: dict[str, Mapping[str, Any] | None] = {}
    session_changes: dict[str, tuple[str, ...]] = {}
    frames = [(Path(d), load_results(d)) for d in run_dirs]
    labels = _labels([(d, f) for d, f in frames])
    for (run_dir, frame), label in zip(frames, labels):
        if frame.empty:
            raise VlaevalError(f"{run_dir} has no finished episodes yet")
        manifest = _manifest(run_dir)
        chain_length = _chain_length(manifest, frame)
        config = manifest.get("config")
        planned, status = config.get("episodes") if isinstance(config, dict) else None, manifest.get("status")
        planned = planned if isinstance(planned, int) else None
        protocols[str(run_dir)], session_changes[str(run_dir)] = _protocol_facts(manifest)
        counted = _counted(frame, manifest)
        stopping = _stopping(manifest, planned, frame["episode"].nunique() - counted["episode"].nunique())
        for (suite, version, setting), rows in counted.groupby(["suite", "suite_version", "setting"], sort=False):
            runs.append(
                RunSummary(
                    label, str(rows["run_id"].iloc[0]), str(run_dir), str(rows["agent"].iloc[0]), suite, version, setting,
                    chain_length, int(rows["episode"].nunique()), int(rows.groupby("episode")["error"].apply(lambda e: e.notna().any()).sum()),
                    planned, status if isinstance(status, str) else None, stopping,
                )
            )
            metrics.extend(compute_metrics(rows, label, chain_length))
    return Report(tuple(runs), tuple(metrics), protocols, session_changes)


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


def counted_results(run_dir: str | os.PathLike[str]) -> Any:
    """The rows a report counts: every finished episode, except for a run its sequential test
    stopped (``--until decided``), whose first ``n`` episodes count, those the test saw.

    Workers finish episodes out of order, so when the test decides, other workers may have
    finished episodes past ``n``.  Which ones depends on timing, and timing on outcomes (a failing
    episode runs to the step budget), so counting them would bias the numbers and make them
    depend on ``--workers``; they stay in the results table, uncounted.
    """
    return _counted(load_results(run_dir), _manifest(Path(run_dir)))


def _counted(frame: Any, manifest: Mapping[str, Any]) -> Any:
    stopping = manifest.get("stopping")
    n = stopping.get("n") if isinstance(stopping, dict) and manifest.get("status") == "decided" else None
    return frame[frame["episode"] < n].reset_index(drop=True) if isinstance(n, int) else frame


def _protocol_facts(manifest: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, tuple[str, ...]]:
    """The run's protocol fingerprint, and the fields in which resumed sessions differed from it."""
    protocol, sessions = manifest.get("protocol"), manifest.get("sessions")
    changed = (f for s in (sessions if isinstance(sessions, list) else []) if isinstance(s, dict) for f in s.get("protocol_differences", []))
    return (protocol if isinstance(protocol, dict) else None), tuple(dict.fromkeys(changed))


def _stopping(manifest: Mapping[str, Any], planned: int | None, uncounted: int) -> str | None:
    """The note on a run with a sequential test: stopped early as it was meant to, or not decided."""
    stopping = manifest.get("stopping")
    if not isinstance(stopping, dict) or "verdict" not in stopping:
        return None
    test, reason = stopping.get("test", "sequential test"), stopping.get("reason", "")
    if manifest.get("status") == "decided":
        of = f" of {planned} planned" if planned is not None else ""
        extra = f"; the {uncounted} episodes other workers finished after it are stored, not counted" if uncounted else ""
        return (f"stopped early, as --until decided asks: its {test} decided {stopping['verdict']!r} after {stopping.get('n')}{of} "
                f"episodes ({reason}){extra}")
    return f"has a {test} that has not decided ({reason})"


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
