"""Lazy registries of ``"module:attr"`` targets (lm-evaluation-harness style).

Entries remember which plugin registered them, so listings say where a name comes from and
duplicate registrations name both plugins.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from vlaeval.errors import DuplicateNameError, UnknownNameError, VlaevalError


@dataclass(frozen=True)
class Entry:
    """One registered thing.

    Attributes:
        kind: ``agent``, ``suite``, ``metric``, ``reporter`` or ``trainer``.
        name: the name users type.
        target: ``"module:attr"`` of the implementation, imported by :meth:`load`.
        plugin: name of the plugin that registered it.
        description: one line for listings.
        aliases: other names that resolve to this entry.
        spec: the registered spec object for data-first kinds (suites, metrics).
    """

    kind: str
    name: str
    target: str
    plugin: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    spec: Any = None

    def load(self) -> Any:
        """Import and return the target."""
        return import_target(self.target, what=f"{self.kind} {self.name!r} (plugin {self.plugin})")


@dataclass
class Registry:
    """Name -> :class:`Entry` for one kind, with aliases and did-you-mean errors."""

    kind: str
    _entries: dict[str, Entry] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        for key in (entry.name, *entry.aliases):
            clash = self._entries.get(key) or self._entries.get(self._aliases.get(key, ""))
            if clash is not None:
                raise DuplicateNameError(
                    f"{self.kind} {key!r} is registered twice: by plugin {clash.plugin!r} ({clash.target}) "
                    f"and by plugin {entry.plugin!r} ({entry.target}); uninstall one of them or restrict "
                    f"third-party plugins with VLAEVAL_LOAD_PLUGINS"
                )
        self._entries[entry.name] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.name

    def get(self, name: str) -> Entry:
        entry = self._entries.get(name) or self._entries.get(self._aliases.get(name, ""))
        if entry is None:
            raise unknown_name_error(self.kind, name, list(self._entries) + list(self._aliases))
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)


def unknown_name_error(kind: str, name: str, choices: Iterable[str], where: str = "") -> UnknownNameError:
    """An error for an unknown name that suggests the closest known ones."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    scope = f" in {where}" if where else ""
    listing = ", ".join(choices) if choices else "none registered"
    return UnknownNameError(f"unknown {kind} {name!r}{scope}.{hint} Known: {listing}.")


def import_target(target: str, *, what: str = "") -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute, with a clear error."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise VlaevalError(f"invalid target {target!r}{' for ' + what if what else ''}: expected 'module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise VlaevalError(
            f"cannot import {module_name!r}{' for ' + what if what else ''}: {exc}. "
            f"Install the package that provides it (for built-ins, the matching extra: pip install 'vlaeval[agents,onnx,remote,simpler]')"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise VlaevalError(f"{module_name!r} has no attribute {attr_path!r}{' for ' + what if what else ''}") from None
    return obj
