"""What the harness observes of a slot: the robot's state, the current instruction and, when
rendering, the camera image (with visual matching's greenscreen background).

Read for many slots at once: each batched simulator tensor (TCP pose, joints, camera) is indexed
and copied off the device once per step for all slots, not once per slot.  No simulator import:
the scene is passed in.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces

from vlaeval.envs.simpler.catalogue import MAX_INSTRUCTION_LENGTH
from vlaeval.envs.simpler.overlay import composite
from vlaeval.envs.simpler.spec import TASK_INFO


def obs_mode(render: bool, overlay: bool) -> str:
    """ManiSkill's ``obs_mode``: the greenscreen needs segmentation, state-only runs no camera."""
    return ("rgb+segmentation" if overlay else "rgb") if render else "none"


def observation_space(render: bool, image_size: tuple[int, int]) -> spaces.Dict:
    obs_spaces = {
        "robot_state": spaces.Box(-10.0, 10.0, (8,), dtype=np.float32),
        "language": spaces.Text(MAX_INSTRUCTION_LENGTH, min_length=0, charset=string.printable),
    }
    if render:
        h, w = image_size
        obs_spaces["rgb"] = spaces.Box(0, 255, (h, w, 3), dtype=np.uint8)
    return spaces.Dict(obs_spaces)


def foreground_ids(env: Any, slot: int, task: str) -> set[int]:
    """Segmentation ids the greenscreen keeps in ``slot``: the robot, the task's objects and, in
    drawer tasks, the cabinet (SimplerEnv keeps the robot and every object the task is about)."""
    active = env.episodes[slot].active
    ids = {int(link.per_scene_id[slot]) for link in env.agent.robot.links}
    names = {v for k, v in active.items() if k in ("source", "target") and isinstance(v, str)}
    names |= set(active.get("objects", ()))
    for n in names:
        ids.add(int(env.actor(n).per_scene_id[slot]))
    if TASK_INFO[task].family == "drawer":
        ids |= {int(link.per_scene_id[slot]) for link in env.cabinet.links}
    return ids


def read_observations(env: Any, obs: Any, slots: Sequence[int], languages: Sequence[str], *, render: bool,
                      background: np.ndarray | None, keep_ids: Sequence[set[int]]) -> dict[int, dict[str, Any]]:
    """The observations of ``slots`` (``languages``: their instructions, in the same order) from
    ManiSkill's batched ``obs``; with a ``background``, pixels outside ``keep_ids[slot]`` show it."""
    rows = list(slots)
    tcp = env.agent.tcp.pose
    qpos = env.agent.robot.get_qpos()[rows].cpu().numpy()
    states = np.concatenate([tcp.p[rows].cpu().numpy(), tcp.q[rows].cpu().numpy(),
                             (qpos[:, -1] + qpos[:, -2])[:, None]], axis=1).astype(np.float32)
    if render:
        cam = obs["sensor_data"]["camera"]
        rgbs = cam["rgb"][rows].cpu().numpy()
        segmentations = cam["segmentation"][rows].cpu().numpy() if background is not None else None
    out: dict[int, dict[str, Any]] = {}
    for k, slot in enumerate(rows):
        out[slot] = {"robot_state": states[k], "language": languages[k]}
        if render:
            out[slot]["rgb"] = (composite(rgbs[k], segmentations[k], keep_ids[slot], background)
                                if background is not None else rgbs[k])
    return out
