"""Loading plugins and collecting what they register.

Built-ins are ordinary plugins (``DEFAULT_PLUGINS``); third-party ones come from the ``vlaeval``
entry-point group.  ``VLAEVAL_LOAD_PLUGINS`` (comma list of distribution or entry-point names;
empty string = none) restricts which third-party plugins load, as ``LLM_LOAD_PLUGINS`` does for
``llm``; ``VLAEVAL_TRACE_PLUGINS=1`` prints every hook call to stderr.

One broken package must not take down commands that never needed it.  A plugin counts as loaded
only when it imports (``SystemExit`` included: only ``KeyboardInterrupt`` gets through), pluggy
accepts it, and each of its registration hooks returns; otherwise it is *skipped*: unregistered,
so none of its hooks runs, named with the error in one warning line, and listed as skipped by
``vlaeval plugins``.  Registration hooks run into a staging list per plugin that is committed
only when all of that plugin's hooks succeeded, so a hook that raised halfway leaves nothing
behind.  Two plugins claiming one name are not a load error: the :class:`Registry` records the
clash and only using that name fails.

Registration hooks are called like every other hook, through pluggy (``pm.hook.<name>(...)``),
so hook wrappers, ``tryfirst``/``trylast`` and ``VLAEVAL_TRACE_PLUGINS`` apply to them too; only
the call is made once per implementing plugin (a pluggy hook caller restricted to that plugin and
the wrappers), because one call for all of them would stop at the first plugin that raises and
could not tell whose registrations were whose.  A wrapper therefore wraps each plugin's call.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from vlaeval.errors import VlaevalError
from vlaeval.plugins import hookspecs
from vlaeval.plugins.registry import Entry, Registry, import_target

if TYPE_CHECKING:
    import click

#: Built-in plugin modules, registered like any third-party plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "vlaeval.agents.plugin",
    "vlaeval.envs.plugin",
    "vlaeval.results.plugin",
    "vlaeval.training.plugin",
)

ENTRY_POINT_GROUP = "vlaeval"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from, and why it was skipped if it was (for ``vlaeval plugins``)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    error: str | None = None

    def describe(self) -> str:
        """How messages name the plugin: users know the package they installed, not its entry point."""
        if self.distribution and not self.builtin:
            return f"plugin {self.distribution!r} (entry point {self.name!r})"
        return f"plugin {self.name!r}"


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
    """The process-wide plugin manager, loading built-in and installed plugins on first use.

    Registration hooks run here too, so a plugin that fails them is skipped before any command
    or observer hook can reach it.
    """
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("vlaeval")
        pm.add_hookspecs(hookspecs)
        for module_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
            _infos[module_name] = PluginInfo(module_name, "vlaeval", _own_version(), builtin=True)
        _load_entry_points(pm)
        if os.environ.get("VLAEVAL_TRACE_PLUGINS") == "1":
            pm.trace.root.setwriter(sys.stderr.write)
            pm.enable_tracing()
        _pm = pm
        registries()
    return _pm


def reset_plugins() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in the same process)."""
    global _pm, _cache
    _pm, _cache = None, None
    _infos.clear()


def plugin_info(name: str) -> PluginInfo:
    """Origin of a loaded or skipped plugin (distribution and version, or built-in)."""
    plugin_manager()
    return _infos.get(name, PluginInfo(name))


def skipped_plugins() -> list[PluginInfo]:
    """Plugins that failed to load, each with its error."""
    plugin_manager()
    return [info for info in _infos.values() if info.error is not None]


def registries() -> Registries:
    """Collect registrations from every loaded plugin (cached until the plugin set changes)."""
    global _cache
    pm = plugin_manager()
    if _cache is None or _cache[0] != _plugin_set(pm):
        regs = _collect(pm)
        _cache = (_plugin_set(pm), regs)  # after _collect, which may have skipped plugins
    return _cache[1]


def suite_spec(name: str) -> Any:
    """The registered suite's :class:`~vlaeval.envs.suite.SuiteSpec` (a did-you-mean error for an
    unknown name); nothing of the suite is imported.

    Typed ``Any`` here and in :func:`load_suite` because this layer sits below the suites' and
    must not import them: it finds them by name.
    """
    return registries().suite.get(name).spec


def load_suite(spec: Any) -> Any:
    """An instance of the suite implementation ``spec`` names (imports its simulator's modules)."""
    cls = import_target(spec.target, what=f"suite {spec.name!r}")
    return cls()


def add_plugin_commands(cli: click.Group) -> None:
    """Run ``vlaeval_register_commands`` for each plugin on a copy of ``cli`` and add what it added
    only when its hook returned: a plugin that fails halfway is skipped, not half-installed."""
    import click

    pm = plugin_manager()
    for plugin in _call_order(pm, "vlaeval_register_commands"):  # pluggy's order: the same plugin wins a name
        staging = click.Group(cli.name, commands=dict(cli.commands))
        error = _failure(lambda: _hook_of(pm, "vlaeval_register_commands", plugin)(cli=staging))
        if error is not None:
            _skip(pm, pm.get_name(plugin), f"vlaeval_register_commands raised {_one_line(error)}")
            continue
        for name, command in staging.commands.items():
            if cli.commands.get(name) is not command:
                cli.add_command(command, name)


def _plugin_set(pm: pluggy.PluginManager) -> frozenset[int]:
    return frozenset(id(p) for p in pm.get_plugins())


def _named_register(kind: str, plugin: str, staged: list[Entry]) -> Callable[..., None]:
    def register(name: str, target: str, *, description: str = "", aliases: tuple[str, ...] = ()) -> None:
        if not isinstance(target, str):
            raise VlaevalError(f"plugin {plugin!r} registered {kind} {name!r} with a non-string target; use 'module:attr'")
        staged.append(Entry(kind, name, target, plugin, description, tuple(aliases)))

    return register


def _spec_register(kind: str, plugin: str, staged: list[Entry]) -> Callable[..., None]:
    def register(spec: Any, *, aliases: tuple[str, ...] = ()) -> None:
        staged.append(Entry(kind, spec.name, spec.target, plugin, spec.description, tuple(aliases), spec))

    return register


_REGISTRATION_HOOKS: tuple[tuple[str, str, Callable[[str, str, list[Entry]], Callable[..., None]]], ...] = (
    ("vlaeval_register_agents", "agent", _named_register),
    ("vlaeval_register_suites", "suite", _spec_register),
    ("vlaeval_register_metrics", "metric", _spec_register),
    ("vlaeval_register_reporters", "reporter", _named_register),
    ("vlaeval_register_trainers", "trainer", _named_register),
)


def _collect(pm: pluggy.PluginManager) -> Registries:
    """Call each registration hook once per implementing plugin, in pluggy's call order.

    Each call gets a ``register`` that knows which plugin is calling: that is how listings and
    clash errors name the origin.  Entries are staged per plugin and committed only for plugins
    whose every hook returned, in the order the plugins were loaded (built-ins first), so a
    listing names the older of two claimants first whichever order pluggy called them in.
    """
    staged: dict[str, list[Entry]] = {pm.get_name(p): [] for p in _load_order(pm)}
    failed: dict[str, str] = {}
    for hook_name, kind, make_register in _REGISTRATION_HOOKS:
        for plugin in _call_order(pm, hook_name):
            name = pm.get_name(plugin)
            if name in failed:
                continue
            own: list[Entry] = []
            error = _failure(lambda: _hook_of(pm, hook_name, plugin)(register=make_register(kind, name, own)))
            if error is not None:
                failed[name] = f"{hook_name} raised {_one_line(error)}"
                continue
            staged[name].extend(own)
    for name, error in failed.items():
        _skip(pm, name, error)
    regs = Registries()
    for name, entries in staged.items():
        if name not in failed:
            for entry in entries:
                regs.of(entry.kind).add(entry)
    return regs


def _load_order(pm: pluggy.PluginManager) -> list[object]:
    """Registered plugins in the order they were loaded (``get_plugins`` is a set)."""
    return [plugin for name, plugin in pm.list_name_plugin() if plugin is not None]


def _implementers(pm: pluggy.PluginManager, hook_name: str) -> list[pluggy.HookImpl]:
    return [impl for impl in getattr(pm.hook, hook_name).get_hookimpls() if not (impl.hookwrapper or impl.wrapper)]


def _call_order(pm: pluggy.PluginManager, hook_name: str) -> list[object]:
    """The plugins implementing ``hook_name`` (wrappers aside), in the order pluggy calls them."""
    return [impl.plugin for impl in reversed(_implementers(pm, hook_name))]


def _hook_of(pm: pluggy.PluginManager, hook_name: str, plugin: object) -> Any:
    """``pm.hook.<hook_name>`` restricted to ``plugin``'s implementation and every wrapper."""
    others = [impl.plugin for impl in _implementers(pm, hook_name) if impl.plugin is not plugin]
    return pm.subset_hook_caller(hook_name, remove_plugins=others)


def _failure(plugin_code: Callable[[], Any]) -> BaseException | None:
    """Run plugin code and return what it raised instead of letting it end the command:
    ``SystemExit`` included, as a plugin must not decide that vlaeval exits; only Ctrl-C passes."""
    try:
        plugin_code()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return exc
    return None


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
            if ep.name in _infos:  # the same distribution found twice on sys.path
                continue
            seen.update({dist_name, ep.name})
            _infos[ep.name] = PluginInfo(ep.name, dist_name, dist.version)
            error = _failure(lambda: _register(pm, ep))
            if error is not None:
                _skip(pm, ep.name, _one_line(error))
    for missing in sorted((allowed or set()) - seen):
        _warn(f"VLAEVAL_LOAD_PLUGINS names {missing!r}, but no installed vlaeval plugin has that name")


def _register(pm: pluggy.PluginManager, ep: metadata.EntryPoint) -> None:
    plugin = ep.load()
    pm.register(plugin, name=ep.name)
    _check_hooks(pm, plugin)


def _check_hooks(pm: pluggy.PluginManager, plugin: object) -> None:
    """pluggy only notices hooks nobody specified in ``check_pending``, which fails for every
    plugin at once; checked here, a misspelt hook skips just the plugin that has it."""
    unknown = sorted(
        caller.name for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec() and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
    )
    if unknown:
        raise pluggy.PluginValidationError(plugin, f"{', '.join(unknown)} is not a vlaeval hook (misspelt?)")


def _skip(pm: pluggy.PluginManager, name: str, error: str) -> None:
    """Unregister a broken plugin, remember why for ``vlaeval plugins``, and say so once."""
    if pm.has_plugin(name):
        pm.unregister(name=name)
    info = dataclasses.replace(_infos.get(name, PluginInfo(name)), error=error)
    _infos[name] = info
    package = info.distribution if info.distribution and not info.builtin else "it"
    _warn(f"{info.describe()} failed to load and is skipped: {error} "
          f"(upgrade or uninstall {package}, or load only the plugins you need with VLAEVAL_LOAD_PLUGINS=name,...)")


def _warn(message: str) -> None:
    """One ``warning:`` line on stderr (through the ``vlaeval`` logger), from the main process only:
    worker processes load the same plugins as the driver, which has already said it."""
    if multiprocessing.parent_process() is None:
        logger.warning("warning: %s", message)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _own_version() -> str:
    from vlaeval.version import __version__

    return __version__
