"""Paired comparison of two runs on identical episodes (``vlaeval compare RUN_A RUN_B``).

Two agents evaluated on the same seeded episodes (same suite version, setting, episode indices
and seeds) give paired samples.  The report's intervals and the gate's tests treat runs as
independent, which wastes most of the information: an episode both agents solve, or both fail,
says nothing about which agent is better, and episodes differ in difficulty far more than agents
do.  Pairing removes that between-episode variance, so runs on different episodes are refused
(saying how they differ) rather than compared approximately.

Every difference is B - A with a 95 % interval:

* success of a whole episode or chain, ``success@k`` and per-task success are 0/1 per paired
  unit: the exact McNemar test (McNemar 1947, in its exact conditional form on the discordant
  pairs, :func:`~vlaeval.results.stats.paired_change`; for 0/1 outcomes it *is* the exact
  sign-flip permutation test) and Newcombe's (1998) square-and-add interval for a paired
  difference of proportions (the Wilson intervals the report shows, combined with a correlation
  term for the pairing), which stays informative at 0 % and 100 %.
* average chain length: the exact two-sided sign-flip permutation test of the per-chain
  differences (Fisher 1935; Pitman 1937), exact rather than Monte Carlo because chain lengths are
  integers, and the percentile bootstrap interval of the mean difference, resampling chains
  (pairs), never the two runs separately.

Overall metrics use every chain.  A task, however, is attempted at a position of a chain only if
the chain got that far, so the two runs attempt different sets of tasks: per task, only the
(episode, position) attempts that *both* runs made are paired (the same task, as the episodes are
identical).  Such a row compares the agents given that both reached the task; an agent that
fails earlier in its chains reaches fewer tasks (a smaller n), and a task only one agent reaches
is not compared at all.  P-values are also given Holm-adjusted over every row (Holm 1979), as the
gate does, because a suite with 34 tasks yields small p-values by chance.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlaeval.errors import VlaevalError
from vlaeval.results.metrics import chain_lengths
from vlaeval.results.report import SETTING_LEVEL_TASK
from vlaeval.results.stats import bootstrap_interval, holm_adjust, paired_change, wilson_interval
from vlaeval.results.store import MANIFEST_FILE, load_results, read_manifest

FORMATS = ("table", "markdown", "json", "html")
CONFIDENCE = 0.95
MCNEMAR = "McNemar exact"
SIGN_FLIP = "sign-flip exact"


@dataclass(frozen=True)
class PairedDifference:
    """One metric compared on the units both runs share: ``b - a`` with its interval and test.

    ``b_better`` / ``a_better`` count the units on which one run did better (for 0/1 metrics the
    discordant pairs); only those carry information about the difference.
    """

    suite: str
    setting: str
    task: str
    metric: str
    proportion: bool
    n: int
    a: float
    b: float
    low: float
    high: float
    b_better: int
    a_better: int
    p_value: float
    p_adjusted: float
    test: str
    p_worse: float = 1.0  # one-sided: that B is worse than A (what ``vlaeval gate --paired`` tests)

    @property
    def difference(self) -> float:
        return self.b - self.a


@dataclass(frozen=True)
class CompareResult:
    """Run B against run A on their common episodes."""

    run_a: str
    run_b: str
    agent_a: str
    agent_b: str
    differences: tuple[PairedDifference, ...]
    alpha: float = 0.05

    def significant(self) -> list[PairedDifference]:
        return [d for d in self.differences if d.p_adjusted < self.alpha]

    def verdict(self) -> str:
        how = f"alpha={self.alpha:g}, two-sided, Holm-adjusted over {len(self.differences)} comparisons"
        found = self.significant()
        if not found:
            return f"compare: no significant difference between B ({self.run_b}) and A ({self.run_a}) ({how})"
        names = ", ".join(f"{_name(d)} {_format_difference(d)} ({'B better' if d.difference > 0 else 'B worse'})" for d in found)
        return f"compare: {len(found)} significant differences B - A ({how}): {names}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": {"run_dir": self.run_a, "agent": self.agent_a},
            "b": {"run_dir": self.run_b, "agent": self.agent_b},
            "confidence": CONFIDENCE,
            "alpha": self.alpha,
            "differences": [{**dataclasses.asdict(d), "difference": d.difference} for d in self.differences],
            "verdict": self.verdict(),
        }

    def groups(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((d.suite, d.setting) for d in self.differences))

    def rows(self, suite: str, setting: str) -> list[dict[str, str]]:
        """The display rows of one suite and setting."""
        return [
            {
                "task": d.task,
                "metric": d.metric,
                "n": str(d.n),
                "A": _format_value(d.a, d.proportion),
                "B": _format_value(d.b, d.proportion),
                "B - A [95% CI]": _format_difference(d),
                "B>A": str(d.b_better),
                "A>B": str(d.a_better),
                "p": f"{d.p_value:.4f}",
                "p adj.": f"{d.p_adjusted:.4f}",
                "test": d.test,
            }
            for d in self.differences
            if (d.suite, d.setting) == (suite, setting)
        ]


def compare_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], *, alpha: float = 0.05) -> CompareResult:
    """Compare run B with run A episode by episode; :class:`VlaevalError` if they are not paired."""
    if not 0 < alpha < 1:
        raise VlaevalError(f"--alpha must be between 0 and 1, not {alpha}")
    a, b = load_results(run_a), load_results(run_b)
    names = (str(run_a), str(run_b))
    check_same_episodes(a, b, names)
    length = max(_chain_length(Path(d), f) for d, f in ((run_a, a), (run_b, b)))
    return CompareResult(names[0], names[1], str(a["agent"].iloc[0]), str(b["agent"].iloc[0]), compare_frames(a, b, length), alpha)


def check_same_episodes(a: Any, b: Any, names: tuple[str, str] = ("A", "B")) -> None:
    """Raise a one-line :class:`VlaevalError` saying how two results tables are not on identical episodes."""
    na, nb = names
    for frame, name in ((a, na), (b, nb)):
        if frame.empty:
            raise VlaevalError(f"{name} has no finished episodes yet")
    versions = [dict(zip(f["suite"], f["suite_version"])) for f in (a, b)]
    if versions[0].keys() != versions[1].keys():
        raise VlaevalError(f"{na} is a run of {', '.join(versions[0])} but {nb} of {', '.join(versions[1])}: only runs of one suite can be compared")
    for suite, version in versions[0].items():
        if versions[1][suite] != version:
            raise VlaevalError(
                f"suite {suite!r} is version {version} in {na} but {versions[1][suite]} in {nb}: its episodes may differ, "
                f"so the runs are not paired; compare runs of one suite version"
            )
    settings = [sorted(set(zip(f["suite"], f["setting"]))) for f in (a, b)]
    if settings[0] != settings[1]:
        show = [", ".join(s for _, s in group) for group in settings]
        raise VlaevalError(f"{na} ran setting {show[0]} but {nb} ran {show[1]}: only runs of the same setting can be compared")
    for (suite, setting), rows_a in a.groupby(["suite", "setting"], sort=False):
        rows_b = b[(b["suite"] == suite) & (b["setting"] == setting)]
        seeds_a, seeds_b = (rows.groupby("episode")["seed"].first() for rows in (rows_a, rows_b))
        only_a, only_b = seeds_a.index.difference(seeds_b.index), seeds_b.index.difference(seeds_a.index)
        if len(only_a) or len(only_b):
            raise VlaevalError(
                f"the runs are on different episode lists ({suite}, {setting}): {_some(only_a)} only in {na}, {_some(only_b)} only in {nb}; "
                f"finish the shorter run (`vlaeval run --resume RUN_DIR --episodes N`) or compare runs of the same --episodes"
            )
        differ = seeds_a[seeds_a != seeds_b.reindex(seeds_a.index)]
        if len(differ):
            first = int(differ.index[0])
            raise VlaevalError(
                f"the runs used different seeds ({suite}, {setting}): {len(differ)} of {len(seeds_a)} episodes differ "
                f"(episode {first}: seed {seeds_a[first]} in {na}, {seeds_b[first]} in {nb}); compare runs made with the same --seed"
            )
        both = rows_a.merge(rows_b, on=["episode", "position"], suffixes=("_a", "_b"))
        other = both[both["task_a"] != both["task_b"]]
        if len(other):
            r = other.iloc[0]
            raise VlaevalError(
                f"episode {r['episode']}, position {r['position']} is task {r['task_a']!r} in {na} but {r['task_b']!r} in {nb} "
                f"although suite, version and seeds agree: the episodes differ, so the runs cannot be paired"
            )


def compare_frames(a: Any, b: Any, chain_length: int) -> tuple[PairedDifference, ...]:
    """Every built-in metric of B against A on two tables already known to be on identical episodes."""
    tests: list[tuple[tuple[str, str, str, str], bool, tuple[Any, ...]]] = []
    for (suite, setting), rows_a in a.groupby(["suite", "setting"], sort=False):
        rows_b = b[(b["suite"] == suite) & (b["setting"] == setting)]
        won_a, won_b = (rows.groupby("episode")["success"].all() for rows in (rows_a, rows_b))
        tests.append(((suite, setting, SETTING_LEVEL_TASK, "success_rate"), True, _binary(won_a, won_b.reindex(won_a.index))))
        if chain_length > 1:
            len_a, len_b = chain_lengths(rows_a), chain_lengths(rows_b)
            len_b = len_b.reindex(len_a.index)
            for k in range(1, chain_length + 1):
                tests.append(((suite, setting, SETTING_LEVEL_TASK, f"success@{k}"), True, _binary(len_a >= k, len_b >= k)))
            tests.append(((suite, setting, SETTING_LEVEL_TASK, "avg_len"), False, _lengths(len_a.to_numpy(), len_b.to_numpy())))
        attempts = rows_a.merge(rows_b, on=["episode", "position"], suffixes=("_a", "_b"))
        for task, pairs in attempts.groupby("task_a", sort=True):
            tests.append(((suite, setting, str(task), "task_success"), True, _binary(pairs["success_a"], pairs["success_b"])))
    adjusted = holm_adjust([t[2][-2] for t in tests])
    return tuple(PairedDifference(*key, proportion, *values[:-1], q, MCNEMAR if proportion else SIGN_FLIP, values[-1])
                 for (key, proportion, values), q in zip(tests, adjusted))


def newcombe_interval(a: Sequence[bool], b: Sequence[bool], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval for the paired difference of success rates ``mean(b) - mean(a)`` (Newcombe 1998).

    Wilson intervals of the two rates are combined by "square and add", with the correlation of
    the two rates (continuity-corrected towards 0) accounting for the pairing.  Unlike the Wald
    interval it neither collapses to a point at 0 % or 100 % nor leaves [-1, 1].
    """
    n = len(a)
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    neither = n - both - only_a - only_b
    pa, pb = (both + only_a) / n, (both + only_b) / n
    (la, ua), (lb, ub) = wilson_interval(both + only_a, n, confidence), wilson_interval(both + only_b, n, confidence)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    diff = pb - pa
    low = diff - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2 - 2 * phi * (pb - lb) * (ua - pa))
    high = diff + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2 - 2 * phi * (ub - pb) * (pa - la))
    return low, high


def sign_flip_p_value(differences: Sequence[int], alternative: str = "two-sided") -> float:
    """Exact p-value of the paired sign-flip test for integer differences (``b - a``).

    ``alternative="less"`` is the one-sided test that the differences are negative (B worse);
    for 0/1 outcomes it is the one-sided exact McNemar test.

    Under "no difference" each pair's difference is as likely to have either sign, so the sum of
    the differences is distributed as the sum of ``±|d_i|`` with fair signs.  Pairs with the same
    ``|d|`` contribute a scaled binomial, so the exact law is a convolution of a few binomials
    (chain lengths differ by at most the chain length): exact at any n, with no Monte Carlo error.
    For 0/1 outcomes this is the exact McNemar test.
    """
    from scipy.stats import binom

    d = np.asarray(differences, dtype=np.int64)
    observed = abs(int(d.sum()))
    magnitudes, counts = np.unique(np.abs(d[d != 0]), return_counts=True)
    law = np.ones(1)  # probabilities of the sum -total, ..., total
    for size, count in zip(magnitudes, counts):
        step = np.zeros(2 * size * count + 1)
        step[:: 2 * size] = binom.pmf(np.arange(count + 1), count, 0.5)
        law = np.convolve(law, step)
    total = (len(law) - 1) // 2
    sums = np.arange(-total, total + 1)
    if alternative == "less":
        return min(1.0, float(law[sums <= int(d.sum())].sum()))
    return min(1.0, float(law[np.abs(sums) >= observed].sum()))


def render(result: CompareResult, fmt: str) -> str:
    """The comparison as a terminal table, markdown, JSON or a self-contained HTML page."""
    if fmt not in FORMATS:
        raise VlaevalError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
    if fmt == "html":
        return _html(result)
    import pandas as pd

    heading = "## " if fmt == "markdown" else ""
    chunks = [f"{heading}B = {result.agent_b} ({result.run_b}) against A = {result.agent_a} ({result.run_a})\n"]
    for suite, setting in result.groups():
        frame = pd.DataFrame(result.rows(suite, setting))
        text = frame.to_markdown(index=False, disable_numparse=True) if fmt == "markdown" else frame.to_string(index=False)
        chunks.append(f"{heading}{suite} · {setting}\n\n{text}\n")
    chunks.append(f"{_FOOTNOTE}\n\n{result.verdict()}\n")
    return "\n".join(chunks)


_FOOTNOTE = ("Paired on identical episodes.  95 % intervals of B - A: Newcombe (paired Wilson) for rates, bootstrap over "
             "chains for avg_len.  p: two-sided exact McNemar (rates) or exact sign-flip (avg_len); p adj.: Holm over all rows.  "
             "Per-task rows pair only attempts both runs made (both chains reached the task).")


def _binary(a: Any, b: Any) -> tuple[int, float, float, float, float, int, int, float, float]:
    """n, rates, Newcombe interval, B-only and A-only successes, exact McNemar p (two-sided, B worse)."""
    a, b = [bool(x) for x in a], [bool(x) for x in b]
    change = paired_change(a, b)
    low, high = newcombe_interval(a, b)
    worse = sign_flip_p_value([int(y) - int(x) for x, y in zip(a, b)], "less")
    return len(a), sum(a) / len(a), sum(b) / len(b), low, high, change["fixed"], change["broken"], change["p_value"], worse


def _lengths(a: np.ndarray, b: np.ndarray) -> tuple[int, float, float, float, float, int, int, float, float]:
    """n, mean chain lengths, bootstrap interval of the mean difference, wins each way, sign-flip p
    (two-sided, B worse)."""
    d = (b - a).astype(np.int64)
    low, high = bootstrap_interval(d.astype(float))
    return (len(d), float(a.mean()), float(b.mean()), low, high, int((d > 0).sum()), int((d < 0).sum()),
            sign_flip_p_value(d), sign_flip_p_value(d, "less"))


def _chain_length(run_dir: Path, frame: Any) -> int:
    """The suite protocol's chain length from the manifest, else the longest chain the run attempted."""
    manifest = read_manifest(run_dir) if (run_dir / MANIFEST_FILE).exists() else {}  # none: a table assembled by hand
    try:
        return int(manifest["suite"]["protocol"]["chain_length"])
    except (KeyError, TypeError, ValueError):
        return int(frame["position"].max())


def _some(index: Any) -> str:
    shown = ", ".join(str(i) for i in list(index)[:3]) + (", ..." if len(index) > 3 else "")
    return f"{len(index)} episodes" + (f" ({shown})" if len(index) else "")


def _name(d: PairedDifference) -> str:
    return d.metric if d.task == SETTING_LEVEL_TASK else f"{d.metric}[{d.task}]"


def _format_value(value: float, proportion: bool) -> str:
    return f"{value:.1%}" if proportion else f"{value:.3f}"


def _format_difference(d: PairedDifference) -> str:
    if d.proportion:
        return f"{100 * d.difference:+.1f} pp [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
    return f"{d.difference:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def _html(result: CompareResult) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>vlaeval compare</title>",
        "<style>body{font:14px/1.5 system-ui,sans-serif;margin:2em auto;max-width:1140px;color:#1f2328}"
        "table{border-collapse:collapse;font-variant-numeric:tabular-nums}td,th{border:1px solid #d1d9e0;padding:3px 8px;white-space:nowrap}"
        "th{background:#f6f8fa}td.better{background:#dafbe1}td.worse{background:#ffebe9}p{color:#59636e}</style>",
        f"<h1>B = {esc(result.agent_b)} against A = {esc(result.agent_a)}</h1>",
        f"<p>A: <code>{esc(result.run_a)}</code> · B: <code>{esc(result.run_b)}</code></p>",
    ]
    for suite, setting in result.groups():
        rows = result.rows(suite, setting)
        shown = [d for d in result.differences if (d.suite, d.setting) == (suite, setting)]
        header = "".join(f"<th>{esc(h)}</th>" for h in rows[0])
        body = "".join(
            "<tr>" + "".join(
                f"<td class='{_tone(d, result.alpha)}'>{esc(v)}</td>" if k == "B - A [95% CI]" else f"<td>{esc(v)}</td>" for k, v in row.items()
            ) + "</tr>"
            for row, d in zip(rows, shown)
        )
        parts.append(f"<h2>{esc(suite)} · {esc(setting)}</h2><table><tr>{header}</tr>{body}</table>")
    parts.append(f"<p>{esc(_FOOTNOTE)}</p><p><strong>{esc(result.verdict())}</strong></p></html>")
    return "\n".join(parts) + "\n"


def _tone(d: PairedDifference, alpha: float) -> str:
    """Shade a significant difference (after Holm) by its direction."""
    if d.p_adjusted >= alpha:
        return ""
    return "better" if d.difference > 0 else "worse"

