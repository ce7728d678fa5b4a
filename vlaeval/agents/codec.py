"""Action normalisation and discretisation (RoboVLMs / OpenVLA style), numpy only.

Networks predict arm actions in [-1, 1]; datasets and simulators use physical units.  The
bounds come from the 1st/99th percentiles of the training actions rather than min/max, so a few
outlier actions do not squeeze the useful range into a handful of bins.  The codec is stored
with every checkpoint because a network is meaningless with different bounds.

Layout: an action is ``(..., arm_dims + 1)``; the last entry is the gripper, which is a binary
decision (+1 / -1, the suite's polarity) and is never normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

CODEC_FORMAT = 1


@dataclass(frozen=True)
class ActionCodec:
    """Per-dim affine map of the arm to [-1, 1] with clipping, 256-bin discretisation and a ±1 gripper.

    Attributes:
        low, high: arm bounds in physical units, mapped to -1 and +1.
        n_bins: uniform bins on [-1, 1] for discrete action spaces.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    n_bins: int = 256

    def __post_init__(self) -> None:
        low = tuple(float(v) for v in self.low)
        high = tuple(float(v) for v in self.high)
        if len(low) != len(high) or not low:
            raise ValueError(f"low and high need the same non-zero length, got {len(low)} and {len(high)}")
        if not all(np.isfinite(low + high)) or any(h <= lo for lo, h in zip(low, high)):
            raise ValueError(f"every bound needs finite low < high, got low={low} high={high}")
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {self.n_bins}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def fit(
        cls, actions: np.ndarray, *, percentiles: tuple[float, float] = (1.0, 99.0), n_bins: int = 256
    ) -> "ActionCodec":
        """Bounds from a dataset of actions ``(N, arm_dims + 1)`` (the gripper column is ignored).

        A dim whose percentiles coincide (a constant dim) gets a ±1e-6 margin so it stays invertible.
        """
        arm = np.asarray(actions, dtype=np.float64).reshape(-1, np.shape(actions)[-1])[:, :-1]
        if arm.shape[0] == 0 or arm.shape[1] == 0:
            raise ValueError("fit needs at least one action with at least one arm dim")
        low, high = np.percentile(arm, percentiles, axis=0)
        flat = high - low < 1e-6
        return cls(tuple(np.where(flat, low - 1e-6, low)), tuple(np.where(flat, high + 1e-6, high)), n_bins)

    @classmethod
    def symmetric(cls, bound: float, arm_dims: int = 6, n_bins: int = 256) -> "ActionCodec":
        """``[-bound, bound]`` on every dim (RoboVLMs' CALVIN configs use 0.65) when no data is at hand."""
        return cls((-bound,) * arm_dims, (bound,) * arm_dims, n_bins)

    @property
    def arm_dims(self) -> int:
        return len(self.low)

    @property
    def bin_width(self) -> float:
        """Width of one bin in normalised units."""
        return 2.0 / self.n_bins

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Physical actions -> arm clipped to [-1, 1] and gripper ±1."""
        a = self._check(actions)
        low, high = np.asarray(self.low), np.asarray(self.high)
        arm = np.clip(2.0 * (a[..., :-1] - low) / (high - low) - 1.0, -1.0, 1.0)
        return np.concatenate([arm, self.gripper(a[..., -1:])], axis=-1).astype(np.float32)

    def denormalize(self, normalized: np.ndarray) -> np.ndarray:
        """Normalised arm (clipped to [-1, 1] first) -> physical units; gripper -> ±1."""
        n = self._check(normalized)
        low, high = np.asarray(self.low), np.asarray(self.high)
        arm = (np.clip(n[..., :-1], -1.0, 1.0) + 1.0) * 0.5 * (high - low) + low
        return np.concatenate([arm, self.gripper(n[..., -1:])], axis=-1).astype(np.float32)

    def to_bins(self, normalized_arm: np.ndarray) -> np.ndarray:
        """Normalised arm values -> bin indices in ``[0, n_bins)`` (values outside [-1, 1] clip)."""
        idx = np.floor((np.asarray(normalized_arm, dtype=np.float64) + 1.0) / self.bin_width)
        return np.clip(idx, 0, self.n_bins - 1).astype(np.int64)

    def from_bins(self, bins: np.ndarray) -> np.ndarray:
        """Bin indices -> bin centres in normalised units (at most half a bin width from the value)."""
        b = np.clip(np.asarray(bins), 0, self.n_bins - 1)
        return (-1.0 + (b + 0.5) * self.bin_width).astype(np.float32)

    @staticmethod
    def gripper(values: np.ndarray) -> np.ndarray:
        """Binary gripper decision: +1 for values >= 0 (a logit > 0 or an open command), else -1."""
        return np.where(np.asarray(values) >= 0, 1.0, -1.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"format": CODEC_FORMAT, "low": list(self.low), "high": list(self.high), "n_bins": self.n_bins}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ActionCodec":
        if data.get("format") != CODEC_FORMAT:
            raise ValueError(
                f"unsupported action codec format {data.get('format')!r} (this vlaeval reads {CODEC_FORMAT})"
            )
        return cls(tuple(data["low"]), tuple(data["high"]), int(data["n_bins"]))

    def _check(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape[-1:] != (self.arm_dims + 1,):
            raise ValueError(f"expected actions of shape (..., {self.arm_dims + 1}), got {a.shape}")
        return a
