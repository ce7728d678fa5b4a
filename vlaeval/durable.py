"""Writing files so that a crash at any byte leaves the old file or the new one, never a mix, and
reading the JSON ones back.

Every file vlaeval writes must be readable after a crash (a killed run, a full disk, a power
loss): results, manifests, reports, trainer outputs.  Appending one fsync'ed line at a time (the
episode log) is one way; everything else that is rewritten goes through :func:`replace_durably`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from vlaeval.errors import VlaevalError


def replace_durably(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through a temporary file in its directory, fsync it, rename it over ``path``
    and fsync the directory: readers see the old file or the new one, even after a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`replace_durably` for a UTF-8 text file."""
    data = text.encode("utf-8")
    replace_durably(path, lambda fh: fh.write(data))


def read_json_object(path: str | os.PathLike[str], what: str = "", missing: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; anything else is a one-line :class:`VlaevalError` naming the file.

    Args:
        what: the file's role, put before every message (e.g. ``"LeRobot policy DIR"``).
        missing: what a missing file means, added to that message (e.g. ``"DIR is not a run"``).
    """
    path = Path(path)
    prefix = f"{what}: " if what else ""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise VlaevalError(f"{prefix}{path} does not exist" + (f": {missing}" if missing else "")) from None
    except (OSError, ValueError) as exc:
        raise VlaevalError(f"{prefix}cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise VlaevalError(f"{prefix}cannot read {path}: it holds a JSON {type(data).__name__}, not an object")
    return data
