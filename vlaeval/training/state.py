"""Trainer state on disk (optimizer, scheduler, RNGs, step) without pickle.

``torch.save`` of an optimizer's ``state_dict`` is a pickle, and unpickling a file from a run
directory runs whatever code it names, so a crafted run directory could take over ``vlaeval train
--resume``.  Here the state is one safetensors file: every tensor and numpy array of the state
tree is a named tensor, and the rest of the tree (step, hyper-parameters, param-group scalars,
RNG states as integers) is JSON in the safetensors header, with each tensor replaced by a
reference to its name.  Reading it parses JSON and raw tensor bytes only.

One file rather than a safetensors + JSON pair so that one atomic ``os.replace`` swaps both:
a kill at any byte leaves the previous state (or none) readable, never a torn pair.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlaeval.errors import VlaevalError

STATE_FILE = "trainer_state.safetensors"
#: Pickled trainer state written by vlaeval before this format; never read, only recognised.
LEGACY_STATE_FILE = "trainer_state.pt"
FORMAT = "vlaeval-trainer-state/1"
_HEADER_KEY = "vlaeval_trainer_state"


class TrainerStateError(VlaevalError):
    """A trainer state file cannot be read; the message says what to do."""


def save_state(path: Path, tree: Any) -> None:
    """Write ``tree`` (nested dicts/lists/tuples of tensors, arrays, numbers, str, None) atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    header = json.dumps({"format": FORMAT, "tree": _encode(tree, tensors)}, allow_nan=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_HEADER_KEY: header})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def load_state(path: Path, *, restart_hint: str) -> Any:
    """Read a tree written by :func:`save_state`; ``restart_hint`` tells the user what to do if it is unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})[_HEADER_KEY])
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}, expected {FORMAT!r}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return _decode(header["tree"], tensors)
    except (OSError, SafetensorError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainerStateError(f"cannot read trainer state {path} ({reason}); {restart_hint}") from None


def rng_states() -> dict[str, Any]:
    """The global RNGs a training step may draw from (torch, numpy's legacy global, python)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


# Markers are single-key objects; a dict with a non-string key (optimizer ``state`` is keyed by
# parameter index) is stored as a list of pairs so the keys come back as ints.
def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": _encode(torch.from_numpy(np.ascontiguousarray(obj)), tensors)["__tensor__"]}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, tensors) for k, v in obj.items()}}
        return {"__pairs__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"trainer state cannot hold a {type(obj).__name__}")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) != 1:
        raise ValueError("malformed state tree")
    (marker, value), = obj.items()
    if marker == "__tensor__":
        return tensors[value]
    if marker == "__ndarray__":
        return tensors[value].numpy()
    if marker == "__dict__":
        return {k: _decode(v, tensors) for k, v in value.items()}
    if marker == "__pairs__":
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
    if marker == "__tuple__":
        return tuple(_decode(v, tensors) for v in value)
    raise ValueError(f"unknown marker {marker!r} in state tree")
