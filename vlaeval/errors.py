"""User-facing errors.

Anything raised as a :class:`VlaevalError` is a problem the user can fix (unknown name, bad
option, unreadable file); the CLI prints its message on one line and exits with status 2 instead
of showing a traceback.
"""

from __future__ import annotations


class VlaevalError(Exception):
    """A problem in what the user asked for, with a message that says what to do."""


class UnknownNameError(VlaevalError, KeyError):
    """A name (agent, suite, setting, metric, reporter, trainer) that nothing registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(VlaevalError):
    """Two plugins registered the same name."""
