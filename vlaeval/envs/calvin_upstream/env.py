"""``vlaeval/CalvinUpstream-v0``: upstream's ``PlayTableSimEnv`` behind the ``calvin`` suite's API.

Same observation keys (``robot_obs``, ``scene_obs``, ``language`` and the cameras the agent reads:
``rgb_static`` 200x200, ``rgb_gripper`` 84x84, ``depth_*``), action spaces and conventions (7
relative values in [-1, 1] or an absolute TCP pose, gripper binarised by sign as upstream's own
wrapper does), and the same chain bookkeeping as ``vlaeval/Calvin-v0``: ``info["is_success"]``
says whether the current subtask was solved by this step, judged by **upstream's** ``Tasks``
oracle exactly as upstream's evaluation judges it (``get_task_info_for_set(start_info, info,
{task})`` with ``start_info`` the info dict when the subtask started), and a success moves on to
the next subtask from the current state.

Every reset builds a fresh upstream env (about 0.1 s, a fraction of a second against a chain's
minutes) instead of resetting the previous one in place.  Upstream's own evaluation keeps one env
for all chains, so a chain there inherits pybullet's contact caches, the last gripper command and
the button's "previously pressed" memory from the chain before; here an episode depends only on
its options and the agent, hence the same results for any number of workers and after a resume.

One env per process (see :mod:`vlaeval.envs.calvin_upstream.build`): a second one, or one in a
process whose pybullet client 0 is taken, raises a :class:`~vlaeval.errors.VlaevalError`.

The privileged read-only API below is what the scripted expert reads (the same names as
``CalvinEnv``'s); it answers from upstream's info dict of the last step (block poses and contacts,
desk joints, lights: :mod:`vlaeval.envs.calvin_upstream.info`), upstream's robot (the controller
target relative actions accumulate into) and, for points on the desk, upstream's link frames.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium
import numpy as np

from vlaeval.envs.calvin.bullet import pb
from vlaeval.envs.calvin.chain import ChainProgress
from vlaeval.envs.calvin.env import CONTROL_HZ, calvin_spaces, checked_cameras
from vlaeval.envs.calvin.initial_state import ROBOT_OBS_SIZE, SCENE_OBS_SIZE
from vlaeval.envs.calvin.predicates import (
    DESK_BUTTON,
    DESK_DRAWER,
    DESK_LED,
    DESK_LIGHTBULB,
    DESK_PLANK,
    DESK_SLIDE,
    DESK_SWITCH,
    Snapshot,
)
from vlaeval.envs.calvin.robot import binarise_gripper
from vlaeval.envs.calvin.scene import DESK_JOINTS, INCLINE, SCENES
from vlaeval.envs.calvin_upstream import info as upstream_info
from vlaeval.envs.calvin_upstream.build import close_upstream_env, make_upstream_env

#: Upstream's static and gripper cameras render at these sizes (conf/cameras/cameras/*.yaml).
CAMERA_SIZES = {"static": 200, "gripper": 84}

_LEVEL = (0.0, 0.0, 0.0)
_INCLINE = (INCLINE, 0.0, 0.0)  # x along world x, y up the 60-degree cabinet front, z out of it
#: The expert's desk points on upstream's desk: name -> (link, offset from the link's frame origin
#: in the point's frame, the point's frame as Euler xyz), measured on upstream's collision meshes
#: (calvin_table_D, scaled 0.8).  The frames are those of the ``calvin`` suite's desk links, so a
#: planner reads the same axes on both desks (upstream's own link frames are turned by 90 or 150
#: degrees about x, and its switch frame sits elsewhere).  Where upstream's parts differ from the
#: ``calvin`` suite's boxes, the point keeps its meaning on upstream's part:
#: ``switch``: the lever stands 6.4 cm out of the cabinet front and is 3.2 cm thick along it (the
#: ``calvin`` suite's lies flat, 3.2 cm out and 6.4 cm along); the planner takes the point for the
#: middle of a 3.2 cm thick switch's outer face and puts its fingertips 1.2 cm below it, so the
#: point is 1.2 cm out from the lever's mid-height and the fingertips push the lever's side there.
#: ``slide_handle``: a bar 4.9-8.0 cm out of the door's frame on two posts; the point is on the bar.
#: ``drawer_handle``: a bar 4.2 cm tall protruding 8 cm; the point is 1 cm below the middle of its top.
UPSTREAM_DESK_POINTS: dict[str, tuple[int, tuple[float, float, float], tuple[float, float, float]]] = {
    "button": (DESK_BUTTON, (0.0, 0.0, 0.024), _LEVEL),  # top of the cap
    "switch": (DESK_SWITCH, (0.0, 0.008, 0.044), _INCLINE),
    "slide": (DESK_SLIDE, (0.0, 0.0, 0.0), _INCLINE),  # the door's left edge
    "slide_handle": (DESK_SLIDE, (0.14, 0.0, 0.065), _INCLINE),
    "drawer": (DESK_DRAWER, (0.0, 0.0, 0.0), _LEVEL),
    "drawer_handle": (DESK_DRAWER, (0.0, -0.243, 0.052), _LEVEL),
    "led": (DESK_LED, (0.0, 0.0, 0.008), _LEVEL),
    "lightbulb": (DESK_LIGHTBULB, (0.0, 0.028, 0.024), _LEVEL),
    "plank": (DESK_PLANK, (0.0, 0.0, 0.0216), _LEVEL),  # the shelf's top
}


class CalvinUpstreamEnv(ChainProgress, gymnasium.Env):
    """Upstream CALVIN scene D with chained language subtasks judged by upstream's oracle.

    Args:
        scene: ``"D"``, the only scene upstream's evaluation runs in (the suite's settings pass it).
        action_mode: ``"relative"`` or ``"absolute"``, as for ``vlaeval/Calvin-v0``.
        cameras: subset of ``rgb_static``, ``rgb_gripper``, ``depth_static``, ``depth_gripper``
            to return; any of them makes upstream render both cameras
            (``cameras=static_and_gripper``), none renders nothing (``cameras=no_cameras``).

    ``reset`` options: ``robot_obs`` (15) and ``scene_obs`` (24) to start from (otherwise
    upstream's own default reset, the same scene every time: a fresh upstream env seeds itself
    from its config), ``tasks`` and ``instructions`` of the chain.
    """

    metadata = {"render_modes": [], "render_fps": CONTROL_HZ}

    def __init__(self, scene: str = "D", action_mode: str = "relative",
                 cameras: tuple[str, ...] = ("rgb_static", "rgb_gripper")) -> None:
        if scene != "D":
            raise ValueError(f"calvin-upstream builds upstream's scene D only, not {scene!r}")
        self.action_mode = action_mode
        self.cameras = checked_cameras(action_mode, cameras)
        self.layout = SCENES[scene]
        self.action_space, self.observation_space = calvin_spaces(action_mode, self.cameras, CAMERA_SIZES["static"],
                                                                  CAMERA_SIZES["gripper"])

        self._upstream: Any = None
        self._fresh = False  # the upstream env has not been reset yet (the first reset need not rebuild it)
        self._build()
        self._info = self._start_info = self._upstream.get_info()
        self._snapshot: Snapshot | None = None
        self._start_snapshot: Snapshot | None = None
        self._ground = next(body for body in range(pb.getNumBodies(physicsClientId=self.client_id))
                            if pb.getBodyInfo(body, physicsClientId=self.client_id)[1] == b"plane")

    def _build(self) -> None:
        self._release()
        self._upstream, self._oracle = make_upstream_env(cameras=bool(self.cameras))
        self._fresh = True

    def _release(self) -> None:
        if self._upstream is not None:
            close_upstream_env(self._upstream)
            self._upstream = None

    # --- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        state = {}
        for key, size in (("robot_obs", ROBOT_OBS_SIZE), ("scene_obs", SCENE_OBS_SIZE)):
            if options.get(key) is not None:
                state[key] = np.asarray(options[key], dtype=np.float64)
                if state[key].shape != (size,):
                    raise ValueError(f"options[{key!r}] must have shape ({size},), got {state[key].shape}")
        self._set_chain(options.get("tasks", ()), options.get("instructions"))
        if not self._fresh:
            self._build()
        self._fresh = False
        obs = self._upstream.reset(**state)
        self._info = self._start_info = self._upstream.get_info()
        self._snapshot = self._start_snapshot = None
        return self._observation(obs), self._step_info(False, self.current_task or "", 0)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,):
            raise ValueError(f"expected a 7-d action, got shape {action.shape}")
        gripper = binarise_gripper(action[6])
        if self.action_mode == "relative":  # upstream's relative form: one 7-vector
            command: Any = np.array([*action[:6], gripper])
        else:  # upstream's absolute form (in the pin and HEAD alike): (position, Euler angles, gripper)
            command = (action[:3].copy(), action[3:6].copy(), int(gripper))
        obs, _, _, info = self._upstream.step(command)
        self._info, self._snapshot = info, None
        task, index = self.current_task, self._index
        success = task is not None and task in self._oracle.get_task_info_for_set(self._start_info, info, {task})
        if success:
            self._index += 1
            self._start_info, self._start_snapshot = info, None
        terminated = success and self._index == len(self._tasks)
        return self._observation(obs), 1.0 if success else 0.0, terminated, False, self._step_info(success, task or "", index)

    def close(self) -> None:
        self._release()

    def __del__(self) -> None:
        # Best effort, as CalvinEnv's: a leaked upstream env keeps client 0, and with it the
        # process's only slot for one.  At interpreter shutdown pybullet may be gone already.
        with contextlib.suppress(Exception):
            self._release()

    def _observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "robot_obs": np.asarray(obs["robot_obs"], dtype=np.float64),
            "scene_obs": np.asarray(obs["scene_obs"], dtype=np.float64),
            "language": self._instructions[self._index] if self._index < len(self._instructions) else "",
        }
        for key in self.cameras:
            kind = key.split("_")[0]
            out[key] = np.asarray(obs[f"{kind}_obs"][key], dtype=np.uint8 if kind == "rgb" else np.float32)
        return out

    # --- privileged read-only API (the scripted expert), as ``CalvinEnv``'s ------------------

    @property
    def client_id(self) -> int:
        """Upstream's pybullet client."""
        return self._upstream.cid

    @property
    def upstream(self) -> Any:
        """Upstream's ``PlayTableSimEnv`` in use (replaced at every reset)."""
        return self._upstream

    @property
    def oracle(self) -> Any:
        """Upstream's ``Tasks`` oracle (``new_playtable_tasks.yaml``) that judges this env."""
        return self._oracle

    @property
    def info(self) -> dict[str, Any]:
        """Upstream's info dict of the last reset/step (what its oracle reads)."""
        return self._info

    @property
    def body_ids(self) -> dict[str, int]:
        """Body ids by name: ``robot``, ``desk``, ``ground`` and the block colours."""
        return {**upstream_info.body_ids(self._info), "ground": self._ground}

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured world TCP position and quaternion (x, y, z, w), from upstream's robot info."""
        robot = self._info["robot_info"]
        return np.array(robot["tcp_pos"]), np.array(pb.getQuaternionFromEuler(robot["tcp_orn"]))

    def tcp_target(self) -> tuple[np.ndarray, np.ndarray]:
        """Upstream's controller target (position, Euler xyz) that relative actions accumulate into."""
        robot = self._upstream.robot
        return np.array(robot.target_pos, dtype=np.float64), np.array(robot.target_orn, dtype=np.float64)

    def block_pose(self, colour: str) -> tuple[np.ndarray, np.ndarray]:
        """World position and quaternion (x, y, z, w) of a block as of the last step."""
        block = self.snapshot().block(colour)
        return np.array(block.position), np.array(block.orientation)

    def block_size(self, colour: str) -> tuple[float, float, float]:
        """Full box size of a block in its own frame (scene D's, as upstream's URDFs)."""
        return self.layout.block_size(colour)

    def joint_state(self, name: str) -> float:
        """Position of a desk joint (``slide``, ``drawer``, ``button`` or ``switch``) as of the last step."""
        if name not in DESK_JOINTS:
            raise KeyError(f"{name!r} is not one of {sorted(DESK_JOINTS)}")
        return float(getattr(self.snapshot(), name))

    def light_states(self) -> dict[str, int]:
        """Logical light states: ``{"led": 0/1, "lightbulb": 0/1}``."""
        return upstream_info.lights(self._info)

    def link_world_pose(self, link_name: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of a named desk point (the names of ``CalvinEnv.link_world_pose``) on
        upstream's desk, in the orientation the ``calvin`` suite's desk gives it; see
        :data:`UPSTREAM_DESK_POINTS`."""
        if link_name not in UPSTREAM_DESK_POINTS:
            raise KeyError(f"{link_name!r} is not one of {sorted(UPSTREAM_DESK_POINTS)}")
        link, offset, frame = UPSTREAM_DESK_POINTS[link_name]
        client = self.client_id
        origin = pb.getLinkState(self.body_ids["desk"], link, computeForwardKinematics=True, physicsClientId=client)[4]
        position, orientation = pb.multiplyTransforms(origin, pb.getQuaternionFromEuler(frame), offset, (0, 0, 0, 1),
                                                      physicsClientId=client)
        return np.array(position), np.array(orientation)

    def snapshot(self) -> Snapshot:
        """The state after the last reset/step, from upstream's info dict."""
        if self._snapshot is None:
            self._snapshot = upstream_info.snapshot_of(self._info)
        return self._snapshot

    def start_snapshot(self) -> Snapshot:
        """The state the current subtask is judged against."""
        if self._start_snapshot is None:
            self._start_snapshot = upstream_info.snapshot_of(self._start_info)
        return self._start_snapshot
