"""``--until decided``: the sequential test a run may stop on, and how many episodes it plans.

The test itself is :mod:`vlaeval.results.sequential`; here it meets a run: its reference run on
the run's own episodes, and a resumed run's test continued from the episodes already finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.config import RunConfig
from vlaeval.results.sequential import SequentialRun, StoppingRule, outcomes_hash, reference_outcomes, reference_size
from vlaeval.results.store import EpisodeRecord


def _default_episodes(spec: SuiteSpec, until: StoppingRule | None) -> int:
    """All of the protocol's episodes; for a paired test, those the reference run has (it pairs no more)."""
    if until is not None and until.against is not None:
        return min(reference_size(until.against), spec.protocol.episodes) or spec.protocol.episodes
    return spec.protocol.episodes


def _sequential_run(run_dir: Path, manifest: Mapping[str, Any], config: RunConfig, spec: SuiteSpec, episodes: Sequence[EpisodeSpec],
                    done: Mapping[int, EpisodeRecord]) -> SequentialRun | None:
    """The run's sequential test, fed with the episodes already finished (a resume continues it).

    A paired test needs its reference run on these very episodes, checked before anything is
    played; a resumed one also needs the reference to still hold the results the test began with,
    or the "same test" would silently pair with other outcomes.
    """
    rule = config.until
    if rule is None:
        return None
    reference = None
    if rule.against is not None:
        reference = reference_outcomes(rule.against, suite=spec.name, version=spec.version, setting=config.setting,
                                       episodes=[(e.index, e.seed, e.tasks) for e in episodes])
        stopping = manifest.get("stopping")
        before = stopping.get("reference") if isinstance(stopping, dict) else None
        if isinstance(before, dict) and isinstance(before.get("episodes"), int) and before["episodes"] <= len(reference):
            if outcomes_hash(reference, before["episodes"]) != before.get("sha256"):
                raise VlaevalError(f"{run_dir}: the results of --against {rule.against} on its first {before['episodes']} episodes "
                                   f"changed since this run's test began; the test cannot continue: start a new run")
    return SequentialRun(rule, {i: float(r.success) for i, r in done.items()}, reference)
