"""What both ends of a served agent agree on: msgpack frames carrying numpy arrays, and message contents.

Arrays follow openpi's msgpack-numpy convention, the de-facto wire format of served robot policies
(RoboArena, SimplerEnv-OpenVLA, VLABench and vla-eval reuse it): an ndarray travels as
``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape}`` and a numpy
scalar as ``{b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}``.  The markers are encoded
as msgpack *bin* keys exactly as openpi does, so openpi peers read our frames; decoding accepts both
bin and str keys because some reimplementations use str keys.

Decoding only ever builds arrays from raw bytes and a dtype *string*.  Object and void dtypes are
refused because they are how pickled Python objects or records holding them get in; complex dtypes
are refused as openpi does (msgpack has no complex scalar, so peers disagree on them).  Nothing
received is executed or unpickled.

Sizes are checked before anything is built from them: a frame is at most
:data:`MAX_MESSAGE_BYTES` and holds at most :data:`MAX_ITEMS` list and map entries (a frame of
one-byte msgpack values would otherwise decode into a Python object per byte, gigabytes from a
256 MiB frame), and the gymnasium spaces a ``bind`` declares are measured from their
declared shapes (:func:`check_spaces`) before :func:`decode_context` materialises them, because
a Box's bounds are allocated at its declared shape however few bytes declared it.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import asdict, fields
from importlib import metadata
from typing import Any

import msgpack
import numpy as np
from gymnasium import spaces

from vlaeval.agents.base import AgentContext
from vlaeval.conventions import AgentSpec

#: Bumped on any incompatible change to the messages below; client and server refuse a mismatch.
PROTOCOL_VERSION = 1

#: Largest frame either side accepts: a batch of several camera images with headroom, while a
#: runaway peer still cannot exhaust memory.
MAX_MESSAGE_BYTES = 256 * 2**20

#: Most entries of all lists and maps of one frame together, and of any one of them.  Arrays
#: travel as bytes, so real messages hold a few hundred entries; this still admits an image sent
#: as nested lists.  While decoding, the finished containers hold at most MAX_ITEMS entries and
#: the unfinished ones (at most msgpack's 1024 nesting levels) at most MAX_CONTAINER_ITEMS each:
#: some 10M Python objects in the worst case, against one per byte (256M) without the bounds.
MAX_ITEMS = 2**20
MAX_CONTAINER_ITEMS = 2**13

#: Most bytes the Box spaces declared in one ``bind`` may describe: elements of each declared shape
#: times the dtype's size, summed over the action and observation spaces.  gymnasium allocates
#: ``low``, ``high`` and two masks at that many elements, so a bind can make the server allocate a
#: small multiple of this, not gigabytes; four 1080p RGB cameras (25 MiB) still fit.
MAX_SPACE_BYTES = 32 * 2**20

#: Deepest nesting of Dict spaces, and most spaces of any kind, in one ``bind``: real observation
#: spaces are a Dict of a few cameras and state vectors, sometimes grouped one level deeper.
MAX_SPACE_DEPTH = 8
MAX_SPACES = 1024

#: Most dimensions of a declared Box (numpy's own limit is 64).
_MAX_DIMS = 32

_REJECTED_KINDS = {"O": "object", "V": "void", "c": "complex"}


class WireError(ValueError):
    """A frame is not valid msgpack, or carries an array this codec refuses."""


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (nested dicts, lists, str, numbers, numpy arrays and scalars) as one frame."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode one frame produced by :func:`packb` or by openpi's ``msgpack_numpy.packb``.

    msgpack bounds each list or map (``max_array_len``, ``max_map_len``) before building it, and
    the hooks, called as each one is finished, charge its entries to the frame's budget (see
    :data:`MAX_ITEMS`).
    """
    left = MAX_ITEMS
    too_many = f"frame holds more than {MAX_ITEMS} list and map entries; send arrays as numpy arrays"
    too_long = f"a list or map in the frame holds more than {MAX_CONTAINER_ITEMS} entries; send arrays as numpy arrays"

    def charge(n: int) -> None:
        nonlocal left
        left -= n
        if left < 0:
            raise WireError(too_many)

    def on_list(items: list) -> list:
        charge(len(items))
        return items

    def on_map(obj: dict) -> Any:
        charge(len(obj))
        return _decode(obj)

    try:
        return msgpack.unpackb(data, object_hook=on_map, list_hook=on_list, raw=False,
                               max_array_len=MAX_CONTAINER_ITEMS, max_map_len=MAX_CONTAINER_ITEMS)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        if "exceeds max_array_len" in str(exc) or "exceeds max_map_len" in str(exc):
            raise WireError(too_long) from exc
        raise WireError(f"undecodable frame: {exc}") from exc


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        _check_dtype(obj.dtype)
        if isinstance(obj, np.ndarray):
            return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    if isinstance(obj, Mapping):  # observations are often read-only mappings, not dicts
        return dict(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the wire")


def _decode(obj: dict) -> Any:
    if _field(obj, "__ndarray__") is True:
        dtype = _dtype(_field(obj, "dtype"))
        shape = _field(obj, "shape")
        data = _field(obj, "data")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise WireError(f"array shape must be a list of non-negative ints, got {shape!r}")
        if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
            raise WireError(f"array data does not hold shape {tuple(shape)} of {dtype}")
        # Copy so the agent gets a writable array it owns, as it would in-process.
        return np.ndarray(shape, dtype=dtype, buffer=data).copy()
    if _field(obj, "__npgeneric__") is True:
        return _dtype(_field(obj, "dtype")).type(_field(obj, "data"))
    return obj


def _field(obj: dict, name: str) -> Any:
    return obj.get(name.encode(), obj.get(name))


def _dtype(descr: Any) -> np.dtype:
    # Only a plain string: list or tuple descriptions would build structured (record) dtypes.
    if not isinstance(descr, str):
        raise WireError(f"dtype must be a string, got {descr!r}")
    try:
        dtype = np.dtype(descr)
    except TypeError as exc:
        raise WireError(f"unknown dtype {descr!r}") from exc
    _check_dtype(dtype)
    return dtype


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in _REJECTED_KINDS:
        raise WireError(f"{_REJECTED_KINDS[dtype.kind]} dtype {dtype} is not allowed on the wire")


# -- message contents ---------------------------------------------------------------------------


def vlaeval_version() -> str:
    """The installed vlaeval version, reported in the handshake to explain protocol mismatches."""
    try:
        return metadata.version("vlaeval")
    except metadata.PackageNotFoundError:  # running from a source checkout
        return "unknown"


def spec_to_dict(spec: AgentSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_dict(data: Mapping[str, Any]) -> AgentSpec:
    """Rebuild a spec, ignoring fields a newer peer added so old clients still connect."""
    names = {f.name for f in fields(AgentSpec)}
    return AgentSpec(**{k: v for k, v in data.items() if k in names})


def encode_space(space: Any) -> dict[str, Any] | None:
    """The parts of a gymnasium space agents use (bounds, sizes); None for kinds not sent.

    Agents commonly read ``action_space.low/high`` to un-normalise actions, so Box bounds must
    reach the server; subspaces of a Dict that cannot be sent are left out.
    """
    if isinstance(space, spaces.Box):
        return {"space": "Box", "low": space.low, "high": space.high, "shape": space.shape, "dtype": space.dtype.str}
    if isinstance(space, spaces.Discrete):
        return {"space": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Dict):
        encoded = {key: encode_space(sub) for key, sub in space.spaces.items()}
        return {"space": "Dict", "spaces": {key: sub for key, sub in encoded.items() if sub is not None}}
    return None


def check_spaces(*encoded: Any) -> None:
    """Refuse encoded spaces that are malformed or too large, judging only their declarations.

    Nothing is allocated, so a 154-byte frame declaring a (100000, 100000) Box costs microseconds
    instead of 40 GB; the limits (:data:`MAX_SPACE_BYTES`, :data:`MAX_SPACE_DEPTH`,
    :data:`MAX_SPACES`) apply to all of ``encoded`` together, as they arrive in one message.
    """
    tally = _SpaceTally()
    for data in encoded:
        if data is not None:
            tally.add(data, depth=1)
    if tally.nbytes > MAX_SPACE_BYTES:
        raise WireError(
            f"the declared spaces describe {tally.nbytes} bytes of Box bounds, over the limit of "
            f"{MAX_SPACE_BYTES} bytes ({MAX_SPACE_BYTES >> 20} MiB)"
        )


class _SpaceTally:
    """Walks encoded spaces, counting them and the bytes their Boxes would take."""

    def __init__(self) -> None:
        self.spaces = 0
        self.nbytes = 0

    def add(self, data: Any, depth: int) -> None:
        self.spaces += 1
        if self.spaces > MAX_SPACES:
            raise WireError(f"more than {MAX_SPACES} spaces declared")
        if depth > MAX_SPACE_DEPTH:
            raise WireError(f"the declared spaces nest deeper than {MAX_SPACE_DEPTH} levels")
        if not isinstance(data, Mapping):
            raise WireError(f"a space must be a map, not {type(data).__name__}")
        kind = data.get("space")
        if kind == "Box":
            shape = data.get("shape")
            if not (isinstance(shape, (list, tuple)) and len(shape) <= _MAX_DIMS
                    and all(type(n) is int and n >= 0 for n in shape)):
                raise WireError(f"Box shape must be a list of at most {_MAX_DIMS} non-negative ints, got {reprlib.repr(shape)}")
            dtype = _dtype(data.get("dtype"))
            if dtype.kind not in "biuf":
                raise WireError(f"Box dtype must be bool, integer or float, not {dtype}")
            self.nbytes += math.prod(shape) * dtype.itemsize
        elif kind == "Discrete":
            if not (type(data.get("n")) is int and type(data.get("start")) is int):
                raise WireError("Discrete space needs int n and start")
        elif kind == "Dict":
            subspaces = data.get("spaces")
            if not isinstance(subspaces, Mapping):
                raise WireError("Dict space needs a map of subspaces")
            for sub in subspaces.values():
                self.add(sub, depth + 1)
        else:
            raise WireError(f"unknown space kind {reprlib.repr(kind)}")


def _build_space(data: Mapping[str, Any] | None) -> spaces.Space | None:
    """The space :func:`encode_space` sent; only for data :func:`check_spaces` accepted."""
    if data is None:
        return None
    kind = data["space"]
    if kind == "Box":
        return spaces.Box(low=data["low"], high=data["high"], shape=tuple(data["shape"]), dtype=_dtype(data["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    return spaces.Dict({key: _build_space(sub) for key, sub in data["spaces"].items()})


def encode_context(context: AgentContext) -> dict[str, Any]:
    """The serialisable part of a bind context.

    ``env`` never travels (privileged agents cannot be served) and ``options`` stay on the client:
    the served agent was configured by whoever started the server.
    """
    return {
        "suite": context.suite,
        "setting": context.setting,
        "action_type": context.action_type,
        "action_space": encode_space(context.action_space),
        "observation_space": encode_space(context.observation_space),
    }


def decode_context(message: Mapping[str, Any]) -> AgentContext:
    """Rebuild a bind context; its spaces are checked together before either is built."""
    action_space, observation_space = message.get("action_space"), message.get("observation_space")
    check_spaces(action_space, observation_space)
    return AgentContext(
        suite=message["suite"],
        setting=message["setting"],
        action_type=message["action_type"],
        action_space=_build_space(action_space),
        observation_space=_build_space(observation_space),
    )
