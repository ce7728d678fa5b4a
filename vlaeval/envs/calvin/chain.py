"""Which subtask of a chain an episode is on: the bookkeeping both CALVIN envs share.

``vlaeval/Calvin-v0`` (our simulator) and ``vlaeval/CalvinUpstream-v0`` (upstream's) judge success
differently, but they must walk a chain identically: the same checks of the reset options, the
same ``current_task`` / ``subtask_index`` that agents and the runner read, and the same ``info``
keys on every step, or one suite's rows would not mean what the other's do.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlaeval.envs.calvin.predicates import PREDICATES


class ChainProgress:
    """Mixin for a Gymnasium env that evaluates a chain of CALVIN tasks one after the other."""

    _tasks: tuple[str, ...] = ()
    _instructions: tuple[str, ...] = ()
    _index: int = 0

    def _set_chain(self, tasks: Sequence[str], instructions: Sequence[str] | None) -> None:
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in PREDICATES]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}")
        if instructions is None:
            instructions = ("",) * len(tasks)
        if isinstance(instructions, str) or len(instructions) != len(tasks):
            raise ValueError("options['instructions'] must be a sequence with one instruction per task")
        self._tasks, self._instructions, self._index = tasks, tuple(str(i) for i in instructions), 0

    @property
    def current_task(self) -> str | None:
        """Name of the subtask being evaluated, or None (no chain, or chain completed)."""
        return self._tasks[self._index] if self._index < len(self._tasks) else None

    @property
    def subtask_index(self) -> int:
        """Index of the current subtask in the chain (= number of subtasks solved so far)."""
        return self._index

    @staticmethod
    def _step_info(success: bool, task: str, index: int) -> dict[str, Any]:
        return {"is_success": bool(success), "task": task, "subtask_index": index}
