"""Render fingerprints: does this machine draw a suite's cameras the way the reference machine did?

A policy that reads pixels can change its score when only the renderer changed: a driver update,
a GPU machine against lavapipe, a new pybullet build, a Vulkan loader that silently fell back to
software.  None of that shows in the code or the suite version, so a fingerprint resets a fixed
set of the suite's own protocol episodes (first, middle and last of its default setting's list,
which for ``simpler`` are three different tasks) through :meth:`Suite.make_env`, exactly as an
evaluation does, and records for the first frame of each camera its SHA-256 and a 32x32
thumbnail, together with the renderer, driver and device that drew it.

Comparison is exact where it can be and explicit where it cannot: equal hashes match; otherwise
the thumbnails (box-filtered, so a renderer's edge and sampling noise averages out while a moved
object or a changed light does not) may differ by at most the tolerance stored in the suite's
reference file.  A committed reference (``render_reference.json`` next to the suite's module) is
written by :func:`write_reference` (``python -m vlaeval.envs.fingerprint --write SUITE``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from vlaeval.conventions import AgentSpec
from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError

REFERENCE_FILE = "render_reference.json"
THUMBNAIL_SIZE = 32
#: Thumbnail tolerance (0-255 levels) of a reference that does not state its own.  Measured on
#: the fingerprint frames: a 0.5 % wider field of view of the calvin static camera gives a mean
#: of 1.2-1.3 and a max of 28; a calvin block moved by 1 cm a max of 28-52 (mean 0.1); the
#: simpler eggplant moved by 1 cm a max of 19; a 2 % brighter simpler light a mean of 0.1-0.4 and
#: a max of 2-3, which passes (shading that close is the kind of difference the tolerance exists
#: for).  The max catches a change confined to a few thumbnail pixels, which the mean over 1024 of
#: them would hide.
DEFAULT_TOLERANCE = {"thumbnail_mean_abs": 1.0, "thumbnail_max_abs": 12.0}
#: Where each built-in suite describes its renderer (``module:function`` returning a flat dict).
RENDERER_INFO = {
    "calvin": "vlaeval.envs.calvin.cameras:renderer_info",
    "calvin-upstream": "vlaeval.envs.calvin.cameras:renderer_info",  # the same pybullet TinyRenderer
    "simpler": "vlaeval.envs.simpler.vulkan:renderer_info",
}


def render_fingerprint(suite: str) -> dict[str, Any]:
    """Reset the suite's fingerprint episodes and describe their first frames and the renderer.

    Every camera the suite's conventions list (observation keys starting with ``rgb``) is
    rendered; a suite without cameras yields an empty ``frames`` list.
    """
    from vlaeval.conventions import negotiate
    from vlaeval.plugins.manager import load_suite, suite_spec

    spec = suite_spec(suite)
    impl = load_suite(spec)
    setting = spec.settings[0].name
    agent = AgentSpec(observation_keys=tuple(k for k in spec.conventions.observation_keys if k.startswith("rgb")))
    action_type = negotiate(agent, spec.conventions, agent_name="render fingerprint", suite_name=spec.name)
    picked = pick_episodes(impl.episodes(setting, spec.protocol.seed))
    frames: list[dict[str, Any]] = []
    env = impl.make_env(setting, agent, action_type)
    try:
        for episode in picked:
            observation, _ = env.reset(seed=episode.seed, options=dict(episode.options))
            for camera in agent.observation_keys:
                frames.append({"episode": episode.index, "task": episode.tasks[0], "camera": camera,
                               **frame_fingerprint(np.asarray(observation[camera]))})
    finally:
        env.close()
    return {"suite": spec.name, "suite_version": spec.version, "setting": setting,
            "renderer": renderer_info(spec), "frames": frames}


def pick_episodes(episodes: Sequence[EpisodeSpec]) -> list[EpisodeSpec]:
    """First, middle and last episode (fewer when the list is shorter): fixed by the protocol,
    and spread over it, so a suite whose list is ordered by task shows several tasks."""
    chosen = sorted({0, len(episodes) // 2, len(episodes) - 1}) if episodes else []
    return [episodes[i] for i in chosen]


def frame_fingerprint(frame: np.ndarray) -> dict[str, Any]:
    """Shape, SHA-256 of the raw uint8 pixels, and a box-filtered thumbnail as base64 PNG."""
    from PIL import Image

    pixels = np.ascontiguousarray(frame, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX).save(buffer, format="PNG")
    return {"shape": list(pixels.shape), "sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
            "thumbnail_png": base64.b64encode(buffer.getvalue()).decode("ascii")}


def thumbnail(frame: Mapping[str, Any]) -> np.ndarray:
    """The thumbnail of a :func:`frame_fingerprint` entry as an int16 array (differences can go negative)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(frame["thumbnail_png"])))).astype(np.int16)


def renderer_info(spec: SuiteSpec) -> dict[str, Any]:
    """The suite's own description of its renderer, or just the suite name for suites that have none."""
    from vlaeval.plugins.registry import import_target

    target = RENDERER_INFO.get(spec.name)
    if target is None:
        return {"renderer": f"unknown (suite {spec.name!r} does not describe its renderer)"}
    return import_target(target, what=f"renderer description of suite {spec.name!r}")()


def compare_render(fingerprint: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """What differs between a fingerprint and a reference, one line each; empty when they match.

    Renderer fields are compared exactly (a driver change is worth knowing even when the pixels
    happen to agree); frames match when their hashes are equal or their thumbnails are within
    the reference's tolerance.
    """
    tolerance = {**DEFAULT_TOLERANCE, **reference.get("tolerance", {})}
    out = [f"{key}: {reference.get(key)!r} in the reference, {fingerprint.get(key)!r} here"
           for key in ("suite", "suite_version", "setting") if fingerprint.get(key) != reference.get(key)]
    ref_renderer, cur_renderer = reference.get("renderer", {}), fingerprint.get("renderer", {})
    out += [f"renderer changed: {key} {ref_renderer.get(key)!r} in the reference, {cur_renderer.get(key)!r} here"
            for key in sorted(set(ref_renderer) | set(cur_renderer)) if ref_renderer.get(key) != cur_renderer.get(key)]
    for where, ref, cur in _frame_pairs(fingerprint, reference):
        if cur is None:
            out.append(f"{where}: in the reference, not rendered here")
        elif ref is None:
            out.append(f"{where}: rendered here, not in the reference")
        elif cur["shape"] != ref["shape"]:
            out.append(f"{where}: frame shape {tuple(ref['shape'])} in the reference, {tuple(cur['shape'])} here")
        elif cur["sha256"] != ref["sha256"]:
            mean, peak = thumbnail_difference(cur, ref)
            if mean > tolerance["thumbnail_mean_abs"] or peak > tolerance["thumbnail_max_abs"]:
                out.append(f"{where}: pixels differ: thumbnail mean |diff| {mean:.2f}, max {peak:.0f} of 255 "
                           f"(tolerance {tolerance['thumbnail_mean_abs']:g} / {tolerance['thumbnail_max_abs']:g})")
    return out


def identical_frames(fingerprint: Mapping[str, Any], reference: Mapping[str, Any]) -> tuple[int, int]:
    """(frames bit-identical to the reference, frames in the reference): "within tolerance" and
    "bit-exact" are different statements, and doctor says which one holds."""
    pairs = list(_frame_pairs(fingerprint, reference))
    same = sum(1 for _, ref, cur in pairs if ref is not None and cur is not None and ref["sha256"] == cur["sha256"])
    return same, sum(1 for _, ref, _ in pairs if ref is not None)


def thumbnail_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, float]:
    """(mean, max) absolute difference of two frames' thumbnails, in 0-255 levels."""
    diff = np.abs(thumbnail(a) - thumbnail(b))
    return float(diff.mean()), float(diff.max())


def _frame_pairs(fingerprint: Mapping[str, Any], reference: Mapping[str, Any]
                 ) -> Iterator[tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """(label, reference frame or None, current frame or None) per (episode, camera), reference order first."""
    def keyed(fp: Mapping[str, Any]) -> dict[tuple[int, str], Mapping[str, Any]]:
        return {(f["episode"], f["camera"]): f for f in fp.get("frames", [])}

    ref, cur = keyed(reference), keyed(fingerprint)
    for key in [*ref, *(k for k in cur if k not in ref)]:
        yield f"episode {key[0]} {key[1]}", ref.get(key), cur.get(key)


def reference_path(suite: str) -> Path:
    """``render_reference.json`` in the package of the suite's implementation (plugins included)."""
    from vlaeval.plugins.manager import suite_spec

    module = suite_spec(suite).target.partition(":")[0]
    found = find_spec(module)
    if found is None or found.origin is None:
        raise VlaevalError(f"cannot locate the module {module!r} of suite {suite!r}")
    return Path(found.origin).parent / REFERENCE_FILE


def load_reference(suite: str) -> dict[str, Any] | None:
    """The suite's committed render reference, or None when it has none."""
    path = reference_path(suite)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VlaevalError(f"{path} is not a readable render reference ({exc}); write it again: "
                           f"python -m vlaeval.envs.fingerprint --write {suite}") from exc


def write_reference(suite: str) -> Path:
    """Fingerprint this machine's rendering as the suite's reference (keeping a tolerance the
    existing reference states) and return the file written."""
    path = reference_path(suite)
    previous = load_reference(suite) or {}
    reference = {**render_fingerprint(suite), "tolerance": previous.get("tolerance", dict(DEFAULT_TOLERANCE))}
    path.write_text(json.dumps(reference, indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vlaeval.envs.fingerprint SUITE... [--write]``: print this machine's fingerprints as
    JSON lines (what ``vlaeval doctor`` reads, in a process of its own), or write them as references."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vlaeval.envs.fingerprint", description=main.__doc__)
    parser.add_argument("suites", nargs="+", metavar="SUITE")
    parser.add_argument("--write", action="store_true", help="write each as the suite's committed reference")
    args = parser.parse_args(argv)
    try:
        for suite in args.suites:
            print(f"wrote {write_reference(suite)}" if args.write else json.dumps(render_fingerprint(suite)), flush=True)
    except VlaevalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
