"""vlaeval-toy's report format: ``vlaeval report RUN... --format toy-summary``."""

from __future__ import annotations

from pathlib import Path

from vlaeval.results.report import Report


def summary(report: Report, out: Path | None = None) -> str:
    """One line per run and setting: its success rate with the 95 % interval.

    A reporter writes its text to ``out`` when one is given and returns the text either way;
    ``vlaeval report`` prints what it returns when there is no ``--out``.
    """
    rates = {(m.run, m.suite, m.setting): m.estimate for m in report.metrics if m.metric == "success_rate"}
    lines = []
    for run in report.runs:
        est = rates[(run.label, run.suite, run.setting)]
        lines.append(f"{run.label} on {run.suite}/{run.setting}: {est.value:.0%} [{est.low:.0%}, {est.high:.0%}] "
                     f"over {run.episodes} episodes")
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.write_text(text)
    return text
