"""Built-in report formats (registered as reporters).

Each reporter is ``fn(report, out) -> str``: it renders the report, writes it to ``out`` when a
path is given, and returns the text (the CLI prints it when there is no ``out``).  The HTML page,
which has plots and provenance to assemble, lives in :mod:`vlaeval.results.html`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vlaeval.durable import write_text
from vlaeval.results.report import Report


def table(report: Report, out: Path | None = None) -> str:
    """Plain-text tables for the terminal."""
    return _emit(_sections(report, lambda wide: wide.to_string()), out)


def markdown(report: Report, out: Path | None = None) -> str:
    return _emit(_sections(report, lambda wide: wide.reset_index().to_markdown(index=False), heading="## ", quote="> "), out)


def csv(report: Report, out: Path | None = None) -> str:
    """Long format: one line per run, suite, setting, task and metric."""
    return _emit(report.to_frame().to_csv(index=False), out)


def json_format(report: Report, out: Path | None = None) -> str:
    """The aggregate metrics with their intervals, machine-readable."""
    return _emit(json.dumps(report.to_dict(), indent=2, default=_nan_to_none) + "\n", out)


def _sections(report: Report, render: Any, heading: str = "", quote: str = "") -> str:
    """The wide table of each suite and setting, after the report's notes (first, so they are read)."""
    chunks = [f"{quote}note: {text}\n" for text in report.notes]
    for suite, setting in report.groups():
        chunks.append(f"{heading}{suite} · {setting}\n\n{render(report.wide(suite, setting))}\n")
    chunks.append("95 % intervals: Wilson for proportions, bootstrap for means.\n")
    return "\n".join(chunks)


def _emit(text: str, out: Path | None) -> str:
    if out is not None:
        write_text(out, text)
    return text


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
