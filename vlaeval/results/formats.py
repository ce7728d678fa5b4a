"""Built-in report formats (registered as reporters).

Each reporter is ``fn(report, out) -> str``: it renders the report, writes it to ``out`` when a
path is given, and returns the text (the CLI prints it when there is no ``out``).  The HTML page,
which has plots and provenance to assemble, lives in :mod:`vlaeval.results.html`.  Text formats
end with the smallest drop each run could detect (:func:`vlaeval.results.plan.detectable`), JSON has it under
``detectable``: a pass means little from a run too small to see the drop that matters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vlaeval.durable import write_text
from vlaeval.results.plan import detectable, detectable_lines
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
    return _emit(json.dumps(_finite({**report.to_dict(), "detectable": detectable(report)}), indent=2, allow_nan=False) + "\n", out)


def _sections(report: Report, render: Any, heading: str = "", quote: str = "") -> str:
    """The wide table of each suite and setting, after the report's notes (first, so they are read)."""
    chunks = [f"{quote}note: {text}\n" for text in report.notes]
    for suite, setting in report.groups():
        chunks.append(f"{heading}{suite} · {setting}\n\n{render(report.wide(suite, setting))}\n")
    chunks.append("95 % intervals: Wilson for proportions, bootstrap for means.\n")
    chunks.append("".join(f"{quote}detectable: {line}\n" for line in detectable_lines(report)))
    return "\n".join(chunks)


def _emit(text: str, out: Path | None) -> str:
    if out is not None:
        write_text(out, text)
    return text


def _finite(obj: Any) -> Any:
    """NaN and infinities as ``null``: ``json.dumps`` would write the bare tokens ``NaN``/``Infinity``,
    which are not JSON (its ``default`` hook is never called for floats)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
