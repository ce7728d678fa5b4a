"""CALVIN's static and gripper cameras (spec calvin.md §D.8), rendered with TinyRenderer.

Rendering dominates the step cost on CPU, so only requested cameras are rendered, RGB and depth
of one camera share a single render, the segmentation mask is skipped and shadows stay off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as pb

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
        depth = self.far * self.near / (self.far - (self.far - self.near) * z_buffer)
        return np.clip(depth, self.near, self.far).astype(np.float32)


STATIC = CameraSpec(fov=10.0, near=0.01, far=10.0)
GRIPPER = CameraSpec(fov=75.0, near=0.01, far=2.0)

STATIC_EYE = (2.871459009488717, -2.166602199425597, 2.555159848480571)
STATIC_TARGET = (-0.026242351159453392, -0.0302329882979393, 0.3920000493526459)
STATIC_UP = (0.4041403970338857, 0.22629790978217404, 0.8862616969685161)


def static_view() -> list[float]:
    """View matrix of the fixed static camera."""
    return list(pb.computeViewMatrix(STATIC_EYE, STATIC_TARGET, STATIC_UP))


def gripper_view(position: tuple[float, ...], orientation: tuple[float, ...]) -> list[float]:
    """View matrix of the gripper camera from the pose of its link: looks along the link's +y
    with the link's -z as image up (§D.8)."""
    rotation = np.array(pb.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    eye = np.asarray(position)
    return list(pb.computeViewMatrix(eye.tolist(), (eye + rotation[:, 1]).tolist(), (-rotation[:, 2]).tolist()))


def render(client: int, size: int, view: list[float], projection: list[float], spec: CameraSpec,
           rgb: bool, depth: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Render one square image; return (uint8 HxWx3 RGB or None, float32 HxW metric depth or None)."""
    _, _, pixels, z_buffer, _ = pb.getCameraImage(
        size, size, view, projection, shadow=0, renderer=pb.ER_TINY_RENDERER,
        flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client,
    )
    image = np.asarray(pixels, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy() if rgb else None
    metric = spec.metric_depth(np.asarray(z_buffer, dtype=np.float64).reshape(size, size)) if depth else None
    return image, metric
