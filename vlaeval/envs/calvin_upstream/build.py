"""Upstream's ``PlayTableSimEnv`` and its ``Tasks`` oracle, built the way upstream builds them.

Everything that needs upstream's env (the ``calvin-upstream`` suite, the predicate cross-check,
``benchmarks/bench_calvin.py``) gets it from :func:`make_upstream_env` and lets it go with
:func:`close_upstream_env`, so all of them simulate the same configuration: hydra's compose API
on upstream's own ``conf/config_data_collection.yaml`` with the overrides of :data:`OVERRIDES`
(scene D, the longer-finger Panda, no GUI, TinyRenderer instead of EGL) and
``cameras=static_and_gripper`` (200x200 static + 84x84 gripper) or ``cameras=no_cameras``, then
``hydra.utils.instantiate(cfg.env, show_gui=False, use_vr=False, use_scene_info=True)``; the
oracle is ``conf/tasks/new_playtable_tasks.yaml`` (the config's ``tasks`` group) bound to
``calvin_env.envs.tasks.Tasks``, as upstream's evaluation binds it.

**One upstream env per process, on pybullet client 0.**  Upstream creates its robot's pedestal
and counts the robot's degrees of freedom without a client id, i.e. on pybullet's default client
0; an env on any other client would put its pedestal into (and read its IK rest pose from)
whatever world holds client 0, and a second env in the same process would do that to the first.
:func:`make_upstream_env` therefore refuses to build while client 0 is taken: build the upstream
env first in a process (later pybullet clients, such as the ``calvin`` suite's own env, are
unaffected) and run further upstream envs in their own processes.

Two things are adapted, neither of which touches the simulation: upstream's log line with its git
revision (GitPython, which fails outside a git checkout) reports the revision vlaeval found
instead, and what upstream prints while it connects, builds and disconnects (pybullet's C-level
``argv[0]=``, gym's deprecation notice, ``disconnecting id 0 from server``) is kept off the
terminal.
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any, Iterator

from vlaeval.envs.calvin.bullet import _silenced_fds, pb
from vlaeval.envs.calvin_upstream.install import installation
from vlaeval.errors import VlaevalError

#: The compose overrides upstream's data collection uses, minus VR and GUI, on TinyRenderer.
OVERRIDES = ("use_vr=false", "scene=calvin_scene_D", "robot=panda_longer_finger", "env.show_gui=false",
             "env.use_egl=false")
#: Upstream's camera configs by "does the agent read a camera".
CAMERA_CONFIGS = {True: "static_and_gripper", False: "no_cameras"}
#: The pybullet client upstream's env must own (see the module docstring).
UPSTREAM_CLIENT = 0


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep upstream's prints, warnings and pybullet's C output off stdout and stderr (an
    exception still propagates, with its traceback, after they are restored)."""
    with _silenced_fds(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@functools.lru_cache(maxsize=2)
def upstream_config(cameras: bool) -> Any:
    """Upstream's composed data-collection config (an OmegaConf ``DictConfig``) for scene D."""
    from hydra import compose, initialize_config_dir

    with quiet(), initialize_config_dir(config_dir=str(installation().conf), version_base=None):
        return compose("config_data_collection", overrides=[*OVERRIDES, f"cameras={CAMERA_CONFIGS[cameras]}"])


def make_upstream_env(cameras: bool) -> tuple[Any, Any]:
    """A fresh upstream ``PlayTableSimEnv`` of scene D and the ``Tasks`` oracle that judges it.

    Args:
        cameras: render the static (200x200) and gripper (84x84) cameras in every observation,
            or none at all.

    Returns:
        ``(env, tasks_oracle)``: ``env.reset(robot_obs=..., scene_obs=...)`` and ``env.step(action)``
        (7 relative values, gripper exactly +1 or -1) as upstream defines them, ``env.get_info()``
        the info dict the oracle reads; ``tasks_oracle.get_task_info_for_set(start_info, info,
        {task})`` is upstream's success test.  Close the env with :func:`close_upstream_env`.

    Raises:
        VlaevalError: calvin_env is not installed or misses its assets (one line saying how to
            install it), or pybullet client 0 of this process is taken.
    """
    import hydra

    found = installation()
    if pb.isConnected(UPSTREAM_CLIENT):
        raise VlaevalError(
            "calvin-upstream needs pybullet client 0 of its process, which another simulator holds (upstream "
            "creates bodies without a client id): build upstream's env first, one per process (--workers N, "
            "not --envs-per-worker in one process)")
    config = upstream_config(cameras)
    with quiet():
        from calvin_env.envs import play_table_env

        play_table_env.get_git_commit_hash = lambda _path: found.revision
        env = hydra.utils.instantiate(config.env, show_gui=False, use_vr=False, use_scene_info=True)
    if env.cid != UPSTREAM_CLIENT:  # pybullet handed out another id: its pedestal went elsewhere
        close_upstream_env(env)
        raise VlaevalError(f"upstream's env got pybullet client {env.cid}, not {UPSTREAM_CLIENT}; run it in a fresh process")
    return env, hydra.utils.instantiate(config.tasks)


def close_upstream_env(env: Any) -> None:
    """Disconnect an upstream env now, for good.

    Upstream's ``__del__`` calls ``close()`` again, which disconnects the client id the env had,
    whichever env holds that id by then; the instance's ``close`` is replaced by a no-op so that a
    late garbage collection cannot disconnect the next env on client 0.
    """
    with quiet():
        env.close()
    env.close = lambda: None
