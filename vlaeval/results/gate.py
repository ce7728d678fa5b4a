"""The regression gate: is a run measurably worse than a baseline?

Every metric both runs have (same suite, setting, task) is tested one-sided for "worse"
(Fisher's exact test for proportions, a bootstrap of the mean difference for means).  With many
tasks some p-values are small by chance, so p-values are Holm-adjusted across the comparisons by
default; the gate fails when any adjusted p-value is below ``alpha``.

With ``paired`` (runs on identical episodes: same suite version, setting, episode indices and
seeds, e.g. a CI run against a committed baseline of the same protocol) the metrics that
:mod:`vlaeval.results.compare` pairs are tested one-sided on the paired units instead (exact
McNemar for rates, exact sign-flip for average chain length), which removes the variance
between episodes and detects a smaller drop with the same number of episodes; metrics it does
not pair (plugin metrics) keep the unpaired test, and the table says which test each row used.

It also fails when the run or the baseline is incomplete (interrupted, failed, or killed while
running): 42 chains of a planned 300 can pass a test that the full run would fail, and a CI job
whose evaluation died half-way must not go green.  ``allow_incomplete`` compares what there is.
A run its sequential test ended (``--until decided``) is not incomplete: it stopped by design,
and the gate says so in a note.

A metric's drop means a regression only if both runs were made the same way, so the gate
refuses (a :class:`VlaevalError`, exit 2) a baseline whose protocol fingerprint differs from the
run's (:func:`vlaeval.results.fingerprint.protocol_differences`: runs of different sizes drawn
from one seeded episode list do not differ) in a field not ``accept`` ed; accepted differences
are notes.  Baselines recorded before runs had protocol fingerprints (the committed
``results/calvin-expert-*``) are gated as before, with a note saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from vlaeval.errors import VlaevalError
from vlaeval.results.fingerprint import SUBJECT_FIELDS, accepted, describe_difference, protocol_differences
from vlaeval.results.report import MetricResult, Report, build_report, format_estimate
from vlaeval.results.stats import Estimate, Proportion, holm_adjust, worse_p_value

CORRECTIONS = ("holm", "none")


@dataclass(frozen=True)
class Comparison:
    suite: str
    setting: str
    task: str
    metric: str
    baseline: Estimate
    current: Estimate
    proportion: bool
    p_value: float
    p_adjusted: float
    regressed: bool
    test: str = "unpaired"


@dataclass(frozen=True)
class GateResult:
    comparisons: tuple[Comparison, ...]
    alpha: float
    correction: str
    notes: tuple[str, ...]
    incomplete: tuple[str, ...] = ()  # one line per incomplete run or baseline
    allow_incomplete: bool = False
    paired: bool = False

    @property
    def passed(self) -> bool:
        return not any(c.regressed for c in self.comparisons) and (self.allow_incomplete or not self.incomplete)

    def table(self) -> str:
        import pandas as pd

        frame = pd.DataFrame(
            [
                {
                    "setting": c.setting,
                    "task": c.task,
                    "metric": c.metric,
                    "baseline": format_estimate(c.baseline, c.proportion),
                    "current": format_estimate(c.current, c.proportion),
                    "delta": f"{c.current.value - c.baseline.value:+.3f}",
                    "p(worse)": f"{c.p_value:.4f}",
                    "p adj.": f"{c.p_adjusted:.4f}",
                    "verdict": "WORSE" if c.regressed else "ok",
                    **({"test": c.test} if self.paired else {}),
                }
                for c in self.comparisons
            ]
        )
        return frame.to_string(index=False)

    def verdict(self) -> str:
        worse = [c for c in self.comparisons if c.regressed]
        how = (f"alpha={self.alpha:g}, {'Holm-adjusted' if self.correction == 'holm' else 'unadjusted'} one-sided "
               f"{'paired ' if self.paired else ''}tests")
        reasons = []
        if self.incomplete and not self.allow_incomplete:
            reasons.append(f"{'; '.join(self.incomplete)}; or pass --allow-incomplete to gate on the episodes there are")
        if worse:
            names = ", ".join(f"{c.metric}[{c.task}]" if c.task != "*" else c.metric for c in worse)
            reasons.append(f"{len(worse)} of {len(self.comparisons)} metrics significantly worse than the baseline ({how}): {names}")
        if reasons:
            return f"gate: FAIL: {'; '.join(reasons)}"
        return f"gate: PASS: none of {len(self.comparisons)} metrics is significantly worse than the baseline ({how})"


def run_gate(run_dir: str | os.PathLike[str], baseline: str | os.PathLike[str], *, alpha: float = 0.05, correction: str = "holm",
             allow_incomplete: bool = False, paired: bool = False, accept: Sequence[str] = ()) -> GateResult:
    """Compare a run with a baseline run directory (e.g. one committed under ``results/``).

    ``accept``: protocol fields (dotted, a group accepts the fields under it) that may differ.
    """
    if not 0 < alpha < 1:
        raise VlaevalError(f"--alpha must be between 0 and 1, not {alpha}")
    if correction not in CORRECTIONS:
        raise VlaevalError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    base_report, cur_report = build_report([baseline]), build_report([run_dir])
    base = {m.key: m for m in base_report.metrics}
    cur = {m.key: m for m in cur_report.metrics}
    _check_versions(base, cur)
    protocol_notes = _check_protocols(cur_report, base_report, accept)
    common = [k for k in base if k in cur]
    reports = (("run", cur_report), ("baseline", base_report))
    incomplete = tuple(f"the {role} {note}" for role, report in reports for note in report.incomplete)
    caveats = tuple(f"the {role} {note}" for role, report in reports for note in report.notes if note not in report.incomplete)
    notes = (protocol_notes + caveats + tuple(f"only in baseline: {k[3]}[{k[2]}] ({k[1]})" for k in base if k not in cur)
             + (incomplete if allow_incomplete else ()))
    if not common:
        raise VlaevalError("the run and the baseline share no metric (different suites or settings?); nothing to gate")
    paired_p = _paired_p_values(run_dir, baseline) if paired else {}
    tests = [paired_p[k] if k in paired_p else ("unpaired", worse_p_value(cur[k].sample, base[k].sample,
                                                                          higher_is_better=base[k].higher_is_better))
             for k in common]
    p_values = [p for _, p in tests]
    adjusted = holm_adjust(p_values) if correction == "holm" else p_values
    comparisons = tuple(
        Comparison(k[0], k[1], k[2], k[3], base[k].estimate, cur[k].estimate, isinstance(base[k].sample, Proportion), p, q, q < alpha,
                   test)
        for k, (test, p), q in zip(common, tests, adjusted)
    )
    return GateResult(comparisons, alpha, correction, notes, incomplete, allow_incomplete, paired)


def _paired_p_values(run_dir: str | os.PathLike[str], baseline: str | os.PathLike[str]) -> dict[tuple[str, str, str, str], tuple[str, float]]:
    """One-sided "run worse than baseline" p-values of every metric :mod:`compare` pairs, by metric key."""
    from vlaeval.results.compare import compare_runs

    try:
        result = compare_runs(baseline, run_dir)
    except VlaevalError as exc:
        raise VlaevalError(f"--paired needs the run and the baseline on identical episodes: {exc}") from None
    return {(d.suite, d.setting, d.task, d.metric): (f"paired {d.test}", d.p_worse) for d in result.differences}


def _check_protocols(run: Report, baseline: Report, accept: Sequence[str]) -> tuple[str, ...]:
    """Notes on the two protocol fingerprints; a one-line error for a difference not accepted."""
    (run_fp,), (base_fp,) = run.protocols.values(), baseline.protocols.values()
    if base_fp is None or run_fp is None:
        missing = [role for role, fp in (("baseline", base_fp), ("run", run_fp)) if fp is None]
        return (f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no protocol fingerprint (made before runs "
                f"recorded one): only the suite version is checked",)
    where = ("the baseline", "the run")
    differences = protocol_differences(base_fp, run_fp)
    # The agent (its name, checkpoint, runtime, options) is what a gate compares: a new checkpoint
    # against the old one differs there by design, so those fields are shown, never refused.
    refused = [d for d in differences if not accepted(d[0], (*accept, *SUBJECT_FIELDS))]
    if refused:
        raise VlaevalError(f"the baseline's protocol differs from the run's: {'; '.join(describe_difference(*d, where) for d in refused)}; "
                           f"record a new baseline, or gate anyway with --accept FIELD for each (e.g. --accept {refused[0][0]})")
    unused = [p for p in accept if not any(accepted(d[0], [p]) for d in differences)]
    return (tuple(f"protocol differs ({'the agent under test' if accepted(d[0], SUBJECT_FIELDS) else 'accepted'}): "
                  f"{describe_difference(*d, where)}" for d in differences)
            + tuple(f"--accept {p} matches no difference" for p in unused))


def _check_versions(base: dict[Any, MetricResult], cur: dict[Any, MetricResult]) -> None:
    versions = {(m.suite, m.suite_version) for m in base.values()}
    for m in cur.values():
        for suite, version in versions:
            if m.suite == suite and m.suite_version != version:
                raise VlaevalError(
                    f"suite {suite!r} changed version ({version} in the baseline, {m.suite_version} in the run); "
                    f"results are not comparable: record a new baseline with this version"
                )
