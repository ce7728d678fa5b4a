"""Loading plugins and collecting what they register.

Built-ins are ordinary plugins (``DEFAULT_PLUGINS``); third-party ones come from the ``vlaeval``
entry-point group.  ``VLAEVAL_LOAD_PLUGINS`` (comma list of distribution or entry-point names;
empty string = none) restricts which third-party plugins load, as ``LLM_LOAD_PLUGINS`` does for
``llm``; ``VLAEVAL_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from vlaeval.errors import VlaevalError
from vlaeval.plugins import hookspecs
from vlaeval.plugins.registry import Entry, Registry

#: Built-in plugin modules, registered like any third-party plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "vlaeval.agents.plugin",
    "vlaeval.envs.plugin",
    "vlaeval.results.plugin",
    "vlaeval.training.plugin",
)

ENTRY_POINT_GROUP = "vlaeval"
KINDS = ("agent", "suite", "metric", "reporter", "trainer")


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from (for ``vlaeval plugins``)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False


@dataclass
class Registries:
    """Everything the loaded plugins registered, one :class:`Registry` per kind."""

    agent: Registry = field(default_factory=lambda: Registry("agent"))
    suite: Registry = field(default_factory=lambda: Registry("suite"))
    metric: Registry = field(default_factory=lambda: Registry("metric"))
    reporter: Registry = field(default_factory=lambda: Registry("reporter"))
    trainer: Registry = field(default_factory=lambda: Registry("trainer"))

    def of(self, kind: str) -> Registry:
        return getattr(self, kind)


_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
_cache: tuple[frozenset[int], Registries] | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading built-in and installed plugins on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("vlaeval")
        pm.add_hookspecs(hookspecs)
        for module_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
            _infos[module_name] = PluginInfo(module_name, "vlaeval", _own_version(), builtin=True)
        _load_entry_points(pm)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise VlaevalError(f"plugin {exc.plugin!r} implements a hook vlaeval does not define: {exc}") from exc
        if os.environ.get("VLAEVAL_TRACE_PLUGINS") == "1":
            pm.trace.root.setwriter(sys.stderr.write)
            pm.enable_tracing()
        _pm = pm
    return _pm


def reset_plugins() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in the same process)."""
    global _pm, _cache
    _pm, _cache = None, None
    _infos.clear()


def plugin_info(name: str) -> PluginInfo:
    """Origin of a loaded plugin (distribution and version, or built-in)."""
    plugin_manager()
    return _infos.get(name, PluginInfo(name))


def registries() -> Registries:
    """Collect registrations from every loaded plugin (cached until the plugin set changes)."""
    global _cache
    pm = plugin_manager()
    key = frozenset(id(p) for p in pm.get_plugins())
    if _cache is not None and _cache[0] == key:
        return _cache[1]
    regs = Registries()
    _collect(pm, "vlaeval_register_agents", lambda plugin: _named_register(regs.agent, "agent", plugin))
    _collect(pm, "vlaeval_register_suites", lambda plugin: _spec_register(regs.suite, "suite", plugin))
    _collect(pm, "vlaeval_register_metrics", lambda plugin: _spec_register(regs.metric, "metric", plugin))
    _collect(pm, "vlaeval_register_reporters", lambda plugin: _named_register(regs.reporter, "reporter", plugin))
    _collect(pm, "vlaeval_register_trainers", lambda plugin: _named_register(regs.trainer, "trainer", plugin))
    _cache = (key, regs)
    return regs


def _collect(pm: pluggy.PluginManager, hook_name: str, make_register: Callable[[str], Callable[..., None]]) -> None:
    """Call a registration hook once per implementation, handing each a ``register`` that knows
    which plugin is calling: that is how listings and duplicate errors can name the origin."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order
        kwargs = {"register": make_register(impl.plugin_name)}
        impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})


def _named_register(registry: Registry, kind: str, plugin: str) -> Callable[..., None]:
    def register(name: str, target: str, *, description: str = "", aliases: tuple[str, ...] = ()) -> None:
        if not isinstance(target, str):
            raise VlaevalError(f"plugin {plugin!r} registered {kind} {name!r} with a non-string target; use 'module:attr'")
        registry.add(Entry(kind, name, target, plugin, description, tuple(aliases)))

    return register


def _spec_register(registry: Registry, kind: str, plugin: str) -> Callable[[Any], None]:
    def register(spec: Any, *, aliases: tuple[str, ...] = ()) -> None:
        registry.add(Entry(kind, spec.name, spec.target, plugin, spec.description, tuple(aliases), spec))

    return register


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed_env = os.environ.get("VLAEVAL_LOAD_PLUGINS")
    allowed = None if allowed_env is None else {n.strip() for n in allowed_env.split(",") if n.strip()}
    seen: set[str] = set()
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            dist_name = dist.metadata["Name"]
            if allowed is not None and dist_name not in allowed and ep.name not in allowed:
                continue
            if pm.has_plugin(ep.name):
                continue
            seen.update({dist_name, ep.name})
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the CLI down
                warnings.warn(
                    f"vlaeval plugin {ep.name!r} from {dist_name} {dist.version} failed to load ({exc}); "
                    f"it is skipped. Reinstall or uninstall it, or exclude it with VLAEVAL_LOAD_PLUGINS.",
                    stacklevel=2,
                )
                continue
            pm.register(plugin, name=ep.name)
            _infos[ep.name] = PluginInfo(ep.name, dist_name, dist.version)
    for missing in sorted((allowed or set()) - seen):
        warnings.warn(f"VLAEVAL_LOAD_PLUGINS names {missing!r}, but no installed vlaeval plugin has that name", stacklevel=2)


def _own_version() -> str:
    from vlaeval import __version__

    return __version__
