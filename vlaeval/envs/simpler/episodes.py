"""The fixed, versioned initial-condition lists of every task (SimplerEnv's grids, scaled to the
Panda's workspace).  Pure data: no simulator.

World frame: table top at z = 0, robot base at (-0.615, 0, 0) facing +x.  A layout is a
JSON-serialisable dict read by the environment's reset (``options["layout"]``).  Changing any
number here changes results: bump ``SIMPLER_VERSION`` in :mod:`vlaeval.envs.simpler.spec`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from vlaeval.envs.simpler.spec import TASK_INFO

#: Objects that can take part in "move near" (display name -> env object key).
MOVE_NEAR_OBJECTS = {
    "coke can": "coke_can",
    "pepsi can": "pepsi_can",
    "7up can": "sevenup_can",
    "apple": "apple",
    "orange": "orange",
    "sponge": "sponge",
}
_TRIPLETS = (("coke can", "sponge", "pepsi can"), ("orange", "7up can", "apple"))
_MOVE_NEAR_SLOTS = ((-0.14, -0.17), (-0.14, 0.0), (-0.14, 0.17))

_BRIDGE_CELLS = ((-0.26, -0.12), (-0.26, 0.12), (-0.10, -0.12), (-0.10, 0.12))


def _pick_can() -> list[dict[str, Any]]:
    out = []
    for orientation in ("horizontal", "vertical", "upright"):
        for x in (-0.26, -0.16, -0.06):
            for y in (-0.16, 0.0, 0.16):
                out.append({"orientation": orientation, "obj_xy": [x, y]})
    return out


def _move_near() -> list[dict[str, Any]]:
    out = []
    for triplet in _TRIPLETS:
        for src, tgt in itertools.permutations(range(3), 2):
            out.append({
                "objects": [MOVE_NEAR_OBJECTS[n] for n in triplet],
                "names": list(triplet),
                "xy": [list(s) for s in _MOVE_NEAR_SLOTS],
                "source": src,
                "target": tgt,
            })
    return out


def _drawer(open_qpos: float) -> list[dict[str, Any]]:
    return [
        {"robot_xy": [-0.615 + dx, dy], "drawer_qpos": open_qpos}
        for dx in (-0.04, 0.0, 0.04)
        for dy in (-0.08, 0.0, 0.08)
    ]


def _apple() -> list[dict[str, Any]]:
    return [
        {"robot_xy": [-0.615, dy], "drawer_qpos": 0.0, "apple_xy": [ax, ay]}
        for dy in (-0.06, 0.0, 0.06)
        for ax, ay in ((-0.30, -0.26), (-0.22, -0.30), (-0.30, 0.27))
    ]


def _bridge(source: str, target: str) -> list[dict[str, Any]]:
    out = []
    for i, (s, t) in enumerate(itertools.permutations(range(4), 2)):
        out.append({
            "source": source, "target": target,
            "source_xy": list(_BRIDGE_CELLS[s]), "target_xy": list(_BRIDGE_CELLS[t]),
            "source_yaw": 0.0 if i % 2 == 0 else math.pi / 2,
        })
    return out


def _eggplant() -> list[dict[str, Any]]:
    return [
        {"source": "eggplant", "target": "basket", "source_xy": [x, y], "target_xy": [-0.14, 0.16],
         "source_yaw": yaw}
        for x, y in ((-0.30, -0.20), (-0.22, -0.14), (-0.14, -0.20), (-0.30, -0.06), (-0.20, -0.04), (-0.08, -0.10))
        for yaw in (0.0, math.pi / 2)
    ]


def task_layouts(task: str) -> list[dict[str, Any]]:
    """The initial conditions of a task, in protocol order."""
    if task not in TASK_INFO:
        raise KeyError(f"unknown simpler task {task!r}")
    return {
        "pick_coke_can": _pick_can,
        "move_near": _move_near,
        "open_drawer": lambda: _drawer(0.0),
        "close_drawer": lambda: _drawer(0.2),
        "place_apple_in_closed_drawer": _apple,
        "put_spoon_on_towel": lambda: _bridge("spoon", "towel"),
        "put_carrot_on_plate": lambda: _bridge("carrot", "plate"),
        "stack_green_on_yellow": lambda: _bridge("green_cube", "yellow_cube"),
        "put_eggplant_in_basket": _eggplant,
    }[task]()


def instruction_for(task: str, layout: dict[str, Any]) -> str:
    info = TASK_INFO[task]
    if task == "move_near":
        names = layout["names"]
        return info.instruction.format(source=names[layout["source"]], target=names[layout["target"]])
    return info.instruction
