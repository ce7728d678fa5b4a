"""Shared fixtures.

The plugins under ``tests/plugins`` are real third-party distributions that reach vlaeval only
through their ``vlaeval`` entry points.  Each is pip-installed at most once per session into its
own throwaway directory, never into the environment users run vlaeval from: a test-only agent
such as ``toy-crash`` must not show up in a user's ``vlaeval agents``.  The directory goes first
on ``sys.path`` and ``PYTHONPATH``, so spawned workers, Ray workers and ``vlaeval`` subprocesses
find the distribution (its ``.dist-info`` carries the entry point) exactly as the test process
does.  ``vlaeval-toy`` is visible to every test; the deliberately broken ones only to the tests
that ask for them through :func:`install_plugin`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

PLUGIN_SOURCES = Path(__file__).parent / "plugins"


class PluginSites:
    """Test plugin distributions installed under one temporary directory, one site each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sites: dict[str, Path] = {}

    def site(self, name: str) -> Path:
        """The directory holding ``tests/plugins/<name>`` installed (installed on first request)."""
        if name not in self._sites:
            source, site = self.root / "src" / name, self.root / "site" / name
            # pip builds in the source tree; a copy keeps build/ and *.egg-info out of the checkout
            shutil.copytree(PLUGIN_SOURCES / name, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                 "--no-build-isolation", "--target", str(site), str(source)],
                capture_output=True, text=True,
            )
            if done.returncode:
                raise RuntimeError(f"cannot install the test plugin {name}: {done.stderr.strip()}")
            self._sites[name] = site
        return self._sites[name]


_plugin_sites: PluginSites | None = None


def _prepend_to_pythonpath(path: Path) -> str:
    return os.pathsep.join([str(path), *filter(None, [os.environ.get("PYTHONPATH")])])


def pytest_configure(config: pytest.Config) -> None:
    global _plugin_sites
    _plugin_sites = PluginSites(Path(tempfile.mkdtemp(prefix="vlaeval-test-plugins-")))
    toy = _plugin_sites.site("vlaeval-toy")
    sys.path.insert(0, str(toy))
    os.environ["PYTHONPATH"] = _prepend_to_pythonpath(toy)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _plugin_sites is not None:
        shutil.rmtree(_plugin_sites.root, ignore_errors=True)


_deselected: dict[str, int] = {}


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        markers = "/".join(sorted({m.name for m in item.iter_markers()} & {"slow", "gpu"})) or "unmarked"
        _deselected[markers] = _deselected.get(markers, 0) + 1


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which tests the selection left out and how to run them (pytest only counts them)."""
    if not _deselected:
        return
    counts = ", ".join(f"{n} marked {m}" if m != "unmarked" else f"{n} by -k" for m, n in sorted(_deselected.items()))
    how = [f"`bash scripts/test.sh -m {m}`" + (" (minutes each)" if m == "slow" else " (needs an NVIDIA GPU)")
           for m in ("slow", "gpu") if any(m in key.split("/") for key in _deselected)]
    terminalreporter.write_line(f"deselected: {counts}" + (f"; run them with {' or '.join(how)}" if how else ""))


@pytest.fixture
def install_plugin(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``install_plugin("vlaeval-broken")``: that distribution is installed for this test only,
    in-process and for the processes it starts; plugins are reloaded."""
    from vlaeval.plugins.manager import reset_plugins

    def install(name: str) -> None:
        assert _plugin_sites is not None
        site = _plugin_sites.site(name)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setenv("PYTHONPATH", _prepend_to_pythonpath(site))
        reset_plugins()

    return install


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


def run_cli_process(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``vlaeval`` in a fresh process (as a user would), with the current environment plus ``env``."""
    return subprocess.run([sys.executable, "-m", "vlaeval", *argv], capture_output=True, text=True, env={**os.environ, **(env or {})})
