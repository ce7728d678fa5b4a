"""Synthetic demonstration datasets (no simulator) for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

TASKS = ("open_drawer", "turn_on_led", "move_slider_left")


def make_dataset(root: Path, lengths=((5, 4), (3,), (6,), (4,)), size: int = 16, seed: int = 0, failed: int = 0,
                 valid_fraction: float = 0.25) -> Path:
    """A robomimic-layout file: one demo per entry of ``lengths`` (subtask segment lengths).

    Frames encode (demo, step) in their pixels so tests can tell windows apart; actions are
    ``[demo, step, ...]`` patterns with a gripper that flips sign per subtask.
    """
    import h5py

    from vlaeval.training.demos import Demo, write_demo, write_masks

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "demos.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for d, segs in enumerate(lengths):
            n = sum(segs)
            frames = np.zeros((n, size, size, 3), dtype=np.uint8)
            frames[:, 0, 0, 0] = d + 1
            frames[:, 0, 0, 1] = np.arange(n) + 1
            actions = rng.uniform(-1, 1, (n, 7)).astype(np.float32)
            sub = np.concatenate([np.full(s, k) for k, s in enumerate(segs)])
            actions[:, -1] = np.where(sub % 2 == 0, 1.0, -1.0)
            tasks = tuple(TASKS[(d + k) % len(TASKS)] for k in range(len(segs)))
            ok = tuple([True] * len(segs)) if d >= failed else tuple([True] * (len(segs) - 1) + [False])
            demo = Demo(actions=actions, obs={"rgb_static": frames, "robot_obs": rng.normal(size=(n, 15)),
                                              "scene_obs": rng.normal(size=(n, 24))},
                        rewards=np.zeros(n, np.float32), subtask=sub, tasks=tasks,
                        instructions=tuple(t.replace("_", " ") for t in tasks), subtask_success=ok, scene="A", seed=d)
            write_demo(data.create_group(f"demo_{d}"), demo)
            total += n
        data.attrs["total"] = total
        write_masks(f, valid_fraction, seed)
    return root
