"""Registers vlaeval's Gymnasium ids on import (entry points stay lazy ``"module:attr"`` strings).

``import vlaeval.envs.registration`` (or ``gymnasium.make("vlaeval.envs.registration:vlaeval/Calvin-v0")``)
makes ``gymnasium.make("vlaeval/Calvin-v0", scene="D")`` work; no simulator is imported until
an environment is made.
"""

from __future__ import annotations

import gymnasium

#: Gymnasium id -> lazy entry point of every built-in environment.
ENTRY_POINTS: dict[str, str] = {
    "vlaeval/Calvin-v0": "vlaeval.envs.calvin.env:CalvinEnv",
    "vlaeval/Simpler-v0": "vlaeval.envs.simpler.env:SimplerEnv",
}

for _env_id, _entry_point in ENTRY_POINTS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)
