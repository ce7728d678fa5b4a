"""What vlaeval and LeRobot agree on, in plain JSON: feature names and the action-convention block.

This module imports neither lerobot nor torch: the dataset writer (``vlaeval.training``), the agent's
construction and the runner's preflight all read and write these facts, and the last two must work
(and fail with a useful message) in a venv without LeRobot.

A LeRobotDataset describes every column in ``meta/info.json`` ``features``, but nothing there says
what an action *means*: a 7-vector of relative end-effector deltas with Euler angles and "+1
opens" looks exactly like absolute poses or a closing-positive gripper.  vlaeval therefore adds a
``vlaeval`` block to the ``action`` feature (LeRobot keeps unknown keys of a feature verbatim),
and a policy trained on that dataset declares those conventions as its :class:`AgentSpec`, so the
runner's convention check applies to LeRobot policies as to any agent.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vlaeval.conventions import ACTION_TYPES, GRIPPER_POLARITIES, ROTATION_FORMATS, AgentSpec
from vlaeval.durable import read_json_object
from vlaeval.errors import VlaevalError

#: vlaeval observation key -> LeRobot feature name.  LeRobot names cameras
#: ``observation.images.<camera>`` and proprioception ``observation.state``; a policy trained on a
#: dataset with these names reads them as inputs, and the agent maps them back.  ``scene_obs``
#: (the simulator's object state) is left out on purpose: LeRobot feeds every ``observation.*``
#: feature to a policy, and a policy that reads the privileged scene state is not a vision policy.
FEATURES: Mapping[str, str] = {
    "rgb_static": "observation.images.static",
    "rgb_gripper": "observation.images.gripper",
    "robot_obs": "observation.state",
}
OBSERVATION_KEYS: Mapping[str, str] = {feature: key for key, feature in FEATURES.items()}

#: Names of CALVIN's 15 ``robot_obs`` values (``vlaeval.envs.calvin.initial_state``), for info.json.
ROBOT_OBS_NAMES: tuple[str, ...] = (
    "tcp_x", "tcp_y", "tcp_z", "tcp_euler_x", "tcp_euler_y", "tcp_euler_z", "gripper_width",
    *(f"joint_{i}" for i in range(1, 8)), "gripper_action",
)

#: What ``save_pretrained`` of LeRobot 0.6's policy processors writes (with their state files):
#: normalisation lives there, no longer in the policy's weights.
PROCESSOR_FILES = ("policy_preprocessor.json", "policy_postprocessor.json")

BLOCK = "vlaeval"
BLOCK_FORMAT = "vlaeval-lerobot-1"
#: The only normalisation the block describes: actions stored exactly as the environment stepped
#: them.  LeRobot's processors normalise with ``meta/stats.json`` for training and unnormalise a
#: policy's output, so the agent sends the unnormalised action to the environment as it is.
RAW = "none"

INSTALL_HINT = "needs the lerobot extra in a Python 3.12 venv: bash scripts/setup-lerobot.sh"


def require_lerobot(what: str) -> None:
    """Fail with one line, before anything slow, where LeRobot is not installed (the project's
    Python 3.11 venv: lerobot 0.6 needs Python >= 3.12)."""
    if importlib.util.find_spec("lerobot") is None:
        raise VlaevalError(f"{what} {INSTALL_HINT}")


@dataclass(frozen=True)
class ActionConventions:
    """What a dataset's actions mean; stored as the ``vlaeval`` block of its ``action`` feature."""

    action_type: str
    rotation: str
    gripper: str
    suite: str = ""
    normalization: str = RAW

    def __post_init__(self) -> None:
        for field, value, choices in (("action_type", self.action_type, ACTION_TYPES),
                                      ("rotation", self.rotation, ROTATION_FORMATS),
                                      ("gripper", self.gripper, GRIPPER_POLARITIES),
                                      ("normalization", self.normalization, (RAW,))):
            if value not in choices:
                raise VlaevalError(f"action convention {field}={value!r} is not one of {', '.join(choices)}")

    def block(self) -> dict[str, Any]:
        return {"format": BLOCK_FORMAT, "action_type": self.action_type, "rotation": self.rotation,
                "gripper": self.gripper, "normalization": self.normalization, "suite": self.suite}

    @classmethod
    def from_block(cls, block: Mapping[str, Any], where: str) -> ActionConventions:
        if block.get("format") != BLOCK_FORMAT:
            raise VlaevalError(f"{where}: unknown vlaeval block format {block.get('format')!r} (expected {BLOCK_FORMAT})")
        return cls(action_type=block["action_type"], rotation=block["rotation"], gripper=block["gripper"],
                   suite=block.get("suite", ""), normalization=block["normalization"])


def action_feature(dim: int, conventions: ActionConventions) -> dict[str, Any]:
    """The ``action`` entry of a dataset's features, conventions included."""
    return {"dtype": "float32", "shape": (dim,), "names": None, BLOCK: conventions.block()}


def dataset_conventions(root: str | os.PathLike[str]) -> ActionConventions | None:
    """The conventions a LeRobotDataset at ``root`` records, or None for a dataset vlaeval did not write."""
    info = read_json_object(Path(root) / "meta" / "info.json", "LeRobotDataset metadata")
    block = info.get("features", {}).get("action", {}).get(BLOCK)
    return None if block is None else ActionConventions.from_block(block, f"{root}/meta/info.json")


@dataclass(frozen=True)
class PolicyInfo:
    """A saved LeRobot policy as far as JSON tells: enough to check it against a suite before
    lerobot or torch is imported.

    Attributes:
        path: the directory ``PreTrainedPolicy.save_pretrained`` wrote.
        policy_type: LeRobot's policy name (``act``, ``diffusion``, ...).
        inputs: LeRobot input feature -> shape (images channel first, as the policy sees them).
        action_dim: length of the policy's ``action`` output.
        conventions: what its actions mean.
        conventions_from: where the conventions were read (named in the run's messages).
    """

    path: Path
    policy_type: str
    inputs: Mapping[str, tuple[int, ...]]
    action_dim: int
    conventions: ActionConventions
    conventions_from: str

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, dataset: str | None = None, action_type: str | None = None,
             rotation: str | None = None, gripper: str | None = None) -> PolicyInfo:
        """Read a policy directory.

        Conventions come from, in order: the options given here (a policy trained elsewhere), the
        dataset given here, or the dataset named in the policy's ``train_config.json`` (what
        ``lerobot-train`` saves next to the weights).  Unknown conventions are an error: guessing
        is how a policy ends up evaluated with an inverted gripper.
        """
        root = Path(path)
        where = f"LeRobot policy {root}"
        config = read_json_object(root / "config.json", where)
        if "type" not in config or "output_features" not in config:
            raise VlaevalError(f"{root}/config.json is not a LeRobot policy config (no type / output_features)")
        if not (root / "model.safetensors").is_file():
            raise VlaevalError(f"{where} has no model.safetensors; save it with policy.save_pretrained(DIR)")
        missing = [name for name in PROCESSOR_FILES if not (root / name).is_file()]
        if missing:
            raise VlaevalError(f"{where} has no {', '.join(missing)}: save the policy's pre- and post-processor with "
                               "save_pretrained(DIR) beside it, as lerobot-train does (a policy saved before LeRobot had "
                               "processors needs lerobot/processor/migrate_policy_normalization.py first)")
        for name in PROCESSOR_FILES:
            imported = [str(step.get("class")) for step in read_json_object(root / name, where).get("steps", []) if "registry_name" not in step]
            if imported:  # LeRobot would import these module paths: code named by a file vlaeval reads
                raise VlaevalError(f"{where}: {name} names processor steps by import path ({', '.join(imported)}); "
                                   "only registered steps (registry_name) are loaded")
        action = config["output_features"].get("action")
        if action is None:
            raise VlaevalError(f"{where} has no 'action' output feature")
        inputs = {name: tuple(int(n) for n in feature["shape"]) for name, feature in config.get("input_features", {}).items()}
        unknown = sorted(set(inputs) - set(OBSERVATION_KEYS))
        if unknown:
            raise VlaevalError(f"{where} reads {', '.join(unknown)}, which vlaeval cannot provide "
                               f"(it provides {', '.join(OBSERVATION_KEYS)})")
        if dataset is None:
            dataset = _training_dataset(root)
        found = dataset_conventions(dataset) if dataset is not None else None
        given = {k: v for k, v in (("action_type", action_type), ("rotation", rotation), ("gripper", gripper)) if v is not None}
        if found is None and len(given) < 3:
            raise VlaevalError(
                f"{where}: the meaning of its actions is unknown (its training dataset "
                f"{'was not found' if dataset is None else f'{dataset} has no vlaeval block'}); pass "
                "--agent-opt dataset=DIR (a dataset vlaeval recorded) or action_type=, rotation= and gripper=")
        base = found.block() if found is not None else {"format": BLOCK_FORMAT, "normalization": RAW, "suite": ""}
        conventions = ActionConventions.from_block({**base, **given}, where)
        source = ", ".join(filter(None, [f"{dataset}/meta/info.json" if found is not None else "",
                                         "agent options" if given else ""]))
        return cls(root, str(config["type"]), inputs, int(action["shape"][0]), conventions, source)

    def agent_spec(self) -> AgentSpec:
        return AgentSpec(action_type=self.conventions.action_type, rotation=self.conventions.rotation,
                         gripper=self.conventions.gripper, observation_keys=tuple(OBSERVATION_KEYS[f] for f in self.inputs))


def _training_dataset(policy: Path) -> str | None:
    """The local dataset ``lerobot-train`` trained this policy on (``train_config.json``'s
    ``dataset.root``), if it is still where training found it."""
    train_config = policy / "train_config.json"
    if not train_config.is_file():
        return None
    root = (read_json_object(train_config, f"LeRobot policy {policy}").get("dataset") or {}).get("root")
    return root if root and (Path(root) / "meta" / "info.json").is_file() else None
