"""vlaeval's structure: layers only import downwards, and no modules import each other in a circle.

Read from the source with ``ast`` (nothing is imported), so the test is cheap and sees imports on
every path: at module level, inside functions (lazy imports) and under ``TYPE_CHECKING``.
Structure decays one convenient import at a time; these tests make each such import a decision
someone has to write down.  Known violations are listed below with the reason they still exist
and behave like ``xfail(strict=True)``: a new violation fails, and so does a listed one that is
gone (remove it from the list).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import vlaeval

PACKAGE = "vlaeval"
ROOT = Path(vlaeval.__file__).parent

#: Layers, bottom to top: a module may import modules of its own layer and of the layers below.
#: The order is the one the code already follows (issue 17 "layers that only look down"):
#: - shared leaves: errors, the action/observation conventions, atomic file writes, KEY=VALUE options;
#: - the plugin machinery that finds suites, agents, metrics, reporters and trainers by name (it
#:   imports them by ``"module:attr"`` strings at run time, never with an import statement);
#: - results: the row store, statistics, metrics and reports, which the runner writes and scores
#:   through and suites' own reports compute with; they reach suites only through the registry;
#: - suites (envs) with the environment pools, which the runner and suites both use;
#: - agents, which may use a suite's modules (the scripted experts plan with its geometry and
#:   predicates) but never the runner;
#: - evaluators (the runner and its executors), which combine suites, agents and results;
#: - training, which evaluates and records through the runner;
#: - the surfaces: the top-level API (``vlaeval/__init__``), the CLI and ``vlaeval doctor``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vlaeval.errors", "vlaeval.conventions", "vlaeval.durable", "vlaeval.options", "vlaeval.version"),
    ("vlaeval.plugins",),
    ("vlaeval.results",),
    ("vlaeval.envs",),
    ("vlaeval.agents",),
    ("vlaeval.evaluators",),
    ("vlaeval.training",),
    ("vlaeval", "vlaeval.__main__", "vlaeval.cli", "vlaeval.doctor"),
)

#: Packages not scanned (their own imports are not checked; imports of them are).
UNSCANNED: tuple[str, ...] = ()

#: Known upward imports, (importer, imported) -> why it is still there.  Each is a TODO of issue 17,
#: to be removed by the change that fixes it; do not add to this list, fix the import instead.
KNOWN_UPWARD: dict[tuple[str, str], str] = {
    ("vlaeval.agents.replay", "vlaeval.training.demos"): "an agent reads the demo files that training writes",
    ("vlaeval.results.fingerprint", "vlaeval.envs.suite"): "fingerprints a run from SuiteSpec and EpisodeSpec",
}

#: Known import circles, as the edges (importer, imported) that close them -> why each is still
#: there; the graph without these edges must have no circle.  TODO(issue 17), as above.
KNOWN_CIRCLE_EDGES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One ``import`` statement's edge: ``where`` is ``module``, ``function`` or ``typing``
    (under ``if TYPE_CHECKING:``, never executed)."""

    importer: str
    imported: str
    where: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.where}-level, line {self.line})"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _known_module(name: str) -> str | None:
    """``name`` or the nearest enclosing package of it that is one of vlaeval's modules."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> list[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in dict.fromkeys(_known_module(n) for n in targets(node) if n.split(".")[0] == PACKAGE):
                if target and target != module:
                    found.append(Import(module, target, where, node.lineno))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            where = "function"
        if isinstance(node, ast.If) and where == "module" and _is_type_checking(node.test):
            for child in node.body:
                visit(child, "typing")
            for child in node.orelse:
                visit(child, where)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(path.read_text(), filename=str(path)), "module")
    return found


def _scanned(module: str) -> bool:
    return not any(module == p or module.startswith(p + ".") for p in UNSCANNED)


IMPORTS = [i for module, path in MODULES.items() if _scanned(module) for i in _imports(module, path)]


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching entry, layer)
    for layer, entries in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or (entry != PACKAGE and module.startswith(entry + "."))
            if matches and (best is None or len(entry) > best[0]):
                best = (len(entry), layer)
    return None if best is None else best[1]


def _upward() -> dict[tuple[str, str], list[Import]]:
    out: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for i in IMPORTS:
        to, source = _layer(i.imported), _layer(i.importer)
        if to is not None and source is not None and to > source:  # no layer: test_every_module_has_a_layer
            out[(i.importer, i.imported)].append(i)
    return out


def _graph(skip: set[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
    """Importer -> imported for imports that run (module and function level), minus ``skip``."""
    graph: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        if i.where != "typing" and (i.importer, i.imported) not in skip:
            graph[i.importer].add(i.imported)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import path from ``start`` to ``goal``, or None."""
    parents: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child in parents:
                    continue
                parents[child] = node
                if child == goal:
                    path = [child]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return path[::-1]
                nxt.append(child)
        frontier = nxt
    return None


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each group of modules that import each other (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph.get(node, ())):
            if child not in index:
                connect(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    circles = []
    for group in groups:
        first = group[0]
        inside = {n: graph[n] & set(group) for n in group}
        path = min((_reaches(inside, child, first) for child in inside[first]), key=len)
        circles.append([first, *path])
    return circles


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if _scanned(m) and _layer(m) is None)
    assert not missing, f"place these modules in LAYERS of {__file__}: {missing}"


def test_layers_only_import_downwards():
    upward = _upward()
    new = [str(i) for key, imports in sorted(upward.items()) if key not in KNOWN_UPWARD for i in imports]
    assert not new, "imports from a lower layer to a higher one (see LAYERS):\n  " + "\n  ".join(new)


def test_known_upward_imports_are_still_there():
    """A listed violation that is gone must leave the list, so the list only shrinks."""
    gone = sorted(set(KNOWN_UPWARD) - set(_upward()))
    assert not gone, f"fixed, remove from KNOWN_UPWARD: {gone}"


def test_no_import_circles():
    circles = _circles(_graph(skip=set(KNOWN_CIRCLE_EDGES)))
    assert not circles, "modules that import each other (module- or function-level):\n  " + "\n  ".join(
        " -> ".join(c) for c in circles)


def test_known_circles_are_still_there():
    graph = _graph()
    gone = sorted((a, b) for a, b in KNOWN_CIRCLE_EDGES if b not in graph.get(a, ()) or _reaches(graph, b, a) is None)
    assert not gone, f"no longer closes a circle, remove from KNOWN_CIRCLE_EDGES: {gone}"


SUITE_PACKAGES = sorted(m for m, path in MODULES.items() if m.count(".") == 2 and m.startswith("vlaeval.envs.")
                        and path.name == "__init__.py" and _scanned(m))


@pytest.mark.parametrize("suite_package", SUITE_PACKAGES)
def test_suites_import_nothing_from_runner_agents_or_training(suite_package):
    """Issue 17's rule for the suites themselves, which no allow-list entry may excuse."""
    higher = ("vlaeval.evaluators", "vlaeval.agents", "vlaeval.training")
    bad = [str(i) for i in IMPORTS if (i.importer == suite_package or i.importer.startswith(suite_package + "."))
           and any(i.imported == h or i.imported.startswith(h + ".") for h in higher)]
    assert not bad, "\n".join(bad)
