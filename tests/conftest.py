"""Shared fixtures.

The toy plugin under ``tests/plugins/vlaeval-toy`` is a real third-party distribution: it is
pip-installed into the test environment (``scripts/test.sh`` does it; this file does it too when
missing) and reaches vlaeval only through its ``vlaeval`` entry point.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import pytest

TOY_PLUGIN_DIR = Path(__file__).parent / "plugins" / "vlaeval-toy"


def _ensure_toy_plugin_installed() -> None:
    try:
        importlib.metadata.distribution("vlaeval-toy")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(TOY_PLUGIN_DIR)],
            check=True,
        )
        importlib.invalidate_caches()


_ensure_toy_plugin_installed()


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterable[None]:
    """Each test sees freshly loaded plugins and no user plugin filter."""
    from vlaeval.plugins.manager import reset_plugins

    monkeypatch.delenv("VLAEVAL_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("VLAEVAL_TRACE_PLUGINS", raising=False)
    reset_plugins()
    yield
    reset_plugins()


def write_run(run_dir: Path, rows_by_episode: list[list[dict[str, Any]]], *, suite: str = "toy-chain", version: str = "1",
              setting: str = "default", agent: str = "agent-x", chain_length: int = 3) -> Path:
    """A run directory built by hand from per-episode outcomes, for report and gate tests.

    Each row needs ``task`` and ``success``; other columns get defaults.
    """
    from vlaeval.results.store import EpisodeRecord, ResultStore, write_manifest

    store = ResultStore(run_dir)
    for i, rows in enumerate(rows_by_episode):
        full = tuple(
            {"run_id": run_dir.name, "agent": agent, "suite": suite, "suite_version": version, "setting": setting,
             "episode": i, "position": p + 1, "seed": i, "steps": 10, "wall_time": 0.1, "error": None,
             "instruction": "do it", **r}
            for p, r in enumerate(rows)
        )
        store.append(EpisodeRecord(i, i, full))
    write_manifest(run_dir, {"run_id": run_dir.name, "suite": {"name": suite, "version": version,
                                                                "protocol": {"chain_length": chain_length}}})
    return run_dir


def chain(*outcomes: bool, tasks: tuple[str, ...] = ("reach_left", "reach_right", "reach_center")) -> list[dict[str, Any]]:
    """Rows of one chain that stops at its first failure, as the runner writes them."""
    rows = []
    for task, ok in zip(tasks, outcomes):
        rows.append({"task": task, "success": ok})
        if not ok:
            break
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_cli(*argv: str) -> int:
    """Run the ``vlaeval`` entry point in-process and return its exit status."""
    from vlaeval.cli import main

    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
