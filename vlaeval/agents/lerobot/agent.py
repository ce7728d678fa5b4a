"""``LeRobotAgent``: a policy saved by LeRobot (``PreTrainedPolicy.save_pretrained``, or a
``lerobot-train`` checkpoint's ``pretrained_model``) evaluated as a vlaeval agent.

Everything between our observation and its action is LeRobot's own code: ``preprocess_observation``
turns the camera frames (HWC uint8) into CHW float tensors in [0, 1] and the state into a batch,
the saved pre-processor normalises them (and tokenises the task where the policy reads language),
``select_action`` runs the policy with its action queue, and the saved post-processor
unnormalises the action back into the units the dataset stored, which are the suite's own.

Construction reads JSON only (:class:`~vlaeval.agents.lerobot.meta.PolicyInfo`), so the runner's
convention check and :meth:`LeRobotAgent.bind`'s shape check reject a policy trained for another
action space before lerobot and torch are imported; the policy is loaded by ``bind``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.agents.lerobot.meta import OBSERVATION_KEYS, PolicyInfo, require_lerobot
from vlaeval.errors import VlaevalError

#: The ``preprocess_observation`` entries our observations go in: camera frames under ``pixels``
#: (it names them ``observation.images.<camera>``), the state as ``agent_pos`` (``observation.state``).
_PIXELS_PREFIX = "observation.images."
_STATE = "observation.state"


class LeRobotAgent(Agent):
    """A saved LeRobot policy (ACT, diffusion, ...) with its pre- and post-processors.

    Args:
        path: the policy directory (``config.json``, ``model.safetensors`` and the
            ``policy_preprocessor*`` / ``policy_postprocessor*`` files LeRobot saves beside them).
        dataset: the LeRobotDataset it was trained on, when ``train_config.json`` does not name it
            where it still is; its ``vlaeval`` block says what the actions mean.
        action_type, rotation, gripper: the action conventions of a policy trained on a dataset
            vlaeval did not write (all three, or any to override the dataset's).
        device: torch device to run on.
        num_threads: torch intra-op threads (None: torch's default); 1 avoids oversubscription
            when simulators share the cores.
    """

    def __init__(self, path: str, *, dataset: str | None = None, action_type: str | None = None, rotation: str | None = None,
                 gripper: str | None = None, device: str = "cpu", num_threads: int | None = None) -> None:
        self.info = self.preflight({"path": path, "dataset": dataset, "action_type": action_type,
                                    "rotation": rotation, "gripper": gripper})
        self.spec = self.info.agent_spec()
        self.device = device
        self.num_threads = num_threads
        self._policy: Any = None
        self._preprocessor: Any = None
        self._postprocessor: Any = None

    @staticmethod
    def preflight(options: Mapping[str, Any]) -> PolicyInfo:
        """Everything that can be checked without the suite and without importing torch: the
        runner calls it before any worker starts (``--agent lerobot --agent-opt path=DIR``)."""
        if not options.get("path"):
            raise VlaevalError("the lerobot agent needs a policy directory: --agent lerobot:DIR or --agent-opt path=DIR")
        require_lerobot("the lerobot agent")
        return PolicyInfo.read(options["path"], **{k: options.get(k) for k in ("dataset", "action_type", "rotation", "gripper")})

    def bind(self, context: AgentContext) -> None:
        """Check the policy's shapes against the environment's spaces, then load it."""
        super().bind(context)
        where = f"LeRobot policy {self.info.path} (conventions from {self.info.conventions_from})"
        shape = tuple(getattr(context.action_space, "shape", None) or ())
        if shape != (self.info.action_dim,):
            raise VlaevalError(f"{where} emits {self.info.action_dim}-d actions, suite {context.suite!r} takes shape {shape}")
        for feature, policy_shape in self.info.inputs.items():
            space = context.observation_space[OBSERVATION_KEYS[feature]]
            expected = (space.shape[2], *space.shape[:2]) if feature.startswith(_PIXELS_PREFIX) else tuple(space.shape)
            if tuple(policy_shape) != expected:
                raise VlaevalError(f"{where} reads {feature} of shape {policy_shape}, suite {context.suite!r} provides {expected}")
        if self._policy is None:
            self._load()

    def _load(self) -> None:
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        path = str(self.info.path)
        config = PreTrainedConfig.from_pretrained(path)
        config.device = self.device
        self._policy = get_policy_class(config.type).from_pretrained(path, config=config)
        self._preprocessor, self._postprocessor = make_pre_post_processors(
            config, pretrained_path=path, preprocessor_overrides={"device_processor": {"device": self.device}})

    def seed(self, seed: int) -> None:
        """Stochastic policies (diffusion's noise, a VAE prior) draw from torch's global generator."""
        import torch

        torch.manual_seed(seed)

    def reset(self) -> None:
        """Every episode and chained subtask: clear the action queue and stateful processor steps."""
        if self._policy is not None:
            self._policy.reset()
            self._preprocessor.reset()
            self._postprocessor.reset()

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        import torch
        from lerobot.envs.utils import preprocess_observation

        raw: dict[str, Any] = {"pixels": {feature.removeprefix(_PIXELS_PREFIX): np.asarray(observation[OBSERVATION_KEYS[feature]])
                                          for feature in self.info.inputs if feature.startswith(_PIXELS_PREFIX)}}
        if _STATE in self.info.inputs:
            raw["agent_pos"] = np.asarray(observation[OBSERVATION_KEYS[_STATE]], dtype=np.float32)
        batch = preprocess_observation(raw)
        batch["task"] = [instruction]
        with torch.inference_mode():
            action = self._postprocessor(self._policy.select_action(self._preprocessor(batch)))
        return action.squeeze(0).to("cpu", torch.float32).numpy()
