"""Writing files so that a crash at any byte leaves the old file or the new one, never a mix.

Every file vlaeval writes must be readable after a crash (a killed run, a full disk, a power
loss): results, manifests, reports, trainer outputs.  Appending one fsync'ed line at a time (the
episode log) is one way; everything else that is rewritten goes through :func:`replace_durably`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


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
