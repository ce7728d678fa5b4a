"""CALVIN's static and gripper cameras (spec calvin.md §D.8), rendered with TinyRenderer.

Rendering dominates the step cost on CPU, so only requested cameras are rendered, RGB and depth
of one camera share a single render, the segmentation mask is skipped and shadows stay off, and
the static camera rasterises its never-moving geometry only once (:class:`StaticCamera`).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Iterable, Sequence

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


#: How far (metres, radians, quaternion components) a prop may have moved since the cached layer
#: was drawn and still be drawn from it.  Resting blocks never quite sleep in PyBullet: they creep
#: by about 2.5e-6 per step (measured), so an exact comparison would redraw every frame.  1e-4 m is
#: a fiftieth of a pixel of the static camera (about 5 mm per pixel at the table), so the layer
#: differs from a fresh render by at most an edge pixel rounding the other way.
PROP_TOLERANCE = 1e-4


class StaticCamera:
    """The fixed static camera, which rasterises only what moved since the last frame.

    TinyRenderer's cost is the screen area it rasterises, hidden surfaces included, and most of
    what the static camera sees does not move:

    * the ``fixed`` links (desk carcass, shelf, ground, robot pedestal) never move: they are
      rendered once into a colour + z-buffer image (the background);
    * the props (blocks, drawer, sliding door, button, switch, LED, bulb: every other body and
      link but the arm) move only while the arm pushes or carries them: once their poses, joint
      positions and colours are as they were in the previous frame, they are rendered over the
      background into a second cached layer, and each frame draws just the arm, from a copy of it
      alone in a render-only pybullet client (``arm_model`` loads it there) whose joints follow
      the real arm;
    * while a prop moves, each frame draws the arm and the props together, and the layer is
      redrawn on the first frame they are still again.

    Why a copy of the arm rather than hiding the props: hiding a shape means setting its colour,
    and pybullet does not report the colours of the desk's multi-shape links (drawer, door) as
    it renders them, so restoring them from what it reports repaints them.

    Each pixel takes whichever surface is nearer, which is what the z-buffer of a full render
    picks, so the image equals a full render of all bodies except on z-fighting seams, where two
    surfaces meet at the same depth to float32 precision (a block's edge resting on the table;
    about one pixel in 70,000): there the full render's pick depends on its draw order and on
    rounding finer than the z-buffer it returns, and either colour is a correct image.  A tie
    goes to the later layer, as in a full render for the desk's flush-mounted parts (LED, button,
    switch), which TinyRenderer draws after the carcass.  Drawing only the arm makes a frame about
    half as expensive as drawing every moving body (measured: the arm is 3.1 of 6.0 ms).

    The fixed links' and the arm's colours must not change after construction; the cached layers
    would not follow them.  The props' colours are read every frame (the LED and bulb change).
    """

    def __init__(self, client: int, size: int, fixed: Sequence[tuple[int, int]], arm: int | None = None,
                 arm_model: Callable[[int], int] | None = None) -> None:
        self._client, self.size = client, size
        self._view, self._projection = static_view(), STATIC.projection()
        fixed_set = set(fixed)
        bodies = [pb.getBodyUniqueId(i, physicsClientId=client) for i in range(pb.getNumBodies(physicsClientId=client))]
        shapes = _visual_shapes(client, bodies)
        self._fixed = _per_link([s for s in shapes if (s.body, s.link) in fixed_set])
        moving = [s for s in shapes if (s.body, s.link) not in fixed_set]
        self._background = self._pass(moving)
        self._arm_id = arm
        self._arm = _per_link([s for s in moving if s.body == arm])
        self._prop_bodies = sorted({s.body for s in moving if s.body != arm})
        # The render-only copy of the arm; without one every frame draws all moving bodies.
        self._mirror: tuple[int, int, int] | None = None  # (client, body, joints)
        if arm is not None and arm_model is not None:
            mirror = pb.connect(pb.DIRECT)
            body = arm_model(mirror)
            self._mirror = (mirror, body, pb.getNumJoints(body, physicsClientId=mirror))
        self._layer: tuple[np.ndarray, np.ndarray] | None = None  # background + props at rest
        self._layer_state: tuple[np.ndarray, tuple] | None = None
        self._previous: tuple[np.ndarray, tuple] | None = None  # the props' state in the previous frame

    def close(self) -> None:
        """Disconnect the arm's render-only client."""
        if self._mirror is not None:
            pb.disconnect(self._mirror[0])
            self._mirror = None

    def _pass(self, hidden: Sequence[_VisualShape]) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise the scene with ``hidden`` shapes left out."""
        _show(self._client, hidden, False)
        try:
            rgb, z_buffer = _rasterise(self._client, self.size, self._view, self._projection)
        finally:
            _show(self._client, hidden, True)
        return rgb, z_buffer

    def _arm_pass(self) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise the arm alone: its copy, posed as the real arm is now."""
        mirror, body, joints = self._mirror
        for joint, state in enumerate(pb.getJointStates(self._arm_id, range(joints), physicsClientId=self._client)):
            pb.resetJointState(body, joint, state[0], physicsClientId=mirror)
        return _rasterise(mirror, self.size, self._view, self._projection)

    def _prop_state(self) -> tuple[np.ndarray, tuple]:
        """The props' poses and joint positions (one vector) and their colours."""
        c = self._client
        values: list[float] = []
        for body in self._prop_bodies:
            position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=c)
            values += [*position, *orientation]
            joints = pb.getNumJoints(body, physicsClientId=c)
            if joints:
                values += [state[0] for state in pb.getJointStates(body, range(joints), physicsClientId=c)]
        return np.asarray(values), tuple(s.rgba for s in _visual_shapes(c, self._prop_bodies))

    @staticmethod
    def _same(a: tuple[np.ndarray, tuple] | None, b: tuple[np.ndarray, tuple]) -> bool:
        return a is not None and a[1] == b[1] and bool(np.all(np.abs(a[0] - b[0]) <= PROP_TOLERANCE))

    def render(self, rgb: bool, depth: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(uint8 HxWx3 RGB or None, float32 HxW metric depth or None) of the current scene."""
        layered = False
        if self._mirror is not None:
            state = self._prop_state()
            layered = self._same(self._layer_state, state)
            if not layered and self._same(self._previous, state):
                # The props came to rest: draw them once over the background.
                self._layer = _nearer(self._pass([*self._fixed, *self._arm]), self._background)
                self._layer_state, layered = state, True
            self._previous = state
        if layered:
            front, back = self._arm_pass(), self._layer
        else:
            front, back = self._pass(self._fixed), self._background
        image, z_buffer = _nearer(front, back)
        return (image if rgb else None), (STATIC.metric_depth(z_buffer) if depth else None)


def _nearer(front: tuple[np.ndarray, np.ndarray], back: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the surface nearer the camera of two (RGB, z-buffer) layers; ties go to ``front``."""
    in_front = front[1] <= back[1]
    return np.where(in_front[:, :, None], front[0], back[0]), np.minimum(front[1], back[1])
