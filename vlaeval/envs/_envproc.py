"""The subprocess behind :class:`~vlaeval.envs.pool.AsyncEnvPool`: one env, driven over a socket.

``python -m vlaeval.envs._envproc FD``.  Messages: ``("make", suite, setting, agent_spec,
action_type)`` -> ``("ok", (action_space, observation_space))`` or ``("fatal", message)``;
``("reset", seed, options)`` and ``("step", action)`` -> ``("ok", outcome)``; ``("close",)``.
The process ends when its parent closes the socket (or dies).
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection


def main(fd: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the socket
    conn = Connection(fd)
    env = None
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "make":
                try:
                    env = _make(*message[1:])
                except BaseException as exc:  # noqa: BLE001 - reported to the parent
                    conn.send(("fatal", _fatal_text(exc, message[1])))
                    return
                conn.send(("ok", (env.action_space, env.observation_space)))
            elif kind == "reset":
                from vlaeval.envs.pool import reset_outcome

                conn.send(("ok", reset_outcome(env, message[1], message[2])))
            elif kind == "step":
                from vlaeval.envs.pool import step_outcome

                conn.send(("ok", step_outcome(env, message[1])))
            elif kind == "close":
                return
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:
                pass
        conn.close()


def _make(suite: str, setting: str, agent_spec: object, action_type: str) -> object:
    """The registered suite's env, built by its ``make_env`` as in the runner's process."""
    from vlaeval.plugins.manager import load_suite, suite_spec

    return load_suite(suite_spec(suite)).make_env(setting, agent_spec, action_type)


def _fatal_text(exc: BaseException, suite: str) -> str:
    from vlaeval.errors import VlaevalError

    if isinstance(exc, VlaevalError):
        return str(exc)
    return f"suite {suite!r} cannot start its environment: {type(exc).__name__}: {exc}"


if __name__ == "__main__":
    main(int(sys.argv[1]))
