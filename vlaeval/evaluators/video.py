"""Rollout videos (``vlaeval run --video N``): an :class:`~vlaeval.evaluators.rollout.Observer`
that films chosen episodes from the static camera into ``RUN_DIR/videos/episode-<index>.mp4``,
the name the HTML report links (:mod:`vlaeval.results.html`).

Frames come from the environment's own ``render()`` (Gymnasium's ``render_mode="rgb_array"``,
the static camera for CALVIN and SimplerEnv), never from the observation: the agent sees exactly
what it sees without ``--video`` and the env's construction options in the protocol fingerprint
stay the same, so recording cannot change a result.  Rendering happens only in recorded
episodes; the others pay one dictionary lookup per step.  The instruction of the current subtask
and the success so far are burned into a banner under each frame, so a clip shared on its own
still says what was asked and whether it was done.

Which episodes are filmed is decided once, by the driver, from the run's episode list
(:func:`episodes_to_record`), so it does not depend on how episodes are sharded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.rollout import Observer, Played
from vlaeval.results.html import VIDEOS_DIR

#: Banner height in pixels under each frame: two lines of the default bitmap font.
BANNER = 32
#: Frames the final verdict is held for at the end of a clip, in seconds.
HOLD_SECONDS = 1.0
WHITE, GREEN, RED = (255, 255, 255), (110, 230, 110), (255, 110, 110)


@dataclass(frozen=True)
class VideoPlan:
    """What a shard films: the run directory (its ``videos`` folder gets the clips) and the episode
    indices to record."""

    run_dir: str
    episodes: frozenset[int] = field(default_factory=frozenset)

    def only(self, episodes: Sequence[EpisodeSpec]) -> VideoPlan | None:
        """This plan restricted to ``episodes`` (a shard's), or None when none of them is filmed,
        so a shard without recorded episodes builds no recorder at all."""
        mine = self.episodes & {e.index for e in episodes}
        return VideoPlan(self.run_dir, mine) if mine else None


def episodes_to_record(episodes: Sequence[EpisodeSpec], per_task: int) -> frozenset[int]:
    """The first ``per_task`` episodes of each task, in protocol order; a chain counts for its first
    subtask's task, the one every chain of it plays (later subtasks are reached only by some)."""
    taken: dict[str, int] = {}
    chosen = set()
    for episode in episodes:
        task = episode.tasks[0]
        if taken.get(task, 0) < per_task:
            taken[task] = taken.get(task, 0) + 1
            chosen.add(episode.index)
    return frozenset(chosen)


def require_writer() -> None:
    """Fail before a run starts when the ``video`` extra is missing, not in a worker mid-run."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError as exc:
        raise VlaevalError(f"--video needs imageio and imageio-ffmpeg: pip install 'vlaeval[video]' ({exc})") from exc


class VideoRecorder(Observer):
    """Films the episodes of ``plan`` that ``pool`` plays (built with ``render_mode="rgb_array"``).

    One clip per recorded episode, opened at its first frame and streamed to the encoder, so a
    long chain never sits in memory; the clip is written under a hidden temporary name and renamed
    once complete, so a killed run leaves either a whole video or none under the report's name.
    """

    def __init__(self, plan: VideoPlan, pool: Any) -> None:
        self.plan = plan
        self.pool = pool
        self.clips: dict[int, _Clip] = {}

    def episode_started(self, slot: int, episode: EpisodeSpec) -> None:
        if episode.index in self.plan.episodes:
            self.clips[slot] = _Clip(Path(self.plan.run_dir) / VIDEOS_DIR, episode, self._env(slot))

    def subtask_started(self, slot: int, position: int) -> None:
        clip = self.clips.get(slot)
        if clip is not None:
            clip.subtask(position)

    def step(self, slot: int, observation: Any, action: np.ndarray, success: bool) -> None:
        clip = self.clips.get(slot)
        if clip is not None:
            clip.frame(success)

    def episode_ended(self, played: Played) -> None:
        clip = self.clips.pop(played.slot, None)
        if clip is not None:
            clip.finish(played)

    def close(self) -> None:
        """Drop the unfinished clips of a shard that stopped mid-episode (its temporary files)."""
        for clip in self.clips.values():
            clip.abandon()
        self.clips.clear()

    def _env(self, slot: int) -> Any:
        env = self.pool.unwrapped(slot)
        if env is None or getattr(env, "render_mode", None) != "rgb_array":
            raise VlaevalError("--video needs the environments in the worker's process: use --env-mode sync "
                               "(or --envs-per-worker 1)")
        return env


class _Clip:
    """One episode's video being written."""

    def __init__(self, folder: Path, episode: EpisodeSpec, env: Any) -> None:
        self.episode, self.env = episode, env
        self.path = folder / f"episode-{episode.index}.mp4"
        self.tmp = folder / f".episode-{episode.index}.partial.mp4"  # not a name the report links
        self.fps = float(getattr(env, "metadata", {}).get("render_fps") or 30)
        self.writer: Any = None
        self.position = 0
        self.solved = 0

    def subtask(self, position: int) -> None:
        self.position = position
        if self.writer is None:  # the scene as the agent first sees it
            self.append(self.env.render(), f"0/{len(self.episode.tasks)} solved", WHITE)

    def frame(self, success: bool) -> None:
        self.solved += success
        self.append(self.env.render(), f"{self.solved}/{len(self.episode.tasks)} solved", GREEN if success else WHITE)

    def append(self, image: np.ndarray, status: str, colour: tuple[int, int, int]) -> None:
        if self.writer is None:
            import imageio.v2 as imageio

            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            # macro_block_size 2: H.264 needs even sizes, not imageio's default multiples of 16 (no rescaling)
            self.writer = imageio.get_writer(self.tmp, fps=self.fps, codec="libx264",
                                             macro_block_size=2, quality=7)
        instruction = f"{self.position + 1}/{len(self.episode.tasks)} {self.episode.instructions[self.position]}"
        self.writer.append_data(_with_banner(image, instruction, status, colour))

    def finish(self, played: Played) -> None:
        if self.writer is None:  # the env never reset: nothing was filmed
            return
        error = next((r.error for r in played.subtasks if r.error), None)
        verdict = "SUCCESS" if played.success else f"FAILED{': ' + error if error else ''}"
        image = self.env.render()
        for _ in range(max(1, round(HOLD_SECONDS * self.fps))):
            self.append(image, verdict, GREEN if played.success else RED)
        self.writer.close()
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _with_banner(image: np.ndarray, instruction: str, status: str, colour: tuple[int, int, int]) -> np.ndarray:
    """``image`` (H, W, 3 uint8) above a banner with two lines of text, cut to the frame's width."""
    from PIL import Image, ImageDraw

    frame = np.asarray(image, dtype=np.uint8)[..., :3]
    height, width = frame.shape[:2]
    canvas = Image.new("RGB", (width + width % 2, height + height % 2 + BANNER), (0, 0, 0))
    canvas.paste(Image.fromarray(frame), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, height + 3), instruction, fill=(255, 255, 255))
    draw.text((4, height + 17), status, fill=colour)
    return np.asarray(canvas)
