"""The seam between the suite's rules and its simulator: one sub-environment as the rules see it.

The task rules (:mod:`.tasks`) and the variants (:mod:`.appearance`) decide where things go and
what counts; :class:`~vlaeval.envs.simpler.scene.SimplerSceneEnv` carries that out through a
:class:`SceneView` of one sub-environment.  Bodies are named as in :mod:`.catalogue` (plus
``"table"`` and ``"drawer"`` for contacts), never as simulator handles, so the rules stay plain
Python and can be tested against a stand-in scene without ManiSkill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from vlaeval.envs.simpler.spec import BASE_VARIANT


@dataclass
class SceneEpisode:
    """What one sub-environment is playing: set at its reset, read at every step's evaluation."""

    task: str = "pick_coke_can"
    layout: dict[str, Any] = field(default_factory=dict)
    variant: dict[str, str] = field(default_factory=lambda: dict(BASE_VARIANT))
    active: dict[str, Any] = field(default_factory=dict)  # the task's objects and their start state


class SceneView(Protocol):
    """One sub-environment: reads return plain numbers, writes take effect at once."""

    def place(self, name: str, p: Sequence[float], q: Sequence[float]) -> None:
        """Pose a body (position, wxyz quaternion), at rest."""

    def position(self, name: str) -> np.ndarray:
        """A body's position (float32 xyz)."""

    def half_height(self, name: str) -> float:
        """Half of a body's height when it rests the right way up (its centre above what it stands on)."""

    def grasped(self, name: str) -> bool:
        """Whether the gripper holds the body."""

    def contact(self, a: str, b: str) -> float:
        """Magnitude of the contact force between two bodies (0 when apart)."""

    def drawer_qpos(self) -> float:
        """How far the drawer is open (metres)."""

    def set_cabinet(self, p: Sequence[float], qpos: float) -> None:
        """Put the cabinet at ``p`` with its drawer open by ``qpos``."""

    def set_colour(self, part: str, rgb: Sequence[float]) -> None:
        """Recolour ``wall``, ``floor``, ``table`` or ``cabinet`` in this sub-environment only."""

    def set_lighting(self, ambient: float, directional: float) -> None:
        """Ambient and directional light intensities (white)."""

    def set_camera(self, eye: Sequence[float], target: Sequence[float]) -> None:
        """Point the camera from ``eye`` at ``target``."""


def quat_z(yaw: float) -> list[float]:
    """The wxyz quaternion of a rotation by ``yaw`` about +z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def put(view: SceneView, name: str, xy: Sequence[float], yaw: float = 0.0) -> None:
    """Stand a body upright on the table top at ``xy``, turned by ``yaw`` (1 mm above, to drop in)."""
    view.place(name, [xy[0], xy[1], view.half_height(name) + 0.001], quat_z(yaw))
