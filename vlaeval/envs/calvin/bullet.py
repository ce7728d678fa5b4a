"""PyBullet, imported without its ``pybullet build time: ...`` banner.

The C extension prints that line when it loads, once per process: three times for a two-worker
run. Every vlaeval module takes ``pb`` from here, so the first import, wherever it happens, is
the quiet one; later imports are Python's module cache and print nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from types import ModuleType
from typing import Iterator


@contextlib.contextmanager
def _silenced_fds() -> Iterator[None]:
    """Point file descriptors 1 and 2 at /dev/null for the duration.

    The banner is C output, which redirecting ``sys.stdout``/``sys.stderr`` cannot catch, so the
    descriptors themselves are swapped; C's buffers are flushed before they are restored, or
    buffered output would come out later anyway. A failing import raises after the restore, so
    its traceback is still shown.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # a standard descriptor is closed: there is no output to keep clean
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
        ctypes.CDLL(None).fflush(None)
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _import_quietly() -> ModuleType:
    if "pybullet" not in sys.modules:
        with _silenced_fds():
            import pybullet  # noqa: F401
    return sys.modules["pybullet"]


pb = _import_quietly()
