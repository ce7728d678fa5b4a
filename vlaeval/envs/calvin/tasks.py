"""CALVIN's 34 tasks and their symbolic model (spec calvin.md §A.2-§A.6).

The symbolic model decides which 5-task chains are valid for an initial state; the official
chain generator (:mod:`vlaeval.envs.calvin.sequences`) depends on every detail of it, including
the quirks (place_in_slider's naming, stack_block's "exactly one match" rejection), so the rules
are kept literally as the spec states them rather than "fixed". Pure Python: the environment,
the suite listing and the generator all import it without a simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

#: Block colours in CALVIN's order (scene D's scene_obs order; alternatives are listed in it).
COLOURS: tuple[str, ...] = ("red", "blue", "pink")

#: Keys of a symbolic state, in the normative order: the initial-state hash renders the values
#: in this order (§B.4), so it is part of the benchmark's definition.
STATE_KEYS: tuple[str, ...] = (
    "led",
    "lightbulb",
    "slider",
    "drawer",
    "red_block",
    "blue_block",
    "pink_block",
    "grasped",
)

#: A symbolic state: ``led``, ``lightbulb``, ``grasped`` are 0/1 ints, the rest strings.
SymbolicState = Mapping[str, "int | str"]

#: The 34 tasks in the normative index order: the generator samples *indices* into this tuple.
TASKS: tuple[str, ...] = (
    *(f"{verb}_{c}_block_{side}" for verb in ("rotate", "push") for c in COLOURS for side in ("right", "left")),
    "move_slider_left",
    "move_slider_right",
    "open_drawer",
    "close_drawer",
    *(f"lift_{c}_block_{where}" for c in COLOURS for where in ("table", "slider", "drawer")),
    "place_in_slider",
    "place_in_drawer",
    "stack_block",
    "unstack_block",
    "turn_on_lightbulb",
    "turn_off_lightbulb",
    "turn_on_led",
    "turn_off_led",
    "push_into_drawer",
)


def _category(task: str) -> int:
    """Category number of §A.6; a valid chain never repeats a category."""
    if task.startswith(("rotate_", "push_")) and task != "push_into_drawer":
        return 1
    if task.startswith("move_slider_"):
        return 2
    if task in ("open_drawer", "close_drawer"):
        return 3
    if task.startswith("lift_"):
        return {"table": 4, "slider": 5, "drawer": 6}[task.rsplit("_", 1)[1]]
    if task.startswith("place_in_"):
        return 7
    if task.startswith("turn_"):
        return 8
    return {"push_into_drawer": 9, "stack_block": 10, "unstack_block": 11}[task]


#: Task name -> category (1..11, §A.6).
TASK_CATEGORY: dict[str, int] = {t: _category(t) for t in TASKS}


@dataclass(frozen=True)
class Alternative:
    """One (condition => effect) rule of a task (§A.4).

    Attributes:
        condition: ``(key, allowed values)`` tests that must all hold.
        effect: ``(key, value)`` assignments made on a copy of the state.
    """

    condition: tuple[tuple[str, frozenset], ...]
    effect: tuple[tuple[str, "int | str"], ...]

    def matches(self, state: SymbolicState) -> bool:
        return all(state[k] in allowed for k, allowed in self.condition)

    def apply(self, state: SymbolicState) -> dict[str, "int | str"]:
        successor = dict(state)
        successor.update(self.effect)
        return successor


def _alt(condition: Mapping[str, object], effect: Mapping[str, "int | str"]) -> Alternative:
    """Build an alternative; a condition value that is a set means "one of"."""
    return Alternative(
        condition=tuple(
            (k, frozenset(v) if isinstance(v, (set, frozenset)) else frozenset((v,))) for k, v in condition.items()
        ),
        effect=tuple(effect.items()),
    )


def _block(colour: str) -> str:
    return f"{colour}_block"


#: Ordered pairs (X, Y), X != Y, in the order stack/unstack list their alternatives.
_PAIRS = tuple((x, y) for x in COLOURS for y in COLOURS if x != y)
_SLIDER_HALVES = ("slider_right", "slider_left")


def _build_alternatives() -> dict[str, tuple[Alternative, ...]]:
    alts: dict[str, tuple[Alternative, ...]] = {}
    for c in COLOURS:
        x = _block(c)
        for verb in ("rotate", "push"):
            for side in ("right", "left"):
                alts[f"{verb}_{c}_block_{side}"] = (_alt({x: "table", "grasped": 0}, {x: "table"}),)
        lifted = {x: "grasped", "grasped": 1}
        alts[f"lift_{c}_block_table"] = (_alt({x: "table", "grasped": 0}, lifted),)
        # A shelf block is reachable only in the half the door leaves open.
        alts[f"lift_{c}_block_slider"] = (
            _alt({x: "slider_left", "slider": "right", "grasped": 0}, lifted),
            _alt({x: "slider_right", "slider": "left", "grasped": 0}, lifted),
        )
        alts[f"lift_{c}_block_drawer"] = (_alt({x: "drawer", "drawer": "open", "grasped": 0}, lifted),)
    for task, key, before, after in (
        ("move_slider_left", "slider", "right", "left"),
        ("move_slider_right", "slider", "left", "right"),
        ("open_drawer", "drawer", "closed", "open"),
        ("close_drawer", "drawer", "open", "closed"),
        ("turn_on_lightbulb", "lightbulb", 0, 1),
        ("turn_off_lightbulb", "lightbulb", 1, 0),
        ("turn_on_led", "led", 0, 1),
        ("turn_off_led", "led", 1, 0),
    ):
        alts[task] = (_alt({key: before, "grasped": 0}, {key: after}),)
    # Upstream quirk kept on purpose: the block lands in the half named like the door position,
    # i.e. the half the door covers (the opposite of what lift_X_block_slider assumes).
    alts["place_in_slider"] = tuple(
        _alt({_block(c): "grasped", "slider": side, "grasped": 1}, {_block(c): f"slider_{side}", "grasped": 0})
        for c in COLOURS
        for side in ("right", "left")
    )
    alts["place_in_drawer"] = tuple(
        _alt({_block(c): "grasped", "drawer": "open", "grasped": 1}, {_block(c): "drawer", "grasped": 0})
        for c in COLOURS
    )
    alts["stack_block"] = tuple(
        _alt(
            {_block(x): "grasped", _block(y): "table", "grasped": 1},
            {_block(x): "stacked_top", _block(y): "stacked_bottom", "grasped": 0},
        )
        for x, y in _PAIRS
    )
    alts["unstack_block"] = tuple(
        _alt(
            {_block(x): "stacked_top", _block(y): "stacked_bottom", "grasped": 0},
            {_block(x): "table", _block(y): "table"},
        )
        for x, y in _PAIRS
    )
    alts["push_into_drawer"] = tuple(
        _alt(
            {
                _block(c): "table",
                **{_block(o): set(_SLIDER_HALVES) for o in COLOURS if o != c},
                "drawer": "open",
                "grasped": 0,
            },
            {_block(c): "drawer", "grasped": 0},
        )
        for c in COLOURS
    )
    return {t: alts[t] for t in TASKS}


#: Task name -> its alternatives, in the order of §A.4.
TASK_ALTERNATIVES: dict[str, tuple[Alternative, ...]] = _build_alternatives()


def successors(state: SymbolicState, task: str) -> list[dict[str, "int | str"]]:
    """Successor of every matching alternative; more than one means the task is ambiguous."""
    return [alt.apply(state) for alt in TASK_ALTERNATIVES[task] if alt.matches(state)]


def apply_task(state: SymbolicState, task: str) -> dict[str, "int | str"] | None:
    """The successor state, or None unless exactly one alternative matches (§A.5 rule 1)."""
    found = successors(state, task)
    return found[0] if len(found) == 1 else None


def is_valid_chain(state: SymbolicState, tasks: Sequence[str]) -> bool:
    """Whether a chain is valid for an initial state: pairwise different categories and a
    unique successor at every step (§A.5). The generator uses a tabulated form of this."""
    if len({TASK_CATEGORY[t] for t in tasks}) != len(tasks):
        return False
    current: SymbolicState | None = state
    for task in tasks:
        current = apply_task(current, task)
        if current is None:
            return False
    return True
