"""``CalvinExpert``: a privileged scripted policy that solves CALVIN's 34 tasks.

It reads the simulator state (never the cameras), plans a short sequence of TCP waypoints for
the current subtask (:mod:`vlaeval.agents.expert.plans`) and follows it with *relative* actions
in [-1, 1], the form CALVIN datasets store, so its rollouts can be recorded as demonstrations for
behaviour cloning.  Everything is a deterministic function of the simulator state: the same
episode always yields the same actions.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.agents.expert.plans import plan_for
from vlaeval.agents.expert.skills import Follower, Motion
from vlaeval.agents.expert.world import World
from vlaeval.conventions import AgentSpec
from vlaeval.envs.calvin.language import INSTRUCTION_SETS
from vlaeval.errors import VlaevalError

#: Instruction text -> task, over every known paraphrase (used when the env names no task).
_TASK_OF_INSTRUCTION: dict[str, str] = {
    text: task for instructions in INSTRUCTION_SETS.values() for task, texts in instructions.items() for text in texts
}


class CalvinExpert(Agent):
    """Scripted expert for the ``calvin`` and ``calvin-upstream`` suites (privileged: reads the
    unwrapped env through :class:`~vlaeval.agents.expert.world.World`).

    Args:
        motion: speeds and clearances of the motion primitives.
    """

    spec: ClassVar[AgentSpec] = AgentSpec(
        action_type="relative_ee",
        rotation="euler_xyz",
        gripper="open_positive",
        observation_keys=("robot_obs", "scene_obs"),
        privileged=True,
    )

    def __init__(self, motion: Motion | None = None) -> None:
        self.motion = motion or Motion()
        self._world: World | None = None
        self._follower: Follower | None = None

    def bind(self, context: AgentContext) -> None:
        super().bind(context)
        if context.action_type != "relative_ee":
            raise VlaevalError(f"CalvinExpert emits relative_ee actions, the run negotiated {context.action_type!r}")
        if context.env is None or not hasattr(context.env, "tcp_target"):
            raise VlaevalError("CalvinExpert is privileged: it needs the unwrapped CALVIN env in its context")
        self._world = World(context.env)

    def reset(self) -> None:
        """Forget the current plan: the next action re-plans for the new subtask."""
        self._follower = None

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        if self._world is None:
            raise VlaevalError("CalvinExpert.act() called before bind()")
        world = self._world
        target_position, target_euler = world.target()
        tcp, tcp_euler = world.tcp(), world.tcp_euler()
        for _ in range(2):  # a fresh plan that is already complete gets one more chance
            if self._follower is None or self._follower.done:
                self._follower = Follower(plan_for(self._task(instruction), world, self.motion))
            action = self._follower.action(target_position, target_euler, tcp, tcp_euler)
            if action is not None:
                return action.astype(np.float32)
        return self._stay(observation)

    def _task(self, instruction: str) -> str:
        task = getattr(self._world.env, "current_task", None) if self._world else None
        if task is None:
            task = _TASK_OF_INSTRUCTION.get(instruction)
        if task is None:
            raise VlaevalError(f"CalvinExpert does not know which task {instruction!r} is")
        return task

    @staticmethod
    def _stay(observation: Mapping[str, Any]) -> np.ndarray:
        action = np.zeros(7, dtype=np.float32)
        action[6] = observation["robot_obs"][14] if "robot_obs" in observation else 1.0
        return action
