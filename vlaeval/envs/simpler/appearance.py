"""What a variant changes in one sub-environment: colours, light, camera pose and distractors.

Plain Python on a :class:`~vlaeval.envs.simpler.view.SceneView`, applied at every reset without
rebuilding the scene, so one scene serves every variant (and, on the GPU, every sub-environment
its own).  The values behind each axis value are in :mod:`.catalogue`; which variants a task is
evaluated under is in :mod:`.spec`.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from vlaeval.envs.simpler.catalogue import (
    AMBIENT,
    BACKGROUNDS,
    CABINETS,
    CAMERAS,
    DISTRACTOR_COUNT,
    DISTRACTOR_NAMES,
    FLOOR_Z,
    LIGHTING,
    OBJECTS,
    RECEPTACLES,
    TABLES,
)
from vlaeval.envs.simpler.spec import TASK_INFO
from vlaeval.envs.simpler.view import SceneView, quat_z


def apply_appearance(view: SceneView, variant: Mapping[str, str]) -> None:
    """Colours of wall, floor, table and cabinet, the light, and the camera pose of ``variant``."""
    bg = BACKGROUNDS[variant["background"]]
    view.set_colour("wall", bg["wall"])
    view.set_colour("floor", bg["floor"])
    view.set_colour("table", TABLES[variant["table"]])
    view.set_colour("cabinet", CABINETS[variant["cabinet"]])
    scale = LIGHTING[variant["lighting"]]
    view.set_lighting(AMBIENT * scale, scale)
    view.set_camera(*CAMERAS[variant["camera"]])


def place_distractors(view: SceneView, task: str, variant: Mapping[str, str], rng: np.random.Generator) -> None:
    """Scatter ``variant``'s distractors over the free table, 12 cm from the task's objects and
    from each other (drawer tasks: the space in front of the cabinet counts as taken), each
    turned at random.

    ``rng`` is seeded per episode, so the same episode gets the same distractors on any env; a
    spot is drawn at most 200 times and the last draw taken if none was free.
    """
    n = DISTRACTOR_COUNT[variant["distractors"]]
    if n == 0:
        return
    positions = [view.position(name) for name in (*OBJECTS, *RECEPTACLES)]
    occupied = [p[:2] for p in positions if float(p[2]) > FLOOR_Z + 0.2]  # not parked
    if TASK_INFO[task].family == "drawer":
        occupied.append(np.array([-0.2, 0.0]))
    for name in DISTRACTOR_NAMES[:n]:
        for _ in range(200):
            xy = np.array([rng.uniform(-0.32, 0.02), rng.uniform(-0.3, 0.3)])
            if all(np.linalg.norm(xy - o) > 0.12 for o in occupied):
                break
        occupied.append(xy)
        view.place(name, [xy[0], xy[1], view.half_height(name) + 0.001], quat_z(rng.uniform(0, math.pi)))
