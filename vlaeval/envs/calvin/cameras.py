"""CALVIN's static and gripper cameras (spec calvin.md §D.8), rendered with TinyRenderer.

Rendering dominates the step cost on CPU, so only requested cameras are rendered, RGB and depth
of one camera share a single render, the segmentation mask is skipped and shadows stay off, and
the static camera rasterises its never-moving geometry only once (:class:`StaticCamera`).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Iterable, Sequence

import numpy as np

from vlaeval.envs.calvin.bullet import pb

#: Observation keys the environment can provide, per camera.
CAMERA_KEYS = ("rgb_static", "rgb_gripper", "depth_static", "depth_gripper")


@dataclass(frozen=True)
class CameraSpec:
    """Intrinsics of one camera: vertical field of view (degrees) and clip planes (metres)."""

    fov: float
    near: float
    far: float

    def projection(self) -> list[float]:
        """pybullet's column-major projection matrix for a square image."""
        return list(pb.computeProjectionMatrixFOV(self.fov, 1.0, self.near, self.far))

    def metric_depth(self, z_buffer: np.ndarray) -> np.ndarray:
        """Metric depth from OpenGL's non-linear z-buffer values, clipped to the clip planes
        (the renderer's float32 z-buffer overshoots ``far`` slightly on empty pixels)."""
        z = np.asarray(z_buffer, dtype=np.float64)
        depth = self.far * self.near / (self.far - (self.far - self.near) * z)
        return np.clip(depth, self.near, self.far).astype(np.float32)


STATIC = CameraSpec(fov=10.0, near=0.01, far=10.0)
GRIPPER = CameraSpec(fov=75.0, near=0.01, far=2.0)

STATIC_EYE = (2.871459009488717, -2.166602199425597, 2.555159848480571)
STATIC_TARGET = (-0.026242351159453392, -0.0302329882979393, 0.3920000493526459)
STATIC_UP = (0.4041403970338857, 0.22629790978217404, 0.8862616969685161)


def renderer_info() -> dict[str, str]:
    """What draws these cameras, for render fingerprints and ``vlaeval doctor``.

    TinyRenderer is pybullet's own CPU rasteriser: the frames depend on the pybullet build and the
    CPU architecture (its float code), never on a GPU, an OpenGL/EGL driver or a display, so those
    are what a fingerprint records.
    """
    return {
        "renderer": "pybullet TinyRenderer",
        "driver": "software (CPU), no OpenGL/EGL",
        "device": platform.machine(),
        "pybullet": metadata.version("pybullet"),
        "pybullet_api": str(pb.getAPIVersion()),
    }


def static_view() -> list[float]:
    """View matrix of the fixed static camera."""
    return list(pb.computeViewMatrix(STATIC_EYE, STATIC_TARGET, STATIC_UP))


def gripper_view(position: tuple[float, ...], orientation: tuple[float, ...]) -> list[float]:
    """View matrix of the gripper camera from the pose of its link: looks along the link's +y
    with the link's -z as image up (§D.8)."""
    rotation = np.array(pb.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    eye = np.asarray(position)
    return list(pb.computeViewMatrix(eye.tolist(), (eye + rotation[:, 1]).tolist(), (-rotation[:, 2]).tolist()))


def _rasterise(client: int, size: int, view: list[float], projection: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """One TinyRenderer pass: (uint8 HxWx3 RGB, float32 HxW z-buffer)."""
    _, _, pixels, z_buffer, _ = pb.getCameraImage(
        size, size, view, projection, shadow=0, renderer=pb.ER_TINY_RENDERER,
        flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client,
    )
    rgb = np.asarray(pixels, dtype=np.uint8).reshape(size, size, 4)[:, :, :3]
    return rgb, np.asarray(z_buffer, dtype=np.float32).reshape(size, size)


def render(client: int, size: int, view: list[float], projection: list[float], spec: CameraSpec,
           rgb: bool, depth: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Render one square image; return (uint8 HxWx3 RGB or None, float32 HxW metric depth or None)."""
    image, z_buffer = _rasterise(client, size, view, projection)
    return image.copy() if rgb else None, spec.metric_depth(z_buffer) if depth else None


@dataclass(frozen=True)
class _VisualShape:
    body: int
    link: int
    shape: int  # index among the link's visual shapes, as changeVisualShape counts them; -1: all
    rgba: tuple[float, float, float, float]


def _per_link(shapes: Sequence[_VisualShape]) -> list[_VisualShape]:
    """The same shapes with every link whose shapes share one colour merged into one entry
    (shape -1), so that showing or hiding it takes one changeVisualShape call."""
    links: dict[tuple[int, int], list[_VisualShape]] = {}
    for s in shapes:
        links.setdefault((s.body, s.link), []).append(s)
    merged: list[_VisualShape] = []
    for (body, link), members in links.items():
        colours = {s.rgba for s in members}
        merged += [_VisualShape(body, link, -1, members[0].rgba)] if len(colours) == 1 else members
    return merged


def _visual_shapes(client: int, bodies: Iterable[int]) -> list[_VisualShape]:
    """Every visual shape of the bodies with its current colour."""
    shapes: list[_VisualShape] = []
    for body in bodies:
        per_link: dict[int, int] = {}
        for data in pb.getVisualShapeData(body, physicsClientId=client):
            link = data[1]
            per_link[link] = per_link.get(link, -1) + 1
            shapes.append(_VisualShape(body, link, per_link[link], tuple(data[7])))
    return shapes


def _show(client: int, shapes: Iterable[_VisualShape], visible: bool) -> None:
    # TinyRenderer skips a shape whose alpha is 0 before touching a single pixel.
    for s in shapes:
        pb.changeVisualShape(s.body, s.link, shapeIndex=s.shape, rgbaColor=s.rgba if visible else (0, 0, 0, 0),
                             physicsClientId=client)


class StaticCamera:
    """The fixed static camera, which rasterises the parts of the scene that never move only once.

    The camera and most of what it sees (desk carcass, shelf, ground, robot pedestal: the
    ``fixed`` links) never move, and TinyRenderer's cost is the screen area it rasterises, hidden
    surfaces included.  So the fixed links are rendered once into a colour + z-buffer image;
    every frame TinyRenderer draws only the moving bodies (the fixed links hidden) and each pixel
    takes whichever of the two surfaces is nearer, which is what the z-buffer of a full render
    picks.  That makes the 200x200 render about 2.5x cheaper.  A tie goes to the moving part, as
    in a full render for the desk's flush-mounted parts (LED, button, switch), which TinyRenderer
    draws after the carcass.  The image equals a full render of all bodies except on z-fighting
    seams, where a moving and a fixed surface meet at the same depth to float32 precision (a
    block's edge resting on the table; about one pixel in 70,000): there the full render's pick
    depends on its draw order and on rounding finer than the z-buffer it returns, and either
    colour is a correct image.

    The fixed links' own colours must not change after construction; the background would not
    follow them.
    """

    def __init__(self, client: int, size: int, fixed: Sequence[tuple[int, int]]) -> None:
        self._client, self.size = client, size
        self._view, self._projection = static_view(), STATIC.projection()
        fixed_set = set(fixed)
        bodies = [pb.getBodyUniqueId(i, physicsClientId=client) for i in range(pb.getNumBodies(physicsClientId=client))]
        shapes = _visual_shapes(client, bodies)
        self._fixed = _per_link([s for s in shapes if (s.body, s.link) in fixed_set])
        moving = [s for s in shapes if (s.body, s.link) not in fixed_set]
        _show(client, moving, False)
        try:
            rgb, z_buffer = _rasterise(client, size, self._view, self._projection)
        finally:
            _show(client, moving, True)
        self._background_rgb, self._background_z = rgb.copy(), z_buffer.copy()

    def render(self, rgb: bool, depth: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(uint8 HxWx3 RGB or None, float32 HxW metric depth or None) of the current scene."""
        _show(self._client, self._fixed, False)
        try:
            moving_rgb, moving_z = _rasterise(self._client, self.size, self._view, self._projection)
        finally:
            _show(self._client, self._fixed, True)
        moving_in_front = moving_z <= self._background_z
        image = np.where(moving_in_front[:, :, None], moving_rgb, self._background_rgb) if rgb else None
        metric = STATIC.metric_depth(np.minimum(moving_z, self._background_z)) if depth else None
        return image, metric
