"""The suite's action convention and its conversion to ManiSkill3's ``pd_ee_delta_pose`` (pure numpy).

vlaeval's ``simpler`` action (7 values, SimplerEnv's convention):
``[dx, dy, dz, rx, ry, rz, gripper]``: a TCP translation in metres in the robot base frame, a
rotation *as an axis-angle vector* in radians expressed in the base frame and applied about the
TCP (new orientation = R(r) @ old orientation), and the gripper command (+1 open, -1 close).

ManiSkill3's Panda ``pd_ee_delta_pose`` controller instead reads a normalised action whose
rotation part is XYZ Euler angles (``euler_angles_to_matrix(·, "XYZ")``, ManiSkill#1138), and in
3.0.1 scales it by ``rot_lower`` (negative) so positive inputs rotate negatively (ManiSkill#1469).
:func:`to_controller` converts exactly: axis-angle -> matrix -> intrinsic XYZ Euler, then divides
by the per-axis scale the controller *actually applies*, measured once with the controller's own
scaling function (:func:`probe_scale`), so the conversion stays right if upstream fixes the sign.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

#: Per-step bounds of the suite's action (metres, radians); larger requests are clipped.
POS_BOUND = 0.1
ROT_BOUND = 0.5


def axis_angle_to_euler_xyz(rotvec: np.ndarray) -> np.ndarray:
    """Intrinsic XYZ Euler angles (pytorch3d's "XYZ" = R_x(a) R_y(b) R_z(c)) of an axis-angle vector."""
    return Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_euler("XYZ")


def to_controller(action: np.ndarray, pos_scale: np.ndarray, rot_scale: np.ndarray) -> np.ndarray:
    """Suite action -> normalised ``pd_ee_delta_pose`` action.

    ``pos_scale``/``rot_scale`` are what the controller multiplies a normalised value by (signed,
    per axis; from :func:`probe_scale`).
    """
    a = np.asarray(action, dtype=np.float64).reshape(7)
    pos = np.clip(a[:3], -POS_BOUND, POS_BOUND)
    rotvec = a[3:6]
    norm = float(np.linalg.norm(rotvec))
    if norm > ROT_BOUND:
        rotvec = rotvec * (ROT_BOUND / norm)
    euler = axis_angle_to_euler_xyz(rotvec)
    out = np.empty(7, dtype=np.float64)
    out[:3] = pos / pos_scale
    out[3:6] = euler / rot_scale
    out[6] = np.clip(a[6], -1.0, 1.0)
    return out.astype(np.float32)


def probe_scale(scale_fn, rot_bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Measure the controller's (signed) per-axis scaling with its own ``_clip_and_scale_action``.

    ``scale_fn(normalised 6-vector) -> physical 6-vector``.  Probes with 0.5 on each axis (inside
    the norm clip) and returns physical/normalised per axis.
    """
    pos = np.empty(3)
    rot = np.empty(3)
    for i in range(6):
        probe = np.zeros(6)
        probe[i] = 0.5
        value = float(np.asarray(scale_fn(probe))[i]) / 0.5
        if i < 3:
            pos[i] = value
        else:
            rot[i - 3] = value
    if not np.allclose(np.abs(rot), rot_bound, rtol=1e-3):
        raise RuntimeError(f"unexpected pd_ee_delta_pose rotation scaling {rot} (expected ±{rot_bound})")
    return pos, rot
