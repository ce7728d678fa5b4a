"""Broken and clashing third-party plugins: skipped or confined, never fatal to unrelated commands.

The distributions used here (``tests/plugins/vlaeval-broken``, one broken plugin per entry point,
and ``tests/plugins/vlaeval-clash``) are installed for these tests only (``install_plugin``).
Each test reproduces a way one bad package used to take every ``vlaeval`` command down.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import run_cli, run_cli_process
from vlaeval.errors import UnknownNameError
from vlaeval.plugins.manager import plugin_info, plugin_manager, registries

#: entry point of vlaeval-broken -> the reason it is skipped
BROKEN = {
    "import-error": "RuntimeError: boom",
    "exit-at-import": "SystemExit: vlaeval_broken.exit_at_import is not meant to be imported",
    "half-register": "vlaeval_register_metrics raised RuntimeError: raised halfway through registering",
    "bad-command": "vlaeval_register_commands raised RuntimeError: no commands today",
    "typo-hook": "PluginValidationError: vlaeval_register_agent is not a vlaeval hook (misspelt?)",
}


def _warning(entry_point: str) -> str:
    return (f"warning: plugin 'vlaeval-broken' (entry point '{entry_point}') failed to load and is skipped: {BROKEN[entry_point]} "
            f"(upgrade or uninstall vlaeval-broken, or load only the plugins you need with VLAEVAL_LOAD_PLUGINS=name,...)")


@pytest.mark.parametrize("entry_point", BROKEN)
def test_a_broken_plugin_is_skipped_with_one_warning_line(entry_point: str, install_plugin: Callable[[str], None]) -> None:
    install_plugin("vlaeval-broken")
    env = {"VLAEVAL_LOAD_PLUGINS": f"vlaeval-toy,{entry_point}"}
    suites = run_cli_process("suites", env=env)
    assert suites.returncode == 0, suites.stderr
    assert suites.stderr.splitlines() == [_warning(entry_point)]
    assert "toy-chain" in suites.stdout and "calvin" in suites.stdout

    listed = run_cli_process("plugins", "--json", env=env)
    assert listed.returncode == 0 and listed.stderr.splitlines() == [_warning(entry_point)]
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows[entry_point] == {"name": entry_point, "distribution": "vlaeval-broken", "version": "0.1.0", "builtin": False,
                                 "hooks": [], "status": "skipped", "error": BROKEN[entry_point]}
    assert rows["toy"]["status"] == "loaded" and rows["toy"]["error"] is None


def test_a_plugin_failing_halfway_through_registering_leaves_nothing_behind(
        install_plugin: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from vlaeval.agents.resolve import make_agent

    install_plugin("vlaeval-broken")
    monkeypatch.setenv("VLAEVAL_LOAD_PLUGINS", "vlaeval-toy,half-register")
    with caplog.at_level(logging.WARNING, logger="vlaeval"):
        regs = registries()
        assert "half-agent" not in regs.agent  # its first hook succeeded: still dropped
        assert "half_metric" not in regs.metric  # registered just before its hook raised
        assert "toy-solver" in regs.agent
        assert not plugin_manager().has_plugin("half-register")  # its other hooks are not called either
        with pytest.raises(UnknownNameError, match="unknown agent 'half://x'"):
            make_agent("half://x")
        registries()
        plugin_manager()
    assert [r.getMessage() for r in caplog.records] == [_warning("half-register")]  # once, not per registry access
    assert plugin_info("half-register").error == BROKEN["half-register"]


def test_a_failing_command_hook_adds_no_command_and_drops_the_plugin(install_plugin: Callable[[str], None]) -> None:
    install_plugin("vlaeval-broken")
    env = {"VLAEVAL_LOAD_PLUGINS": "vlaeval-toy,bad-command"}
    agents = run_cli_process("agents", "--json", env=env)
    assert agents.returncode == 0 and agents.stderr.splitlines() == [_warning("bad-command")]
    names = {a["name"] for a in json.loads(agents.stdout)}
    assert "toy-solver" in names and "bad-command-agent" not in names
    command = run_cli_process("bad-command", env=env)
    assert command.returncode == 2 and command.stderr.splitlines()[-1].startswith("error: No such command 'bad-command'")


def test_with_every_broken_plugin_installed_a_run_works_and_each_warns_once(install_plugin: Callable[[str], None], tmp_path: Path) -> None:
    install_plugin("vlaeval-broken")
    run = run_cli_process("run", "--agent", "toy-solver", "--suite", "toy", "-n", "2", "--out", str(tmp_path), "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "episodes=2, success_rate=1.000" in run.stdout
    assert "Traceback" not in run.stderr
    # the driver warns; the worker processes it starts load the same plugins silently
    assert sorted(line for line in run.stderr.splitlines() if line.startswith("warning:")) == sorted(map(_warning, BROKEN))

    listed = run_cli_process("plugins")
    assert listed.returncode == 0
    assert "import-error  (vlaeval-broken 0.1.0)\n    skipped: RuntimeError: boom\n" in listed.stdout


def test_a_name_clash_fails_only_the_commands_that_use_the_name(install_plugin: Callable[[str], None], capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    install_plugin("vlaeval-clash")
    agent_clash = ("agent 'random' is registered twice: by plugin 'vlaeval.agents.plugin' (vlaeval.agents.random:RandomAgent) "
                   "and by plugin 'clash' (vlaeval_clash.agents:Random); uninstall one of them or restrict third-party plugins "
                   "with VLAEVAL_LOAD_PLUGINS")
    claimants = ("by plugin 'toy' (vlaeval_toy.suite:ToyChainSuite)", "by plugin 'clash' (vlaeval_clash.suite:Chain)")
    suite_clash = {f"suite 'toy-chain' is registered twice: {a} and {b}; uninstall one of them or restrict third-party plugins "
                   f"with VLAEVAL_LOAD_PLUGINS" for a, b in (claimants, claimants[::-1])}  # in discovery (sys.path) order

    # listings work and show the clash
    assert run_cli("agents", "--json") == 0
    randoms = [a for a in json.loads(capsys.readouterr().out) if a["name"] == "random"]
    assert [(a["plugin"], a["clash"]) for a in randoms] == [("vlaeval.agents.plugin", agent_clash), ("clash", agent_clash)]
    assert run_cli("suites") == 0
    out = capsys.readouterr().out
    assert out.count("\ntoy-chain ") == 2
    assert [line.strip().removeprefix("clash: ") in suite_clash for line in out.splitlines() if "clash: " in line] == [True, True]

    # commands that do not use a clashing name work, in this process and in the workers
    assert run_cli("episodes", "--suite", "toy", "-n", "1") == 0
    assert run_cli("run", "--agent", "toy-solver", "--suite", "toy", "-n", "1", "--out", str(tmp_path), "--no-progress") == 0
    capsys.readouterr()

    # commands that use one fail with one line naming both plugins
    assert run_cli("run", "--agent", "random", "--suite", "toy", "-n", "1", "--out", str(tmp_path)) == 2
    assert capsys.readouterr().err == f"error: {agent_clash}\n"
    assert run_cli("episodes", "--suite", "toy-chain") == 2
    assert capsys.readouterr().err.removeprefix("error: ").rstrip("\n") in suite_clash
