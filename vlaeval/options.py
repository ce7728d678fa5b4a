"""``KEY=VALUE`` options from the command line (``--agent-opt``, ``--model-opt``).

One parser for every command, so the same text means the same value everywhere; it sits in the
bottom layer, next to the errors, because the CLI and the trainers both parse options and neither
may import the other's heavy modules (the trainers' torch) to get at it.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from vlaeval.errors import VlaevalError


def parse_options(pairs: Iterable[str], flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse as JSON (numbers, booleans, lists),
    else text, so ``skill=0.5`` is a number and ``runtime=onnx`` needs no quotes.

    Args:
        flag: the option the pairs came from, named in the error for a malformed pair.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VlaevalError(f"invalid value for {flag}: {pair!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
