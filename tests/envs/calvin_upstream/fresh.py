"""Running a test body in a fresh process.

Upstream's env must own pybullet client 0 of its process (see
:mod:`vlaeval.envs.calvin_upstream.build`), which the pytest process may already have given to
an earlier test's env; a spawned process starts with no pybullet client at all.
"""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a spawned process; its result is returned and its exception re-raised here.
    ``fn`` must be a module-level function (it is pickled by name)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)
