"""Plugin loading: built-ins, the installed third-party toy plugin, filters, duplicates, URIs."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vlaeval
from vlaeval.errors import DuplicateNameError, UnknownNameError, VlaevalError
from vlaeval.plugins import hookspecs
from vlaeval.plugins.manager import DEFAULT_PLUGINS, plugin_info, plugin_manager, registries, reset_plugins

README = Path(__file__).resolve().parents[2] / "README.md"


def test_builtin_plugins_register_like_any_plugin() -> None:
    pm = plugin_manager()
    for name in DEFAULT_PLUGINS:
        assert pm.has_plugin(name)
        assert plugin_info(name).builtin
    regs = registries()
    assert regs.agent.get("random").plugin == "vlaeval.agents.plugin"
    assert regs.suite.get("calvin").spec.protocol.episodes == 1000
    assert {"table", "markdown", "csv", "json", "html"} <= {e.name for e in regs.reporter}
    assert {"success_rate", "success@k", "avg_len", "task_success"} <= {e.name for e in regs.metric}


def test_installed_third_party_plugin_is_loaded_from_its_entry_point() -> None:
    info = plugin_info("toy")
    assert (info.distribution, info.version, info.builtin) == ("vlaeval-toy", "0.3.0", False)
    entry = registries().agent.get("toy-solver")
    assert entry.plugin == "toy" and entry.target == "vlaeval_toy.agents:Solver"
    assert registries().suite.get("toy-chain").spec.protocol.chain_length == 3


@pytest.mark.parametrize("value, loaded", [("", False), ("vlaeval-toy", True), ("toy", True), ("some-other-plugin", False)])
def test_vlaeval_load_plugins_restricts_third_party_plugins(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                            value: str, loaded: bool) -> None:
    monkeypatch.setenv("VLAEVAL_LOAD_PLUGINS", value)
    reset_plugins()
    with caplog.at_level(logging.WARNING, logger="vlaeval"):
        pm = plugin_manager()
    assert [r.getMessage() for r in caplog.records] == (
        ["warning: VLAEVAL_LOAD_PLUGINS names 'some-other-plugin', but no installed vlaeval plugin has that name"]
        if value == "some-other-plugin" else []
    )
    assert pm.has_plugin("toy") is loaded
    assert ("toy-solver" in registries().agent) is loaded
    assert "random" in registries().agent  # built-ins always load


def test_duplicate_names_are_an_error_naming_both_plugins_when_used() -> None:
    class Impostor:
        @vlaeval.hookimpl
        def vlaeval_register_agents(self, register):
            register("toy-solver", "somewhere:Else")
            register("toy-solver-2", "somewhere:Other", aliases=("toy-batch-solver",))

    plugin_manager().register(Impostor(), name="impostor")
    agents = registries().agent
    for name in ("toy-solver", "toy-batch-solver"):
        with pytest.raises(DuplicateNameError, match=rf"agent '{name}' is registered twice: by plugin 'toy'.*by plugin 'impostor'"):
            agents.get(name)
    assert agents.get("toy-crash").plugin == "toy-testing"  # names nobody else claims still work
    assert [e.plugin for e in agents.listing() if e.name == "toy-solver"] == ["toy", "impostor"]
    with pytest.raises(DuplicateNameError):  # using every entry uses the clashing ones too
        list(agents)


def test_registration_hooks_are_called_through_pluggy(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Wrappers wrap registration calls, tryfirst/trylast order them, and tracing shows them, as
    for every other hook; each plugin's call is still its own, so its registrations stay its own."""
    calls: list[str] = []
    wrapped: list[object] = []

    class Early:
        @vlaeval.hookimpl(tryfirst=True)
        def vlaeval_register_agents(self, register):
            calls.append("early")
            register("early-agent", "somewhere:Early")

    class Late:
        @vlaeval.hookimpl
        def vlaeval_register_agents(self, register):
            calls.append("late")
            register("late-agent", "somewhere:Late")

    class Wrapper:
        @vlaeval.hookimpl(wrapper=True)
        def vlaeval_register_agents(self, register):
            wrapped.append(register)
            return (yield)

    monkeypatch.setenv("VLAEVAL_TRACE_PLUGINS", "1")
    reset_plugins()
    pm = plugin_manager()
    for name, plugin in (("early", Early()), ("late", Late()), ("wrapper", Wrapper())):
        pm.register(plugin, name=name)
    calls.clear()
    agents = registries().agent
    assert calls == ["early", "late"]  # pluggy's order: tryfirst, then the last registered
    implementers = [i for i in pm.hook.vlaeval_register_agents.get_hookimpls() if not i.wrapper]
    assert len(implementers) > 2 and len(wrapped) == len(set(map(id, wrapped))) == len(implementers)  # each plugin's own call, wrapped
    assert (agents.get("early-agent").plugin, agents.get("late-agent").plugin) == ("early", "late")
    assert "vlaeval_register_agents" in capsys.readouterr().err  # VLAEVAL_TRACE_PLUGINS=1 traces registration calls too


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown agent 'toy-solvr'\. Did you mean 'toy-solver'"):
        registries().agent.get("toy-solvr")
    with pytest.raises(UnknownNameError, match=r"unknown setting 'ABC-D' in suite 'calvin'\. Did you mean 'ABC->D'"):
        registries().suite.get("calvin").spec.setting("ABC-D")


def test_resolve_agent_hook_lets_plugins_claim_uris() -> None:
    from vlaeval.agents.resolve import make_agent
    from vlaeval_toy.agents import Solver

    agent = make_agent("toy://solver?skill=0.25")
    assert isinstance(agent, Solver) and agent.skill == 0.25
    # the built-in resolver takes import paths
    assert isinstance(make_agent("vlaeval_toy.agents:Solver", {"skill": 0.5}), Solver)
    with pytest.raises(VlaevalError, match="cannot import 'no_such_module'"):
        make_agent("no_such_module:Agent")
    with pytest.raises(UnknownNameError, match="unknown agent 'nothing-like-this'"):
        make_agent("nothing-like-this")
    with pytest.raises(VlaevalError, match="cannot create agent 'toy-solver' with options"):
        make_agent("toy-solver", {"no_such_option": 1})


def test_every_hook_is_prefixed_and_documented_in_the_readme() -> None:
    names = [n for n in dir(hookspecs) if n.startswith("vlaeval_")]
    assert names, "no hookspecs found"
    spec_names = {n for n in dir(hookspecs) if callable(getattr(hookspecs, n)) and hasattr(getattr(hookspecs, n), "vlaeval_spec")}
    assert spec_names == set(names), "every hookspec must be prefixed vlaeval_"
    section = README.read_text().split("## Plugin hooks", 1)
    assert len(section) == 2, "README needs a '## Plugin hooks' section"
    documented = set(re.findall(r"^#### `(vlaeval_\w+)", section[1], flags=re.M))
    assert sorted(set(names) - documented) == [], "undocumented hookspecs"
    assert sorted(documented - set(names)) == [], "README documents hooks that do not exist"


HEAVY = ("torch", "pybullet", "mani_skill", "tensorrt", "transformers", "onnxruntime", "pandas", "gymnasium")


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["suites"], ["agents"], ["plugins", "--json"]])
def test_listing_commands_import_no_simulator_or_model_stack(argv: list[str]) -> None:
    code = (
        "import sys\nfrom vlaeval.cli import main\ntry:\n    main(%r)\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('HEAVY=' + ','.join(m for m in %r if m in sys.modules))" % (argv, HEAVY)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "VLAEVAL_LOAD_PLUGINS": ""})
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_plugins_json_lists_name_version_and_hooks() -> None:
    out = subprocess.run([sys.executable, "-m", "vlaeval", "plugins", "--json"], capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["toy"]["version"] == "0.3.0" and rows["toy"]["distribution"] == "vlaeval-toy"
    assert rows["toy"]["hooks"] == sorted(n for n in dir(hookspecs) if n.startswith("vlaeval_"))  # the README's example of each
    assert rows["toy-testing"]["hooks"] == ["vlaeval_register_agents"]
    assert rows["vlaeval.results.plugin"]["builtin"] is True
