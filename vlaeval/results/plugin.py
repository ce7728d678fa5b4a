"""Built-in plugin: the standard metrics and report formats."""

from __future__ import annotations

from typing import Callable

from vlaeval.plugins.hookspecs import hookimpl
from vlaeval.results.metrics import BUILTIN_METRICS


@hookimpl
def vlaeval_register_metrics(register: Callable[..., None]) -> None:
    for spec in BUILTIN_METRICS:
        register(spec)


@hookimpl
def vlaeval_register_reporters(register: Callable[..., None]) -> None:
    register("table", "vlaeval.results.formats:table", description="aligned text tables for the terminal")
    register("markdown", "vlaeval.results.formats:markdown", description="markdown tables")
    register("csv", "vlaeval.results.formats:csv", description="long-format CSV, one line per metric")
    register("json", "vlaeval.results.formats:json_format", description="aggregate metrics with 95% intervals")
    register("html", "vlaeval.results.html:html_page", description="self-contained HTML page with plots")
