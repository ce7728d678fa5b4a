"""``vlaeval/Calvin-v0``: the CALVIN play table as a Gymnasium environment with chained subtasks.

One step follows spec calvin.md §C.4: action -> IK and motors, 8 physics substeps at 240 Hz,
button/switch logic, observation, info snapshot.  The environment also runs the per-subtask
bookkeeping of §C.5 (start snapshot S, only the current subtask's predicate, advance on success)
so that every caller evaluates chains the same way; the harness only counts steps.

Each instance owns its own pybullet client, so several can live in one process.

Deliberate deviations from upstream, each keeping one episode independent of the episodes that
ran before it in the same process (so results do not depend on how episodes are split across
workers): every reset restores a pristine physics state (pybullet's contact caches included),
the last gripper command restarts at +1, and the button's "previously pressed" memory is
cleared.  Upstream carries all three over; a fresh upstream env behaves like ours.
"""

from __future__ import annotations

import contextlib
import string
from typing import Any, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

from vlaeval.envs.calvin.bullet import pb
from vlaeval.envs.calvin.cameras import (
    CAMERA_KEYS,
    GRIPPER,
    STATIC,
    StaticCamera,
    gripper_view,
    render,
)
from vlaeval.envs.calvin.chain import ChainProgress
from vlaeval.envs.calvin.initial_state import (
    ROBOT_OBS_ARM_JOINTS,
    ROBOT_OBS_GRIPPER_WIDTH,
    ROBOT_OBS_SIZE,
    SCENE_OBS_BUTTON,
    SCENE_OBS_DRAWER,
    SCENE_OBS_LED,
    SCENE_OBS_LIGHTBULB,
    SCENE_OBS_SIZE,
    SCENE_OBS_SLIDER,
    SCENE_OBS_SWITCH,
)
from vlaeval.envs.calvin.live_snapshot import LiveSnapshot
from vlaeval.envs.calvin.predicates import DESK_PLANK, PREDICATES, Snapshot
from vlaeval.envs.calvin.robot import FINGER_OPEN, INITIAL_JOINTS, Robot, load_panda
from vlaeval.envs.calvin.scene import (
    COLOUR_RGBA,
    DESK_JOINTS,
    DESK_POINTS,
    SCENES,
    Desk,
    create_block,
    create_ground,
    random_scene_obs,
)

PHYSICS_HZ = 240
CONTROL_HZ = 30
SUBSTEPS = PHYSICS_HZ // CONTROL_HZ
ACTION_MODES = ("relative", "absolute")
MAX_INSTRUCTION_LENGTH = 512
#: Loose finite bound of every state value (metres, radians, 0/1 flags), finite so that
#: space checkers and normalisers work; real values stay well inside.
STATE_BOUND = 10.0

#: Bounds of absolute actions: a box around the desk for the TCP, any Euler angles, gripper.
_ABSOLUTE_LOW = np.array([-0.8, -0.8, 0.0, -np.pi, -np.pi, -np.pi, -1.0], dtype=np.float32)
_ABSOLUTE_HIGH = np.array([0.8, 0.6, 1.2, np.pi, np.pi, np.pi, 1.0], dtype=np.float32)


def checked_cameras(action_mode: str, cameras: Sequence[str]) -> tuple[str, ...]:
    """The requested cameras in canonical order, after checking the action mode and camera names.

    Shared by ``Calvin-v0`` and ``CalvinUpstream-v0``, which must accept exactly the same options.
    """
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    unknown = set(cameras) - set(CAMERA_KEYS)
    if unknown:
        raise ValueError(f"unknown cameras {sorted(unknown)}; choose from {CAMERA_KEYS}")
    return tuple(k for k in CAMERA_KEYS if k in cameras)


def calvin_spaces(action_mode: str, cameras: Sequence[str], static_size: int, gripper_size: int) -> tuple[spaces.Box, spaces.Dict]:
    """Action and observation spaces of a CALVIN env: one definition for both CALVIN suites, so an
    agent bound to one sees exactly the spaces of the other."""
    action_space = (
        spaces.Box(-1.0, 1.0, (7,), dtype=np.float32)
        if action_mode == "relative"
        else spaces.Box(_ABSOLUTE_LOW, _ABSOLUTE_HIGH, dtype=np.float32)
    )
    observation = {
        "robot_obs": spaces.Box(-STATE_BOUND, STATE_BOUND, (ROBOT_OBS_SIZE,), dtype=np.float64),
        "scene_obs": spaces.Box(-STATE_BOUND, STATE_BOUND, (SCENE_OBS_SIZE,), dtype=np.float64),
        "language": spaces.Text(MAX_INSTRUCTION_LENGTH, min_length=0, charset=string.printable),
    }
    for key in cameras:
        static = key.endswith("static")
        size = static_size if static else gripper_size
        observation[key] = (
            spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
            if key.startswith("rgb")
            else spaces.Box(0.0, (STATIC if static else GRIPPER).far, (size, size), dtype=np.float32)
        )
    return action_space, spaces.Dict(observation)


class CalvinEnv(ChainProgress, gymnasium.Env):
    """CALVIN scene A-D with a Panda, Cartesian actions and chained language subtasks.

    Args:
        scene: ``"A"`` .. ``"D"`` (the evaluation uses D).
        action_mode: ``"relative"`` (7 values in [-1, 1]: 0.02 m and 0.05 rad per unit, gripper
            sign) or ``"absolute"`` (TCP xyz, Euler xyz, gripper sign).
        cameras: subset of ``rgb_static``, ``rgb_gripper``, ``depth_static``, ``depth_gripper``;
            only these are rendered, and an empty tuple renders nothing.
        static_size, gripper_size: square image sizes.
        render_mode: ``"rgb_array"`` makes :meth:`render` return the static camera image.

    ``reset`` options: ``robot_obs`` (15) and ``scene_obs`` (24) to start from a given state
    (otherwise a random scene is drawn from the seed), ``tasks`` (names of a chain) and
    ``instructions`` (one per task; the ``language`` observation shows the current one).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(
        self,
        scene: str = "D",
        action_mode: str = "relative",
        cameras: tuple[str, ...] = ("rgb_static", "rgb_gripper"),
        static_size: int = 200,
        gripper_size: int = 84,
        render_mode: str | None = None,
    ) -> None:
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {sorted(SCENES)}, got {scene!r}")
        ordered_cameras = checked_cameras(action_mode, cameras)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self._kwargs = dict(scene=scene, action_mode=action_mode, cameras=tuple(cameras),
                            static_size=int(static_size), gripper_size=int(gripper_size), render_mode=render_mode)
        self.layout = SCENES[scene]
        self.action_mode = action_mode
        self.cameras = ordered_cameras
        self.static_size = int(static_size)
        self.gripper_size = int(gripper_size)
        self.render_mode = render_mode

        self._client = pb.connect(pb.DIRECT)
        self._build_world()
        wants_static = render_mode == "rgb_array" or any(k.endswith("static") for k in self.cameras)
        self._static_camera = (StaticCamera(self._client, self.static_size, self.fixed_visuals,
                                            arm=self._robot.body_id, arm_model=load_panda)
                               if wants_static else None)
        self._gripper_projection = GRIPPER.projection()
        #: Whether observations need the gripper camera's pose (decided once, read every step).
        self._gripper_camera = "rgb_gripper" in self.cameras or "depth_gripper" in self.cameras

        self.action_space, self.observation_space = calvin_spaces(action_mode, self.cameras, self.static_size, self.gripper_size)

        self._snapshot = self._take_snapshot(self._desk.joint_positions())
        self._start = self._snapshot.freeze()

    # --- construction ----------------------------------------------------------------------

    def _build_world(self) -> None:
        """Create the bodies in upstream's order so ids match (robot 0, pedestal 1, blocks 2-4,
        desk 5, ground 6) and keep a pristine physics state that every reset restores."""
        c = self._client
        pb.setGravity(0, 0, -9.8, physicsClientId=c)
        pb.setPhysicsEngineParameter(fixedTimeStep=1.0 / PHYSICS_HZ, numSubSteps=0, numSolverIterations=50,
                                     deterministicOverlappingPairs=1, physicsClientId=c)
        self._robot = Robot(c)
        self._blocks = {
            colour: create_block(c, self.layout.block_size(colour), COLOUR_RGBA[colour])
            for colour in self.layout.block_order
        }
        self._desk = Desk(c, self.layout)
        self._ground = create_ground(c)
        #: (colour, body) of the blocks in the scene's block order, as snapshots list them.
        self._block_items = tuple(self._blocks.items())
        self._park()
        self._pristine = pb.saveState(physicsClientId=c)

    def _park(self) -> None:
        """Move every movable body far apart and above the ground, then run collision detection.

        pybullet's broadphase pair cache and contact manifolds are not part of a saved state, so
        pairs left over from the previous episode would change the first physics step.  Parking
        drops all pairs, which makes each reset start from the same (empty) cache as a fresh env:
        "same seed, options and actions" is then bit-identical however many episodes ran before.
        """
        c = self._client
        for i, body in enumerate((self._robot.body_id, *self._blocks.values())):
            pb.resetBasePositionAndOrientation(body, (5.0 * i, 0.0, 50.0), (0, 0, 0, 1), physicsClientId=c)
        pb.performCollisionDetection(physicsClientId=c)

    # --- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        robot_obs = options.get("robot_obs")
        scene_obs = options.get("scene_obs")
        if robot_obs is None:
            robot_obs = np.zeros(ROBOT_OBS_SIZE)
            robot_obs[ROBOT_OBS_ARM_JOINTS] = INITIAL_JOINTS
            robot_obs[ROBOT_OBS_GRIPPER_WIDTH] = 2 * FINGER_OPEN
        if scene_obs is None:
            scene_obs = random_scene_obs(self.layout, self.np_random)
        robot_obs = np.asarray(robot_obs, dtype=np.float64)
        scene_obs = np.asarray(scene_obs, dtype=np.float64)
        if robot_obs.shape != (ROBOT_OBS_SIZE,) or scene_obs.shape != (SCENE_OBS_SIZE,):
            raise ValueError(f"robot_obs/scene_obs must have shapes ({ROBOT_OBS_SIZE},)/({SCENE_OBS_SIZE},)")
        self._set_chain(options.get("tasks", ()), options.get("instructions"))

        self._snapshot.expire()
        pb.restoreState(self._pristine, physicsClientId=self._client)
        self._park()
        self._robot.place_base()
        self._apply_scene_obs(scene_obs)
        self._robot.reset(robot_obs[ROBOT_OBS_ARM_JOINTS], float(robot_obs[ROBOT_OBS_GRIPPER_WIDTH]))
        # pybullet's broadphase reports a new pair one detection pass late; without this pass the
        # blocks would have no contacts at the start snapshot, and lift/push could never succeed.
        pb.performCollisionDetection(physicsClientId=self._client)
        pb.stepSimulation(physicsClientId=self._client)  # one step, no button/switch update (§B.5)

        self._snapshot = self._take_snapshot(self._desk.joint_positions())
        self._start = self._snapshot.freeze()
        return self._observation(), self._step_info(False, self.current_task or "", 0)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,):
            raise ValueError(f"expected a 7-d action, got shape {action.shape}")
        if self.action_mode == "relative":
            self._robot.apply_relative(action.tolist())
        else:
            self._robot.apply_absolute(action.tolist())
        self._snapshot.expire()
        for _ in range(SUBSTEPS):
            pb.stepSimulation(physicsClientId=self._client)
        joints = self._desk.joint_positions()
        self._desk.update(button=joints[2], switch=joints[3])
        self._snapshot = self._take_snapshot(joints)

        task, index = self.current_task, self._index
        success = task is not None and PREDICATES[task](self._start, self._snapshot)
        if success:
            self._index += 1
            self._start = self._snapshot.freeze()
        terminated = success and self._index == len(self._tasks)
        reward = 1.0 if success else 0.0
        return self._observation(), reward, terminated, False, self._step_info(success, task or "", index)

    def render(self) -> np.ndarray | None:
        """The static camera image (``render_mode="rgb_array"``), rendered on demand."""
        if self.render_mode != "rgb_array":
            return None
        image, _ = self._static_camera.render(rgb=True, depth=False)
        return image

    def close(self) -> None:
        if self._static_camera is not None:
            self._static_camera.close()
        if self._client is not None and pb.isConnected(self._client):
            pb.disconnect(self._client)
        self._client = None

    def __del__(self) -> None:
        # Best effort: a leaked client keeps its physics world alive for the process lifetime.
        # At interpreter shutdown pybullet may already be torn down; nothing is left to free then.
        with contextlib.suppress(Exception):
            self.close()

    # --- pickling: rebuild the world, keep the RNG ------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Constructor kwargs and RNG only: a pybullet world cannot be pickled, so an unpickled
        env is a fresh one (call ``reset`` before stepping) that continues the same seed stream."""
        return {"kwargs": self._kwargs, "np_random": self._np_random}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["kwargs"])
        self._np_random = state["np_random"]

    # --- state I/O --------------------------------------------------------------------------

    def _apply_scene_obs(self, scene_obs: np.ndarray) -> None:
        """Doors, lights, button, switch, then blocks (§B.5 steps 1-5); blocks follow the scene's
        block order, as scene_obs slots do."""
        self._desk.reset(
            slide=scene_obs[SCENE_OBS_SLIDER], drawer=scene_obs[SCENE_OBS_DRAWER],
            button=scene_obs[SCENE_OBS_BUTTON], switch=scene_obs[SCENE_OBS_SWITCH],
            lightbulb=scene_obs[SCENE_OBS_LIGHTBULB], led=scene_obs[SCENE_OBS_LED],
        )
        for slot, colour in enumerate(self.layout.block_order):
            values = scene_obs[6 + 6 * slot : 12 + 6 * slot]
            body = self._blocks[colour]
            orientation = pb.getQuaternionFromEuler(values[3:6].tolist())
            pb.resetBasePositionAndOrientation(body, values[:3].tolist(), orientation, physicsClientId=self._client)
            pb.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0), physicsClientId=self._client)

    def _take_snapshot(self, joints: tuple[float, float, float, float]) -> LiveSnapshot:
        return LiveSnapshot(self._client, self._robot.body_id, self._desk.body_id, self._block_items, joints,
                            self._desk.lightbulb, self._desk.led)

    def _scene_obs(self) -> np.ndarray:
        snap = self._snapshot
        values = [snap.slide, snap.drawer, snap.button, snap.switch, snap.lightbulb, snap.led]
        # scene_obs slots follow the scene's block order, which is also the snapshot's (the
        # blocks are created in that order).
        for _, block in snap.blocks:
            values += block.position
            values += pb.getEulerFromQuaternion(block.orientation)
        return np.array(values, dtype=np.float64)

    def _observation(self) -> dict[str, Any]:
        gripper = self._gripper_camera
        robot_obs, camera_pose = self._robot.observation(camera_pose=gripper)
        obs: dict[str, Any] = {
            "robot_obs": robot_obs,
            "scene_obs": self._scene_obs(),
            "language": self._instructions[self._index] if self._index < len(self._instructions) else "",
        }
        if not self.cameras:  # state-only agents: nothing to render or filter
            return obs
        wants = self.cameras
        if "rgb_static" in wants or "depth_static" in wants:
            obs["rgb_static"], obs["depth_static"] = self._static_camera.render("rgb_static" in wants,
                                                                                "depth_static" in wants)
        if gripper:
            view = gripper_view(*camera_pose)
            obs["rgb_gripper"], obs["depth_gripper"] = render(
                self._client, self.gripper_size, view, self._gripper_projection, GRIPPER,
                "rgb_gripper" in wants, "depth_gripper" in wants,
            )
        return {k: v for k, v in obs.items() if v is not None}

    # --- privileged read-only API (scripted experts, debugging) -----------------------------

    @property
    def client_id(self) -> int:
        """The pybullet client of this env (for tests and tools that must query it directly)."""
        return self._client

    @property
    def fixed_visuals(self) -> tuple[tuple[int, int], ...]:
        """(body, link) of every visual that never moves or changes colour: the desk carcass and
        shelf, the ground and the pedestal (what :class:`StaticCamera` rasterises only once)."""
        desk = self._desk.body_id
        return (desk, -1), (desk, DESK_PLANK), (self._ground, -1), (self._robot.pedestal_id, -1)

    @property
    def body_ids(self) -> dict[str, int]:
        """Body ids by name: ``robot``, ``desk``, ``ground`` and the block colours."""
        return {"robot": self._robot.body_id, "desk": self._desk.body_id, "ground": self._ground, **self._blocks}

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured world TCP (link 15) position and quaternion (x, y, z, w)."""
        return self._robot.tcp_pose()

    def tcp_target(self) -> tuple[np.ndarray, np.ndarray]:
        """The controller's target (position, Euler xyz) that relative actions accumulate into;
        it can differ from the measured TCP when the arm lags or is blocked."""
        return self._robot.target_pose

    def block_pose(self, colour: str) -> tuple[np.ndarray, np.ndarray]:
        """World position and quaternion (x, y, z, w) of a block as of the last step."""
        block = self._snapshot.block(colour)
        return np.array(block.position), np.array(block.orientation)

    def block_size(self, colour: str) -> tuple[float, float, float]:
        """Full box size of a block in its own frame (long side along local x)."""
        return self.layout.block_size(colour)

    def joint_state(self, name: str) -> float:
        """Position of a desk joint (``slide``, ``drawer``, ``button`` or ``switch``) as of the
        last step."""
        if name not in DESK_JOINTS:
            raise KeyError(f"{name!r} is not one of {sorted(DESK_JOINTS)}")
        return float(getattr(self._snapshot, name))

    def light_states(self) -> dict[str, int]:
        """Logical light states: ``{"led": 0/1, "lightbulb": 0/1}``."""
        return {"led": self._snapshot.led, "lightbulb": self._snapshot.lightbulb}

    def link_world_pose(self, link_name: str) -> tuple[np.ndarray, np.ndarray]:
        """Current world pose of a named desk point: ``button`` (cap top), ``switch`` (outer
        face), ``slide``/``drawer`` (link frames), ``slide_handle``, ``drawer_handle``, ``led``,
        ``lightbulb``, ``plank``.  Orientation is the link's."""
        if link_name not in DESK_POINTS:
            raise KeyError(f"{link_name!r} is not one of {sorted(DESK_POINTS)}")
        return self._desk.point_pose(link_name)

    def snapshot(self) -> Snapshot:
        """The §C.1 info snapshot after the last reset/step (what the predicates read)."""
        return self._snapshot.freeze()

    def start_snapshot(self) -> Snapshot:
        """The snapshot S the current subtask is judged against."""
        return self._start
