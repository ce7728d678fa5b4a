"""What a reset asks of one sub-environment, checked before anything is simulated (no simulator).

The harness's ``reset`` options (as listed by the suite) become the request that the scene's
``_initialize_episode`` reads.  Checking here, apart from the scene, lets a pool fail the one
slot that asked for an unknown task or variant and still reset the others, without loading
ManiSkill to find out.
"""

from __future__ import annotations

from typing import Any, Mapping

from vlaeval.envs.simpler.spec import AXES, BASE_VARIANT, TASK_INFO


def scene_episode_options(seed: int | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"task", "layout", "variant", "placement_seed"}`` for one sub-environment's reset.

    Raises ``ValueError`` for an unknown task or variant.
    """
    task = options.get("task", "pick_coke_can")
    if task not in TASK_INFO:
        raise ValueError(f"unknown simpler task {task!r}; choose from {sorted(TASK_INFO)}")
    variant = dict(BASE_VARIANT) | dict(options.get("variant") or {})
    for axis, value in variant.items():
        if axis not in AXES or value not in AXES[axis]:
            raise ValueError(f"unknown variant {axis}={value!r}")
    return {"task": task, "layout": options.get("layout"), "variant": variant, "placement_seed": int(seed or 0)}
