"""Demonstration files, training windows with padding, and normalisation statistics."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.training.helpers import make_dataset
from vlaeval.agents.codec import ActionCodec
from vlaeval.training.dataset import WindowDataset, collate, load_or_compute_stats, stats_path
from vlaeval.training.demos import read_demo, read_mask


def test_robomimic_layout_and_failed_demos_are_flagged(tmp_path) -> None:
    root = make_dataset(tmp_path / "d", failed=1)
    with h5py.File(root / "demos.hdf5", "r") as f:
        g = f["data/demo_0"]
        assert g.attrs["num_samples"] == 9 and not g.attrs["success"]
        assert g["actions"].shape == (9, 7) and g["obs/rgb_static"].shape == (9, 16, 16, 3)
        assert g["states"].shape == (9, 39) and g["dones"][-1] == 1 and g["dones"][:-1].sum() == 0
        assert read_mask(f, "failed") == ["demo_0"]
        assert "demo_0" not in read_mask(f, "train") + read_mask(f, "valid")
        assert sorted(read_mask(f, "train") + read_mask(f, "valid")) == ["demo_1", "demo_2", "demo_3"]
        demo = read_demo(g)
        assert demo.tasks == ("open_drawer", "turn_on_led") and demo.subtask_success == (True, False)


def test_windows_pad_at_subtask_starts_and_chunks_stop_at_segment_ends(tmp_path) -> None:
    root = make_dataset(tmp_path / "d", valid_fraction=0.0)
    codec = ActionCodec.symmetric(1.0)
    ds = WindowDataset(root, split="all", window=3, chunk=2, codec=codec)
    assert len(ds) == 9 + 3 + 6 + 4
    # demo_0 step 0: only the current step is real
    item = ds[0]
    assert item["mask"].tolist() == [0, 0, 1]
    assert item["obs/rgb_static"][:2].max() == 0 and item["obs/rgb_static"][2, 0, 0, 1] == 1
    # demo_0 step 6 is step 1 of subtask 1 (segments 5 + 4): history must not reach into subtask 0
    item = ds[6]
    assert item["mask"].tolist() == [0, 1, 1]
    assert item["obs/rgb_static"][1:, 0, 0, 1].tolist() == [6, 7]
    # chunks: positions valid only where the target lies inside the same segment
    item = ds[3]  # step 3 of a 5-step segment; window covers steps 1..3
    assert item["valid"].tolist() == [[1, 1], [1, 1], [1, 1]]
    item = ds[4]  # last step of the segment: its chunk has one real action
    assert item["valid"][-1].tolist() == [1, 0]
    raw = ds.raw_actions
    np.testing.assert_allclose(item["actions"][-1, 0], codec.normalize(raw[4]), atol=1e-6)
    assert item["actions"][-1, 1].tolist() == [0.0] * 7
    assert item["task"] == "open_drawer" and isinstance(item["instruction"], str)
    batch = collate([ds[0], ds[6]])
    assert batch["obs/rgb_static"].shape == (2, 3, 16, 16, 3) and batch["actions"].shape == (2, 3, 2, 7)
    assert len(batch["instruction"]) == 2


def test_state_windows_pad_like_frames_and_are_not_resized(tmp_path) -> None:
    import h5py

    root = make_dataset(tmp_path / "d", valid_fraction=0.0)
    ds = WindowDataset(root, split="all", window=3, chunk=2, keys=("rgb_static", "robot_obs"), image_size=8,
                       codec=ActionCodec.symmetric(1.0))
    with h5py.File(root / "demos.hdf5") as f:
        recorded = f["data/demo_0/obs/robot_obs"][()]
    item = ds[6]  # step 1 of demo_0's second subtask: one padded position
    assert item["obs/rgb_static"].shape == (3, 8, 8, 3) and item["obs/robot_obs"].shape == (3, 15)
    assert item["obs/robot_obs"][0].tolist() == [0.0] * 15
    np.testing.assert_array_equal(item["obs/robot_obs"][1:], recorded[5:7])


def test_instructions_are_sampled_from_the_training_paraphrases(tmp_path) -> None:
    from vlaeval.envs.calvin.language import TRAIN_INSTRUCTIONS

    ds = WindowDataset(make_dataset(tmp_path / "d"), split="all", window=2, chunk=1, codec=ActionCodec.symmetric(1.0))
    seen = {ds[0]["instruction"] for _ in range(40)}
    assert seen <= set(TRAIN_INSTRUCTIONS["open_drawer"]) and len(seen) > 1


def test_stats_are_computed_once_saved_and_round_trip(tmp_path) -> None:
    root = make_dataset(tmp_path / "d")
    codec, stats = load_or_compute_stats(root)
    path = stats_path(root)
    assert path.is_file() and json.loads(path.read_text())["codec"] == codec.to_dict()
    mtime = path.stat().st_mtime_ns
    again, _ = load_or_compute_stats(root)
    assert again == codec and path.stat().st_mtime_ns == mtime  # read back, not recomputed
    ds = WindowDataset(root, split="train", window=2, chunk=1)
    assert ds.codec == codec
    inside = np.clip(ds.raw_actions, np.r_[codec.low, -1], np.r_[codec.high, 1])
    np.testing.assert_allclose(codec.denormalize(codec.normalize(inside)), inside, atol=1e-5)
    assert np.abs(ds.actions[:, :-1]).max() <= 1.0
    assert len(stats["mean"]) == 7 and stats["split"] == "train"


def test_resized_frame_cache_matches_the_network_resize(tmp_path) -> None:
    import torch
    import torch.nn.functional as F

    from vlaeval.training.dataset import resize_frames

    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    small = resize_frames(frames, 12)
    x = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(12, 12), mode="bilinear",
                      align_corners=False, antialias=False).permute(0, 2, 3, 1).numpy()
    assert small.shape == (3, 12, 12, 3) and np.abs(small - x).max() <= 0.5 + 1e-4


def test_missing_split_is_a_user_error(tmp_path) -> None:
    from vlaeval.errors import VlaevalError

    with pytest.raises(VlaevalError, match="no filter key 'nope'"):
        WindowDataset(make_dataset(tmp_path / "d"), split="nope", codec=ActionCodec.symmetric(1.0))


def test_random_shift_translates_a_whole_window_by_one_offset() -> None:
    from vlaeval.training.dataset import random_shift

    frames = np.random.default_rng(0).integers(0, 255, (3, 20, 20, 3), dtype=np.uint8)
    shifted = random_shift(frames, 4, np.random.default_rng(1))
    assert shifted.shape == frames.shape and shifted.dtype == np.uint8
    padded = np.pad(frames, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="edge")
    offsets = [(dy, dx) for dy in range(9) for dx in range(9) if np.array_equal(padded[:, dy:dy + 20, dx:dx + 20], shifted)]
    assert len(offsets) == 1  # one crop of the padded window, the same for every frame
    draws = {random_shift(frames, 4, np.random.default_rng(s)).tobytes() for s in range(20)}
    assert len(draws) > 5  # the offset varies between items


def test_shifted_windows_keep_padding_empty_and_leave_states_alone(tmp_path) -> None:
    data, codec = make_dataset(tmp_path / "d", valid_fraction=0.0), ActionCodec.symmetric(1.0)
    plain = WindowDataset(data, split="all", window=4, chunk=2, keys=("rgb_static", "robot_obs"), codec=codec, seed=0)
    shifted = WindowDataset(data, split="all", window=4, chunk=2, keys=("rgb_static", "robot_obs"), codec=codec, seed=0, shift=2)
    item_p, item_s = plain[1], shifted[1]
    assert not item_s["obs/rgb_static"][~item_s["mask"].astype(bool)].any()
    np.testing.assert_array_equal(item_p["obs/robot_obs"], item_s["obs/robot_obs"])
    np.testing.assert_array_equal(item_p["actions"], item_s["actions"])
