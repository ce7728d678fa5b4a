"""Demonstration datasets on disk: HDF5 in the robomimic layout.

Why robomimic's HDF5 layout: one self-describing file that robomimic, LIBERO / RoboCasa tooling
and plain ``h5py`` read directly; random access to any window without decoding videos (LeRobot's
layout stores frames as MP4 and needs a video decoder and its own package); and robomimic's
*filter keys* (``mask/<name>``) are exactly how held-out and failed rollouts are flagged::

    demos.hdf5
      data/                         attrs: total, env_args (JSON), vlaeval (JSON: suite, agent, cameras, ...)
        demo_0/                     attrs: num_samples, success, scene, seed, tasks, instructions,
                                           subtask_success (JSON lists)
          actions      (T, 7)  float32   the action the agent took at step t
          obs/rgb_static (T, H, W, 3) uint8   (one dataset per recorded camera, lzf-compressed)
          obs/robot_obs  (T, 15) float64
          obs/scene_obs  (T, 24) float64
          states       (T, 39) float64   robot_obs ++ scene_obs (the simulator state)
          rewards      (T,)    float32   1 where a subtask was solved by that step
          dones        (T,)    uint8     1 at the last step of the rollout
          subtask      (T,)    int16     index of the chain subtask the step belongs to
      mask/train, mask/valid        demo names (robomimic filter keys; valid = held out)
      mask/successful, mask/failed  failed rollouts are kept and flagged here and by ``success``

Observations at row ``t`` are what the agent saw before taking ``actions[t]``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from vlaeval.errors import VlaevalError

DEMO_FILE = "demos.hdf5"
STATS_FILE = "stats.json"
FORMAT = "vlaeval-robomimic-1"


def demo_path(data: str | os.PathLike[str]) -> Path:
    """The HDF5 file of a dataset given as a directory (``DATA/demos.hdf5``) or the file itself."""
    p = Path(data)
    if p.is_dir():
        p = p / DEMO_FILE
    if not p.is_file():
        raise VlaevalError(f"no demonstration file at {p}; record one with `vlaeval record ... --out DIR`")
    return p


@dataclass(frozen=True)
class Demo:
    """One recorded rollout, in memory."""

    actions: np.ndarray  # (T, A) float32
    obs: Mapping[str, np.ndarray]  # key -> (T, ...)
    rewards: np.ndarray  # (T,)
    subtask: np.ndarray  # (T,) int
    tasks: tuple[str, ...]
    instructions: tuple[str, ...]
    subtask_success: tuple[bool, ...]
    scene: str = ""
    seed: int = 0

    @property
    def success(self) -> bool:
        """The whole chain was solved."""
        return bool(self.subtask_success) and all(self.subtask_success) and len(self.subtask_success) == len(self.tasks)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def write_demo(group: Any, demo: Demo) -> None:
    """Write one rollout into an (empty) HDF5 group in the robomimic layout."""
    n = len(demo)
    group.attrs["num_samples"] = n
    group.attrs["success"] = demo.success
    group.attrs["scene"] = demo.scene
    group.attrs["seed"] = int(demo.seed)
    group.attrs["tasks"] = json.dumps(list(demo.tasks))
    group.attrs["instructions"] = json.dumps(list(demo.instructions))
    group.attrs["subtask_success"] = json.dumps([bool(s) for s in demo.subtask_success])
    group.create_dataset("actions", data=np.asarray(demo.actions, dtype=np.float32))
    obs = group.create_group("obs")
    for key, value in demo.obs.items():
        value = np.asarray(value)
        if value.dtype == np.uint8 and value.ndim == 4:  # images: one chunk per frame, fast lzf
            obs.create_dataset(key, data=value, chunks=(1, *value.shape[1:]), compression="lzf")
        else:
            obs.create_dataset(key, data=value)
    if "robot_obs" in demo.obs and "scene_obs" in demo.obs:
        group.create_dataset("states", data=np.concatenate([demo.obs["robot_obs"], demo.obs["scene_obs"]], axis=-1))
    group.create_dataset("rewards", data=np.asarray(demo.rewards, dtype=np.float32))
    dones = np.zeros(n, dtype=np.uint8)
    if n:
        dones[-1] = 1
    group.create_dataset("dones", data=dones)
    group.create_dataset("subtask", data=np.asarray(demo.subtask, dtype=np.int16))


def write_masks(f: Any, valid_fraction: float, seed: int = 0) -> dict[str, list[str]]:
    """(Re)write robomimic filter keys: train/valid split of successful demos, successful, failed.

    Failed rollouts go in neither train nor valid (they are flagged, not used for cloning).
    """
    names = sorted(f["data"].keys(), key=lambda k: int(k.split("_")[-1]))
    ok = [n for n in names if bool(f["data"][n].attrs["success"])]
    bad = [n for n in names if n not in ok]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ok))
    n_valid = int(round(valid_fraction * len(ok)))
    if valid_fraction > 0 and len(ok) > 1:
        n_valid = max(1, min(n_valid, len(ok) - 1))
    valid = sorted((ok[i] for i in order[:n_valid]), key=lambda k: int(k.split("_")[-1]))
    train = [n for n in ok if n not in set(valid)]
    masks = {"train": train, "valid": valid, "successful": ok, "failed": bad}
    if "mask" in f:
        del f["mask"]
    group = f.create_group("mask")
    for key, values in masks.items():
        group.create_dataset(key, data=np.array([v.encode() for v in values], dtype="S32"))
    return masks


def read_mask(f: Any, key: str) -> list[str]:
    """Demo names of a filter key (``all`` = every demo)."""
    if key == "all":
        return sorted(f["data"].keys(), key=lambda k: int(k.split("_")[-1]))
    if "mask" not in f or key not in f["mask"]:
        available = ", ".join(["all", *(f["mask"].keys() if "mask" in f else [])])
        raise VlaevalError(f"the dataset has no filter key {key!r}; available: {available}")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in f["mask"][key][()]]


def read_demo(group: Any, keys: Iterable[str] | None = None) -> Demo:
    """Load one demo group (all observation keys, or only ``keys``)."""
    obs_keys = list(group["obs"].keys()) if keys is None else list(keys)
    return Demo(
        actions=group["actions"][()],
        obs={k: group["obs"][k][()] for k in obs_keys},
        rewards=group["rewards"][()],
        subtask=group["subtask"][()].astype(np.int64),
        tasks=tuple(json.loads(group.attrs["tasks"])),
        instructions=tuple(json.loads(group.attrs["instructions"])),
        subtask_success=tuple(json.loads(group.attrs["subtask_success"])),
        scene=str(group.attrs.get("scene", "")),
        seed=int(group.attrs.get("seed", 0)),
    )


def dataset_info(data: str | os.PathLike[str]) -> dict[str, Any]:
    """Header of a dataset: the ``vlaeval`` attrs, demo counts per filter key, steps."""
    import h5py

    with h5py.File(demo_path(data), "r") as f:
        info = json.loads(f["data"].attrs.get("vlaeval", "{}"))
        info["demos"] = len(f["data"])
        info["steps"] = int(f["data"].attrs.get("total", 0))
        if "mask" in f:
            info["masks"] = {k: len(f["mask"][k]) for k in f["mask"]}
    return info


def merge_shards(shards: Sequence[Path], out: Path, header: Mapping[str, Any], valid_fraction: float, seed: int) -> dict[str, Any]:
    """Copy the demos of per-worker shard files, in order, into one robomimic file."""
    import h5py

    tmp = out.with_suffix(".partial.hdf5")
    total = 0
    with h5py.File(tmp, "w") as dst:
        data = dst.create_group("data")
        k = 0
        for shard in shards:
            with h5py.File(shard, "r") as src:
                for name in sorted(src["data"].keys(), key=lambda s: int(s.split("_")[-1])):
                    src.copy(src["data"][name], data, name=f"demo_{k}")
                    total += int(src["data"][name].attrs["num_samples"])
                    k += 1
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(header.get("env_args", {}))
        data.attrs["vlaeval"] = json.dumps({"format": FORMAT, **{k: v for k, v in header.items() if k != "env_args"}})
        masks = write_masks(dst, valid_fraction, seed)
    os.replace(tmp, out)
    return {"demos": k, "steps": total, **{f"mask/{m}": len(v) for m, v in masks.items()}}
