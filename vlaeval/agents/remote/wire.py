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
"""

from __future__ import annotations

import math
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

_REJECTED_KINDS = {"O": "object", "V": "void", "c": "complex"}


class WireError(ValueError):
    """A frame is not valid msgpack, or carries an array this codec refuses."""


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (nested dicts, lists, str, numbers, numpy arrays and scalars) as one frame."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode one frame produced by :func:`packb` or by openpi's ``msgpack_numpy.packb``."""
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
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


def decode_space(data: Mapping[str, Any] | None) -> spaces.Space | None:
    if data is None:
        return None
    kind = data.get("space")
    if kind == "Box":
        return spaces.Box(low=data["low"], high=data["high"], shape=tuple(data["shape"]), dtype=_dtype(data["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if kind == "Dict":
        return spaces.Dict({key: decode_space(sub) for key, sub in data["spaces"].items()})
    raise WireError(f"unknown space kind {kind!r}")


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
    return AgentContext(
        suite=message["suite"],
        setting=message["setting"],
        action_type=message["action_type"],
        action_space=decode_space(message.get("action_space")),
        observation_space=decode_space(message.get("observation_space")),
    )
