"""Rollout videos (``--video N``): filmed beside the rollout, never changing its results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vlaeval
from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.rollout import Played, SubtaskResult
from vlaeval.evaluators.video import BANNER, HOLD_SECONDS, VideoPlan, VideoRecorder, episodes_to_record
from vlaeval.results.html import render
from vlaeval.results.report import build_report
from vlaeval.results.store import read_manifest

imageio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("pybullet")

STABLE = ["agent", "suite", "suite_version", "setting", "task", "episode", "position", "seed", "success", "steps", "error", "instruction"]


def test_filming_changes_no_result_and_the_report_links_decodable_videos(tmp_path: Path) -> None:
    plain = vlaeval.evaluate("expert", "calvin", episodes=2, out=tmp_path, run_id="plain", progress=False)
    filmed = vlaeval.evaluate("expert", "calvin", episodes=2, out=tmp_path, run_id="filmed", progress=False, video=1)
    pd.testing.assert_frame_equal(plain.results[STABLE], filmed.results[STABLE])
    assert not (plain.run_dir / "videos").exists()
    assert read_manifest(filmed.run_dir)["sessions"][-1]["video"] == 1

    page = render(build_report([filmed.run_dir]), tmp_path)
    files = sorted(p.name for p in (filmed.run_dir / "videos").iterdir())
    assert files == ["episode-0.mp4", "episode-1.mp4"]  # the two chains start with different tasks; no partial file is left
    for episode, steps in filmed.results.groupby("episode")["steps"].sum().items():
        assert f"src='filmed/videos/episode-{episode}.mp4'" in page
        shapes = [frame.shape for frame in imageio.get_reader(filmed.run_dir / "videos" / f"episode-{episode}.mp4")]
        # the scene after reset, one frame per env step, then the verdict held for a second at 30 Hz
        assert len(shapes) == 1 + steps + round(HOLD_SECONDS * 30)
        assert set(shapes) == {(200 + BANNER, 200, 3)}


def _episode(index: int, *tasks: str) -> EpisodeSpec:
    return EpisodeSpec(index=index, tasks=tasks, instructions=tasks, seed=index, options={})


def test_the_first_episodes_of_each_first_task_are_filmed() -> None:
    episodes = [_episode(0, "a", "b"), _episode(1, "b", "a"), _episode(2, "a", "c"), _episode(3, "a"), _episode(4, "b")]
    assert episodes_to_record(episodes, 1) == {0, 1}
    assert episodes_to_record(episodes, 2) == {0, 1, 2, 4}
    assert episodes_to_record(episodes, 0) == frozenset()


class _Env:
    metadata = {"render_fps": 10}
    render_mode = "rgb_array"

    def render(self) -> np.ndarray:
        return np.full((16, 24, 3), 90, np.uint8)


class _Pool:
    def unwrapped(self, slot: int) -> object:
        return _Env()


def test_a_clip_is_named_for_the_report_only_once_complete(tmp_path: Path) -> None:
    recorder = VideoRecorder(VideoPlan(str(tmp_path), frozenset({3, 4})), _Pool())
    videos = tmp_path / "videos"
    recorder.episode_started(0, _episode(2, "a"))  # not chosen: nothing happens
    assert recorder.clips == {}
    recorder.episode_started(0, _episode(3, "a"))
    recorder.subtask_started(0, 0)
    for success in (False, False, True):
        recorder.step(0, None, np.zeros(7, np.float32), success)
    assert not (videos / "episode-3.mp4").exists()
    recorder.episode_ended(Played(0, _episode(3, "a"), (SubtaskResult(0, True, 3, 0.1, None),)))
    shapes = [frame.shape for frame in imageio.get_reader(videos / "episode-3.mp4")]  # list(reader) trips on its infinite len()
    assert shapes == [(16 + BANNER, 24, 3)] * (1 + 3 + round(HOLD_SECONDS * 10))

    recorder.episode_started(1, _episode(4, "a"))  # a worker that stops mid-episode leaves no file behind
    recorder.subtask_started(1, 0)
    recorder.close()
    assert sorted(p.name for p in videos.iterdir()) == ["episode-3.mp4"]


def test_bad_video_arguments_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(VlaevalError, match="--video must be >= 0"):
        vlaeval.evaluate("expert", "calvin", episodes=1, out=tmp_path, progress=False, video=-1)
    with pytest.raises(VlaevalError, match="--video needs the environments in the worker's process"):
        vlaeval.evaluate("random", "calvin", episodes=2, out=tmp_path, progress=False, video=1, envs_per_worker=2, env_mode="async")
