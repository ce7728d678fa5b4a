"""Protocol fingerprints: everything that can change a score, in one canonical, hashable record.

Two runs' numbers are comparable only if they were produced the same way: the same episodes
(indices, seeds, tasks, initial conditions), the same budgets and termination rules, the same
action convention and control rate, the same agent runtime and chunking, the same observations
at the same resolutions, and the same simulator and renderer.  The suite version covers deliberate
changes to a suite; the fingerprint also covers what a user or a machine changes without touching
the suite (``--agent-opt runtime=onnx``, ``action_horizon=5``, another ManiSkill release, a camera
resolution, an NVIDIA machine instead of lavapipe).

Everything is taken as plain arguments, so the runner (at run start), a report (reading two
manifests) and a test build the same record without sharing runner internals.  Field names are
stable dotted paths (``agent.options.action_horizon``), which is what :func:`diff_fingerprints`
reports and what a gate can be told to accept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from importlib import metadata
from typing import Any, Mapping, Sequence

from vlaeval.conventions import AgentSpec
from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.results.store import canonical_json

#: Bumped when the record's layout changes, so an old manifest's fingerprint is not misread.
FINGERPRINT_VERSION = 1
#: The runner's episode loop (:func:`vlaeval.evaluators.episode.run_episode`), in words: part of
#: the record because a change to it moves every score without touching any suite.
EPISODE_LOOP = ("env reset once per episode; agent reset before every subtask; at most max_steps steps per subtask; "
                "a subtask succeeds at the first step whose info['is_success'] is true; terminated or truncated ends "
                "the episode; a chain stops at its first failed subtask")
#: Packages whose versions can change what a simulator computes or draws, or what a runtime outputs.
SCORE_PACKAGES = ("pybullet", "mani_skill", "sapien", "gymnasium", "numpy", "torch", "transformers", "onnxruntime", "tensorrt")
#: Fields that describe the agent under test rather than the evaluation: runs of different agents
#: differ there by design, so report notes them only between runs of one agent and gate never refuses them.
SUBJECT_FIELDS = ("agent",)
#: Marks a field that one fingerprint has and the other lacks, in :func:`diff_fingerprints`.
ABSENT = "<absent>"


def protocol_fingerprint(
    *,
    suite: SuiteSpec,
    setting: str,
    episodes: Sequence[EpisodeSpec],
    agent: str,
    agent_spec: AgentSpec,
    action_type: str,
    agent_options: Mapping[str, Any] | None = None,
    runtime: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    observation_shapes: Mapping[str, Sequence[int]] | None = None,
    control_hz: float | None = None,
    versions: Mapping[str, str] | None = None,
    renderer: Mapping[str, Any] | None = None,
    protocol_episodes: Sequence[EpisodeSpec] | None = None,
) -> dict[str, Any]:
    """The canonical description of how a run's scores were produced.

    Args:
        suite, setting, episodes: the suite spec, the setting's name and the episodes played (in order).
        agent: the agent's name or URI as given; ``agent_spec`` its declared conventions and
            ``action_type`` the type negotiated with the suite.
        agent_options: constructor options, ideally with the constructor's defaults filled in
            (:func:`agent_option_defaults`), so "not given" and "given as the default" agree.
        runtime: the runtime actually used (e.g. what ``runtime=auto`` resolved to), if known.
        env_kwargs: keyword arguments the environment was made with (cameras, action mode, overlay, ...).
        observation_shapes: observation key -> shape, from the environment's observation space
            (:func:`observation_shapes`); the resolutions the agent saw.
        control_hz: the environment's control rate (its ``metadata["render_fps"]`` for the built-in suites).
        versions: package versions (default: :func:`score_versions`).
        renderer: renderer, driver and device (a render fingerprint's ``renderer``), if recorded.
        protocol_episodes: the suite's whole episode list for this setting and seed, of which
            ``episodes`` are the first; its hash lets :func:`protocol_differences` tell a run of 200
            episodes from a run of other episodes when it is compared with a run of 1000.

    The record holds JSON values only (tuples become lists), so it equals itself read back from a manifest.
    """
    options = dict(agent_options or {})
    record = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "suite": {"name": suite.name, "version": suite.version, "setting": setting, "env_ids": list(suite.env_ids)},
        "episodes": {"count": len(episodes), "sha256": episodes_hash(episodes),
                     "indices": _ranges([e.index for e in episodes]),
                     "protocol_sha256": None if protocol_episodes is None else episodes_hash(protocol_episodes)},
        "termination": {"max_steps": suite.protocol.max_steps, "chain_length": suite.protocol.chain_length, "loop": EPISODE_LOOP},
        "control_hz": control_hz,
        "action": {"type": action_type, "rotation": suite.conventions.rotation, "gripper": suite.conventions.gripper,
                   "agent_rotation": agent_spec.rotation, "agent_gripper": agent_spec.gripper},
        "agent": {"name": agent, "runtime": runtime or options.get("runtime"), "options": options,
                  "observation_keys": list(agent_spec.observation_keys), "privileged": agent_spec.privileged},
        "observations": {k: list(v) for k, v in sorted((observation_shapes or {}).items())},
        "env": dict(env_kwargs or {}),
        "versions": dict(score_versions() if versions is None else versions),
        "renderer": dict(renderer or {}),
    }
    return json.loads(canonical_json(record))


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """SHA-256 of the fingerprint's canonical JSON (sorted keys, tuples as lists)."""
    return hashlib.sha256(canonical_json(fingerprint).encode()).hexdigest()


def diff_fingerprints(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, value in a, value in b)`` for every leaf field that differs, by dotted path.

    Lists are leaves (an observation shape, the agent's observation keys); a field only one side
    has shows :data:`ABSENT` on the other.
    """
    flat_a, flat_b = _flatten(a), _flatten(b)
    out = []
    for key in sorted(set(flat_a) | set(flat_b)):
        va, vb = flat_a.get(key, ABSENT), flat_b.get(key, ABSENT)
        if canonical_json(va) != canonical_json(vb):
            out.append((key, va, vb))
    return out


def protocol_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """:func:`diff_fingerprints` of two runs' fingerprints, except that runs of different sizes
    drawn from one episode list do not differ by their episodes.

    Users gate a run of 200 chains against a baseline of 1000: the first 200 of the same seeded
    list are a smaller sample of the same episodes, not other episodes, and the gate's unpaired
    tests are made for samples of different sizes.  That holds when both record the same
    ``episodes.protocol_sha256`` and each played a prefix ``0..n-1`` of that list; anything else
    (another seed, other indices, a fingerprint that cannot tell) stays a difference.
    """
    differences = diff_fingerprints(a, b)
    if _same_list_prefixes(a, b):
        differences = [d for d in differences if d[0] not in _EPISODE_SIZE_FIELDS]
    return differences


def accepted(name: str, patterns: Sequence[str]) -> bool:
    """Whether a differing field is one a user accepted: a pattern names it or a group above it
    (``versions`` accepts ``versions.pybullet``; ``version`` does not)."""
    return any(name == p or name.startswith(f"{p}.") for p in patterns)


def describe_difference(name: str, a: Any, b: Any, where: tuple[str, str]) -> str:
    """``versions.pybullet: '3.2.7' in the baseline, '3.2.6' in the run``, with hashes and long
    values shortened so the line stays readable."""
    return f"{name}: {_short(a)} in {where[0]}, {_short(b)} in {where[1]}"


def episodes_hash(episodes: Sequence[EpisodeSpec]) -> str:
    """SHA-256 of the episode list: index, tasks, instructions, seed and initial conditions of each."""
    return hashlib.sha256(canonical_json([dataclasses.asdict(e) for e in episodes]).encode()).hexdigest()


def observation_shapes(observation_space: Any) -> dict[str, list[int]]:
    """Key -> shape of a Gymnasium ``Dict`` observation space's array entries (text entries have none)."""
    spaces = getattr(observation_space, "spaces", {})
    return {k: list(s.shape) for k, s in spaces.items() if getattr(s, "shape", None)}


def score_versions() -> dict[str, str]:
    """Installed versions of :data:`SCORE_PACKAGES` (absent packages are left out)."""
    out = {}
    for name in SCORE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def agent_option_defaults(factory: Any) -> dict[str, Any]:
    """The keyword defaults of an agent class or factory (``runtime="auto"``, ``action_horizon=1``).

    Merged under the given options, they make a run that spelled out a default and one that
    left it out fingerprint the same, and a changed default show up as a difference.
    """
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters
            if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            out.update(_flatten(item, f"{path}."))
        else:
            out[path] = item
    return out


#: The fields that differ between runs of different sizes on one episode list.
_EPISODE_SIZE_FIELDS = ("episodes.count", "episodes.indices", "episodes.sha256")


def _same_list_prefixes(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ea, eb = (_mapping(fp.get("episodes")) for fp in (a, b))
    source = ea.get("protocol_sha256")
    return source is not None and source == eb.get("protocol_sha256") and all(_is_prefix(e) for e in (ea, eb))


def _is_prefix(episodes: Mapping[str, Any]) -> bool:
    count = episodes.get("count")
    return isinstance(count, int) and count > 0 and episodes.get("indices") == _ranges(range(count))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _short(value: Any) -> str:
    text = ABSENT if value == ABSENT else canonical_json(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _ranges(indices: Sequence[int]) -> str:
    """``0-49`` or ``0-9,20,30-31``: which episodes, readable in a diff (the hash says the rest)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
