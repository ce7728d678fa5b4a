"""Demonstrations as a LeRobotDataset (format v3.0), written through LeRobot's own API.

The episodes are the ones the HDF5 recorder writes (:class:`vlaeval.training.demos.Demo`), so an
existing dataset converts with one command (``vlaeval convert-dataset DIR --to lerobot --out
DIR2``) and ``vlaeval record ... --format lerobot`` writes one directly.  Every byte goes through
``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``, so the result is
whatever LeRobot 0.6 itself writes and ``LeRobotDataset(repo_id, root=DIR)`` and ``lerobot-train
--dataset.root=DIR`` read it unchanged.

* Features, named the LeRobot way: ``observation.images.static`` / ``observation.images.gripper``
  (the recorded cameras), ``observation.state`` (CALVIN's 15-d ``robot_obs``), ``action``; each
  frame's ``task`` is the instruction of the subtask it belongs to.  ``fps`` is the suite's
  control rate.
* Frames are stored as PNG images (``use_videos=False``), not as video: lossless, so a policy
  trains on exactly the pixels it will see in evaluation, and neither writing nor training needs
  a video codec (LeRobot's AV1 encoding is slow on a CPU, and its torchcodec decoder needs the
  system's FFmpeg libraries).  On CALVIN's frames it is even smaller than the HDF5 layout's lzf
  (README, "LeRobot").
* The ``action`` feature carries a ``vlaeval`` block (:mod:`vlaeval.agents.lerobot.meta`): action
  type, rotation format, gripper polarity and normalisation, which the ``lerobot`` agent turns
  into its :class:`~vlaeval.conventions.AgentSpec`.
* Only successful rollouts are written by default (the HDF5 file's ``mask/successful``):
  ``lerobot-train`` clones every episode of a dataset, and the HDF5 layout's failed rollouts are
  kept to be flagged, never cloned.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from vlaeval.agents.lerobot.meta import FEATURES, ROBOT_OBS_NAMES, ActionConventions, action_feature, require_lerobot
from vlaeval.errors import VlaevalError
from vlaeval.training.demos import Demo

if TYPE_CHECKING:
    from vlaeval.training.record import RecordConfig

IMAGE_NAMES = ("height", "width", "channels")
#: Threads that PNG-encode frames while the next ones are added (LeRobot's async image writer).
IMAGE_WRITER_THREADS = 2


def frame_features(demo: Demo, conventions: ActionConventions) -> dict[str, dict[str, Any]]:
    """LeRobot's feature dict for the observations a demo holds (those :data:`FEATURES` names)."""
    features: dict[str, dict[str, Any]] = {}
    for key, name in FEATURES.items():
        if key not in demo.obs:
            continue
        shape = tuple(int(n) for n in demo.obs[key].shape[1:])
        if key == "robot_obs":
            features[name] = {"dtype": "float32", "shape": shape, "names": list(ROBOT_OBS_NAMES)}
        else:
            features[name] = {"dtype": "image", "shape": shape, "names": list(IMAGE_NAMES)}
    if not features:
        raise VlaevalError(f"the demos hold none of {', '.join(FEATURES)}; record with --cameras rgb_static (or rgb_gripper)")
    features["action"] = action_feature(int(demo.actions.shape[1]), conventions)
    return features


def write_lerobot(demos: Iterable[Demo], out: str | os.PathLike[str], *, fps: int, conventions: ActionConventions,
                  attach: Sequence[Path] = (), total: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write ``demos`` as a new LeRobotDataset at ``out``; returns episode and frame counts.

    Written into a sibling temporary directory and renamed at the end, so ``out`` is either a
    complete dataset or absent; ``attach`` files (``record.json``: how the demos were recorded)
    are copied into it before.  Empty demos (an agent that failed at its first step) are skipped:
    LeRobot has no empty episodes.  ``total`` (the number of demos) sizes the progress bar.
    """
    require_lerobot("writing a LeRobotDataset")
    import datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from tqdm.auto import tqdm

    target = Path(out)
    if target.exists():
        raise VlaevalError(f"{target} already exists; pick another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    root = staging / "dataset"  # LeRobot creates its root itself and refuses an existing one
    dataset = None
    # save_episode runs Hugging Face datasets' map once per episode, each with its own bar: one
    # bar over the episodes says the same in one line.
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        bar = tqdm(demos, total=total, unit="episode", desc="lerobot", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        for demo in bar:
            if len(demo) == 0:
                continue
            if dataset is None:
                features = frame_features(demo, conventions)
                dataset = LeRobotDataset.create(f"vlaeval/{target.name}", fps, features, root=root,
                                                use_videos=False, image_writer_threads=IMAGE_WRITER_THREADS)
            columns = {name: np.asarray(demo.obs[key], dtype=np.float32 if features[name]["dtype"] == "float32" else None)
                       for key, name in FEATURES.items() if name in features}
            columns["action"] = np.asarray(demo.actions, dtype=np.float32)
            for t in range(len(demo)):
                dataset.add_frame({**{name: column[t] for name, column in columns.items()},
                                   "task": demo.instructions[int(demo.subtask[t])]})
            dataset.save_episode()
        if dataset is None:
            raise VlaevalError("no demonstration to write (every selected demo is empty)")
        dataset.finalize()
        for path in attach:
            shutil.copyfile(path, root / path.name)
        os.replace(root, target)
        return {"episodes": dataset.meta.total_episodes, "frames": dataset.meta.total_frames}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()


def convert_dataset(data: str | os.PathLike[str], out: str | os.PathLike[str], *, split: str = "successful",
                    progress: bool = True) -> dict[str, Any]:
    """Convert a recorded HDF5 dataset (``DATA/demos.hdf5``) into a LeRobotDataset at ``out``.

    Args:
        split: the HDF5 filter key to convert (``successful``, ``train``, ``valid``, ``all``).
    """
    import h5py

    from vlaeval.plugins.manager import suite_spec
    from vlaeval.training.demos import demo_path, read_demo, read_mask

    require_lerobot("writing a LeRobotDataset")
    started = time.perf_counter()
    source = demo_path(data)
    with h5py.File(source, "r") as f:
        header = json.loads(f["data"].attrs.get("vlaeval", "{}"))
        if "suite" not in header or "action_type" not in header:
            raise VlaevalError(f"{source} has no vlaeval header (suite, action_type); was it recorded by `vlaeval record`?")
        spec = suite_spec(header["suite"])
        conventions = ActionConventions(action_type=header["action_type"], rotation=spec.conventions.rotation,
                                        gripper=spec.conventions.gripper, suite=spec.name)
        names = read_mask(f, split)
        if not names:
            raise VlaevalError(f"{source} has no demos in {split!r}")
        demos = (read_demo(f["data"][name], [k for k in FEATURES if k in f["data"][name]["obs"]]) for name in names)
        provenance = [p for p in (source.parent / "record.json",) if p.is_file()]
        summary = write_lerobot(demos, out, fps=control_rate(spec.name), conventions=conventions, attach=provenance,
                                total=len(names), progress=progress)
    return {**summary, "split": split, "seconds": round(time.perf_counter() - started, 1)}


def control_rate(suite: str) -> int:
    """The suite's control rate in Hz, LeRobot's ``fps``: its registered environment's ``render_fps``."""
    from vlaeval.envs.suite import registered_env_metadata
    from vlaeval.plugins.manager import suite_spec

    fps = registered_env_metadata(suite_spec(suite)).get("render_fps")
    if not fps:
        raise VlaevalError(f"suite {suite!r} declares no control rate (its environment's metadata has no render_fps)")
    return int(fps)


def record_lerobot(config: RecordConfig, out: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Any]:
    """``vlaeval record --format lerobot``: record to HDF5 in a temporary directory, then convert.

    A recorder that wrote LeRobot frames as the episodes play would save the temporary copy; this
    keeps one recording loop (:func:`vlaeval.training.record.record`) for both formats.
    """
    from vlaeval.training.record import record

    require_lerobot("--format lerobot")  # before minutes of recording, not after
    target = Path(out)
    if target.exists():
        raise VlaevalError(f"{target} already exists; pick another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.hdf5-", dir=target.parent))
    try:
        summary = record(config, scratch, progress=progress)
        converted = convert_dataset(scratch, target, progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**summary, "lerobot_episodes": converted["episodes"], "lerobot_frames": converted["frames"],
            "seconds": round(summary["seconds"] + converted["seconds"], 1)}
