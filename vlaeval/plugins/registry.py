"""Lazy registries of ``"module:attr"`` targets (lm-evaluation-harness style).

Entries remember which plugin registered them, so listings say where a name comes from and
duplicate registrations name both plugins.  A name two plugins claim is not an error until it is
used: one package reusing another's name must not break commands that never touch that name.
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
    """Name -> :class:`Entry` for one kind, with aliases, clashes and did-you-mean errors.

    Every key (name or alias) maps to the entries claiming it; a key claimed twice is a clash:
    listings show both claimants and only looking that key up fails.
    """

    kind: str
    _entries: list[Entry] = field(default_factory=list)
    _claims: dict[str, list[Entry]] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        self._entries.append(entry)
        for key in dict.fromkeys((entry.name, *entry.aliases)):
            self._claims.setdefault(key, []).append(entry)

    def get(self, name: str) -> Entry:
        claims = self._claims.get(name)
        if claims is None:
            raise unknown_name_error(self.kind, name, list(self._claims))
        if len(claims) > 1:
            raise self._clash_error(name, claims)
        return claims[0]

    def clash(self, entry: Entry) -> DuplicateNameError | None:
        """The error that looking up one of ``entry``'s names raises, or None when no other entry claims them."""
        for key in (entry.name, *entry.aliases):
            if len(self._claims[key]) > 1:
                return self._clash_error(key, self._claims[key])
        return None

    def listing(self) -> list[Entry]:
        """Every registered entry by name, clashing ones included (each claimant once)."""
        return sorted(self._entries, key=lambda e: e.name)

    def __contains__(self, name: object) -> bool:
        return name in self._claims

    def __iter__(self) -> Iterator[Entry]:
        """Every entry, for callers that use them all (reports compute every metric): a clash among
        them raises its error, as using the clashing name alone would."""
        for entry in self.listing():
            error = self.clash(entry)
            if error is not None:
                raise error
            yield entry

    def __len__(self) -> int:
        return len(self._entries)

    def _clash_error(self, key: str, claims: list[Entry]) -> DuplicateNameError:
        plugins = " and ".join(f"by plugin {e.plugin!r} ({e.target})" for e in claims)
        times = "twice" if len(claims) == 2 else f"{len(claims)} times"
        return DuplicateNameError(
            f"{self.kind} {key!r} is registered {times}: {plugins}; uninstall one of them or restrict "
            f"third-party plugins with VLAEVAL_LOAD_PLUGINS"
        )


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
