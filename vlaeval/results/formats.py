"""Built-in report formats (registered as reporters).

Each reporter is ``fn(report, out) -> str``: it renders the report, writes it to ``out`` when a
path is given, and returns the text (the CLI prints it when there is no ``out``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from vlaeval.results.report import SETTING_LEVEL_TASK, Report


def table(report: Report, out: Path | None = None) -> str:
    """Plain-text tables for the terminal."""
    return _emit(_sections(report, lambda wide: wide.to_string()), out)


def markdown(report: Report, out: Path | None = None) -> str:
    return _emit(_sections(report, lambda wide: wide.reset_index().to_markdown(index=False), heading="## "), out)


def csv(report: Report, out: Path | None = None) -> str:
    """Long format: one line per run, suite, setting, task and metric."""
    return _emit(report.to_frame().to_csv(index=False), out)


def json_format(report: Report, out: Path | None = None) -> str:
    """The aggregate metrics with their intervals, machine-readable."""
    return _emit(json.dumps(report.to_dict(), indent=2, default=_nan_to_none) + "\n", out)


def html_page(report: Report, out: Path | None = None) -> str:
    """A self-contained page: run list, tables and matplotlib plots embedded as PNG."""
    parts = ["<!doctype html><meta charset='utf-8'><title>vlaeval report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style>",
             "<h1>vlaeval report</h1>"]
    runs = report.to_dict()["runs"]
    parts.append(_html_table(["run", "run id", "agent", "suite", "version", "setting", "episodes", "errored"],
                             [[r["label"], r["run_id"], r["agent"], r["suite"], r["suite_version"], r["setting"], r["episodes"], r["errors"]] for r in runs]))
    for suite, setting in report.groups():
        wide = report.wide(suite, setting).reset_index()
        parts.append(f"<h2>{html.escape(suite)} · {html.escape(setting)}</h2>")
        parts.append(_html_table(list(wide.columns), wide.values.tolist()))
        for title, png in _plots(report, suite, setting):
            parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    parts.append("<p>Intervals are 95 %: Wilson for proportions, percentile bootstrap (10,000 resamples) for means.</p>")
    text = "\n".join(parts)
    _emit(text, out or Path("report.html"))
    return f"wrote {out or Path('report.html')}\n"


def _sections(report: Report, render: Any, heading: str = "") -> str:
    chunks = []
    for suite, setting in report.groups():
        chunks.append(f"{heading}{suite} · {setting}\n\n{render(report.wide(suite, setting))}\n")
    chunks.append("95 % intervals: Wilson for proportions, bootstrap for means.\n")
    return "\n".join(chunks)


def _plots(report: Report, suite: str, setting: str) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in report.metrics if (m.suite, m.setting) == (suite, setting)]
    labels = [r.label for r in report.runs if r.suite == suite and r.setting == setting]
    plots = []
    chain = sorted({m.metric for m in rows if m.metric.startswith("success@")}, key=lambda s: int(s.split("@")[1]))
    if chain:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label in labels:
            est = [next(m.estimate for m in rows if m.run == label and m.metric == k) for k in chain]
            ks = [int(k.split("@")[1]) for k in chain]
            ax.errorbar(ks, [e.value for e in est], yerr=_yerr(est), marker="o", capsize=3, label=label)
        ax.set(xlabel="tasks completed in a row", ylabel="success rate", ylim=(0, 1.02), xticks=[int(k.split("@")[1]) for k in chain])
        ax.legend(fontsize=8)
        plots.append(("Chain success (95 % Wilson intervals)", _png(fig)))
    tasks = sorted({m.task for m in rows if m.task != SETTING_LEVEL_TASK})
    if tasks:
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(tasks) * max(1, len(labels))), 4))
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            est = {m.task: m.estimate for m in rows if m.run == label and m.task != SETTING_LEVEL_TASK}
            xs = [t + i * width for t, name in enumerate(tasks) if name in est]
            vals = [est[name] for name in tasks if name in est]
            ax.bar(xs, [e.value for e in vals], width, yerr=_yerr(vals), capsize=2, label=label)
        ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=75, ha="right", fontsize=7)
        ax.set(ylabel="success rate", ylim=(0, 1.05))
        ax.legend(fontsize=8)
        fig.tight_layout()
        plots.append(("Per-task success (95 % Wilson intervals)", _png(fig)))
    return plots


def _yerr(estimates: list[Any]) -> list[list[float]]:
    return [[max(0.0, e.value - e.low) for e in estimates], [max(0.0, e.high - e.value) for e in estimates]]


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _html_table(header: list[Any], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _emit(text: str, out: Path | None) -> str:
    if out is not None:
        Path(out).write_text(text)
    return text


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
