"""SimplerEnv's episode bookkeeping for one sub-environment (plain Python, no simulator).

Both :class:`~vlaeval.envs.simpler.env.SimplerEnv` and the batched GPU pool score episodes with
it, so a slot of the pool and a single env judge an episode identically.  What is task-specific
(which events count, stages, when an episode is solved) comes from the task's
:class:`~vlaeval.envs.simpler.tasks.TaskRules`; what is the same for every task is here: the step
budget, success read at the last step, partial success at any step, the current instruction.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from vlaeval.envs.simpler.spec import TASK_INFO
from vlaeval.envs.simpler.tasks import rules_for


class EpisodeTracker:
    """One episode's steps, stage and remembered events, fed the scene's per-step predicates.

    The episode is truncated at the task's budget; ``is_success`` is the task's success at that
    last step (SimplerEnv), or at the first step where it holds with ``success_at="first_step"``
    (smoke tests); partial success is any step with a ``partial`` event.
    """

    def __init__(self, task: str = "pick_coke_can", instruction: str = "") -> None:
        self.task = task
        self.rules = rules_for(task)
        self.budget = TASK_INFO[task].budget
        self.steps = 0
        self.stage = 1
        self.instruction = instruction or TASK_INFO[task].instruction
        self.held: Counter[str] = Counter()  # event -> steps on which it held

    @property
    def ever_partial(self) -> bool:
        return self.held["partial"] > 0

    @property
    def current_instruction(self) -> str:
        info = TASK_INFO[self.task]
        return info.stage2_instruction if self.stage == 2 and info.stage2_instruction else self.instruction

    def advance(self, ev: Mapping[str, Any], success_at: str) -> tuple[bool, bool]:
        """Count one step with predicates ``ev``; return ``(is_success, truncated)``."""
        self.steps += 1
        self.held.update(self.rules.events(self.task, ev))
        self.stage = self.rules.stage(self.task, self.stage, self.steps, ev)
        success = self.rules.success(self.task, ev, self.held, self.stage)
        truncated = self.steps >= self.budget
        return bool(success and (truncated or success_at == "first_step")), truncated

    def info(self, ev: Mapping[str, Any], success: bool, variant: Mapping[str, str]) -> dict[str, Any]:
        """The Gymnasium ``info`` of a step (or of the reset, with ``success`` False)."""
        return {
            "is_success": bool(success),
            "success_now": bool(ev.get("success_now")),
            "partial_success": bool(self.ever_partial),
            "task": self.task,
            "stage": self.stage,
            "variant": dict(variant),
            "steps": self.steps,
            "budget": self.budget,
        }
