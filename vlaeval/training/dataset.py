"""Training windows over a demonstration dataset, and its action normalisation statistics.

Item ``i`` is step ``t`` of some demo: the window of the ``H`` steps ending at ``t`` (left-padded
with empty steps before the start of the subtask segment, where the agent's history is cleared
too) and, for every window position ``j``, the chunk of the ``K`` actions from ``j`` on (marked
invalid past the end of the segment).  This is what :meth:`KosmosVLA.predict` outputs and
:func:`action_loss` supervises.  The instruction is drawn from the task's training paraphrases
each time an item is read, so the policy sees every wording of a task.

Normalisation statistics (the :class:`~vlaeval.agents.codec.ActionCodec` bounds, plus mean, std,
min and max per dim) are computed once from the training split and saved as ``stats.json``
next to ``demos.hdf5``; later runs read them, and every checkpoint embeds the codec.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlaeval.agents.codec import ActionCodec
from vlaeval.durable import write_text
from vlaeval.errors import VlaevalError
from vlaeval.training.demos import STATS_FILE, demo_path, read_mask


def stats_path(data: str | os.PathLike[str]) -> Path:
    return demo_path(data).parent / STATS_FILE


def compute_stats(data: str | os.PathLike[str], split: str = "train", n_bins: int = 256) -> dict[str, Any]:
    """Per-dim statistics of the actions of a split and the codec fitted to them."""
    import h5py

    with h5py.File(demo_path(data), "r") as f:
        names = read_mask(f, split)
        if not names:
            raise VlaevalError(f"split {split!r} of {data} holds no demos")
        actions = np.concatenate([f["data"][n]["actions"][()] for n in names]).astype(np.float64)
    codec = ActionCodec.fit(actions, n_bins=n_bins)
    return {
        "split": split, "demos": len(names), "actions": int(actions.shape[0]),
        "mean": actions.mean(0).tolist(), "std": actions.std(0).tolist(),
        "min": actions.min(0).tolist(), "max": actions.max(0).tolist(),
        "q01": np.percentile(actions, 1, axis=0).tolist(), "q99": np.percentile(actions, 99, axis=0).tolist(),
        "gripper_open_fraction": float((actions[:, -1] >= 0).mean()),
        "codec": codec.to_dict(),
    }


def load_or_compute_stats(data: str | os.PathLike[str], split: str = "train", n_bins: int = 256) -> tuple[ActionCodec, dict[str, Any]]:
    """The saved statistics (computed and written on first use)."""
    path = stats_path(data)
    if path.is_file():
        stats = json.loads(path.read_text())
        if stats.get("split") == split and stats.get("codec", {}).get("n_bins") == n_bins:
            return ActionCodec.from_dict(stats["codec"]), stats
    stats = compute_stats(data, split, n_bins)
    write_text(path, json.dumps(stats, indent=2) + "\n")
    return ActionCodec.from_dict(stats["codec"]), stats


@dataclass(frozen=True)
class _Segment:
    demo: int  # index into the loaded demos
    start: int
    end: int  # exclusive
    task: str


def resize_frames(frames: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3) with the network's own resize (bilinear,
    no antialias), so caching resized frames changes the input by at most rounding."""
    import torch
    import torch.nn.functional as F

    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for s in range(0, frames.shape[0], batch):
        x = torch.from_numpy(frames[s : s + batch]).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        out[s : s + batch] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


class WindowDataset:
    """A map-style PyTorch dataset of training windows (see the module docstring).

    Args:
        data: dataset directory or ``demos.hdf5``.
        split: robomimic filter key (``train``, ``valid``, ``all``, ...).
        window: history length H (the model's ``effective_window``).
        chunk: action chunk length K (the model's ``chunk_size``).
        keys: observation keys to return (camera frames, and e.g. ``robot_obs``); the model
            config's ``observation_keys``.
        image_size: resize camera frames once at load to this size (the network's input size) and keep
            them in memory; ``None`` keeps the recorded size.
        codec: action normalisation; default: the dataset's saved statistics (``stats.json``).
        instructions: ``train`` (sample the task's training paraphrases) or ``recorded`` (the
            instruction used while recording).
        seed: seeds the paraphrase sampling and the augmentation.
        shift: random-shift augmentation (DrQ's, which RoboVLMs-style CALVIN policies train with):
            each item's frames of each camera are edge-padded by ``shift`` pixels and cropped back at
            one random offset, the same for the whole window so motion between its frames is kept.
            Zero (the default) returns the frames as recorded.

    Items are dicts of numpy arrays: ``obs/<key>`` (H, ...) (frames (H, S, S, 3) uint8; padded
    steps are zeros), ``mask`` (H,),
    ``actions`` (H, K, A) normalised (arm in [-1, 1], gripper ±1), ``valid`` (H, K), plus
    ``instruction`` and ``task`` strings.
    """

    def __init__(self, data: str | os.PathLike[str], *, split: str = "train", window: int = 16, chunk: int = 10,
                 keys: Sequence[str] = ("rgb_static",), image_size: int | None = None, codec: ActionCodec | None = None,
                 instructions: str = "train", seed: int = 0, max_demos: int | None = None, shift: int = 0) -> None:
        import h5py

        from vlaeval.envs.calvin.language import TRAIN_INSTRUCTIONS

        if window < 1 or chunk < 1:
            raise ValueError("window and chunk must be positive")
        if shift < 0:
            raise ValueError("shift must be non-negative")
        self.window, self.chunk, self.keys, self.shift = window, chunk, tuple(keys), shift
        self.codec = codec if codec is not None else load_or_compute_stats(data)[0]
        self.instruction_mode = instructions
        self._paraphrases = TRAIN_INSTRUCTIONS
        self._rng = np.random.default_rng(seed)
        observations: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        actions: list[np.ndarray] = []
        self.segments: list[_Segment] = []
        self.recorded_instructions: list[str] = []
        offset = 0
        with h5py.File(demo_path(data), "r") as f:
            names = read_mask(f, split)[:max_demos]
            if not names:
                raise VlaevalError(f"split {split!r} of {data} holds no demos")
            for d, name in enumerate(names):
                g = f["data"][name]
                missing = [k for k in self.keys if k not in g["obs"]]
                if missing:
                    raise VlaevalError(f"{name} has no {', '.join(missing)}; record with --cameras {','.join(k for k in self.keys if k.startswith('rgb'))}")
                tasks = json.loads(g.attrs["tasks"])
                recorded = json.loads(g.attrs["instructions"])
                sub = g["subtask"][()].astype(np.int64)
                for k in self.keys:
                    raw = g["obs"][k][()]
                    is_image = raw.ndim == 4 and raw.dtype == np.uint8
                    observations[k].append(resize_frames(raw, image_size) if image_size and is_image else raw)
                actions.append(g["actions"][()])
                for k in np.unique(sub):
                    idx = np.flatnonzero(sub == k)
                    self.segments.append(_Segment(d, offset + int(idx[0]), offset + int(idx[-1]) + 1, tasks[int(k)]))
                    self.recorded_instructions.append(recorded[int(k)])
                offset += len(sub)
        self.observations = {k: np.concatenate(v) for k, v in observations.items()}
        self.raw_actions = np.concatenate(actions).astype(np.float32)
        self.actions = self.codec.normalize(self.raw_actions)
        self._step_segment = np.empty(offset, dtype=np.int64)
        for s, seg in enumerate(self.segments):
            self._step_segment[seg.start : seg.end] = s
        self.demos = len(names)

    def __len__(self) -> int:
        return int(self._step_segment.shape[0])

    def instruction(self, segment: int) -> str:
        seg = self.segments[segment]
        if self.instruction_mode == "recorded":
            return self.recorded_instructions[segment]
        options = self._paraphrases[seg.task]
        return options[int(self._rng.integers(len(options)))]

    def __getitem__(self, t: int) -> dict[str, Any]:
        s = int(self._step_segment[t])
        seg = self.segments[s]
        h, k = self.window, self.chunk
        pos = np.arange(t - h + 1, t + 1)
        mask = pos >= seg.start
        safe = np.where(mask, pos, t)
        item: dict[str, Any] = {}
        for key in self.keys:
            values = self.observations[key][safe]  # indexing with an array copies
            if self.shift and values.ndim == 4:
                values = random_shift(values, self.shift, self._rng)
            values[~mask] = 0
            item[f"obs/{key}"] = values
        targets = pos[:, None] + np.arange(k)[None]  # (H, K)
        valid = mask[:, None] & (targets < seg.end)
        acts = self.actions[np.where(valid, targets, t)]
        acts[~valid] = 0.0
        item["mask"] = mask.astype(np.float32)
        item["actions"] = acts.astype(np.float32)
        item["valid"] = valid.astype(np.float32)
        item["instruction"] = self.instruction(s)
        item["task"] = seg.task
        return item


def random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, C) frames edge-padded by ``pad`` and cropped back to (H, W) at one random offset."""
    dy, dx = rng.integers(0, 2 * pad + 1, size=2)
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[:, dy : dy + frames.shape[1], dx : dx + frames.shape[2]])


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack arrays into tensors; strings stay lists."""
    import torch

    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = values if isinstance(values[0], str) else torch.from_numpy(np.stack(values))
    return out
