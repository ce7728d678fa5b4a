"""A run's manifest: what it records about the run, and how the run's scores were produced.

The manifest is started (or, on resume, continued with a new session) by :func:`_start_manifest`,
with the versions, git revision, host and times of the run; :class:`_Provenance` adds the protocol
and render fingerprints as the workers report their environments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import os
import platform
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Sequence

from vlaeval.conventions import AgentSpec
from vlaeval.envs.suite import EpisodeSpec, SuiteSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.config import RunConfig, _config_dict
from vlaeval.plugins.manager import load_suite
from vlaeval.results.fingerprint import (
    agent_option_defaults,
    describe_difference,
    fingerprint_hash,
    protocol_differences,
    protocol_fingerprint,
)

TRACKED_PACKAGES = ("numpy", "gymnasium", "pluggy", "pandas", "pybullet", "torch", "transformers", "onnxruntime", "mani_skill")
#: Seconds a run waits at its end for a render fingerprint still being taken (simpler: 10-25 s).
RENDER_TIMEOUT = 180.0


class _Provenance:
    """How a run's scores were produced: its protocol fingerprint and render fingerprint, in its manifest.

    ``manifest["fingerprint"]`` (``config_hash``) is what the user asked for, the fields a resume
    checks so that rows of two configurations never mix in one run.  ``manifest["protocol"]``
    (``protocol_hash``, :mod:`vlaeval.results.fingerprint`) is everything that changes a score,
    asked for or not (package versions, the observation shapes and control rate the environment
    really has, the renderer): what ``report`` and ``gate`` compare between runs.  Its
    environment half exists only where environments are built, in the workers, so it is
    completed at the first ``ready``.  Agent options are filled in with the registered target's
    keyword defaults; a factory taking ``**options`` (``kosmos-lstm*``) declares none, and a runtime
    picked at the first step (``runtime=auto``) is recorded as requested: pin ``--runtime`` to make
    the runtime itself part of the protocol.  Each resumed session recomputes the protocol; a
    difference from the recorded one (other than more episodes) is printed and listed in the
    session as ``protocol_differences``, and the protocol now in force is kept.

    The render fingerprint (:mod:`vlaeval.envs.fingerprint`) is taken only when the agent reads a
    camera, once per run (a resumed session keeps a recorded one), by the driver in a subprocess
    (``python -m vlaeval.envs.fingerprint``) started at the first ``ready``.  Not in the workers: W
    of them would take it W times, and a worker's agent would wait for it; not in the driver's
    own process: simpler builds a SAPIEN scene for it (10-25 s, a Vulkan device), which the
    process holding the results store should neither wait for nor keep loaded.  So it costs no
    wall time while episodes play; a run that ends first waits for it, at most
    :data:`RENDER_TIMEOUT`.  It describes the machine running ``vlaeval run``; with Ray, other
    nodes may render otherwise (``vlaeval doctor`` on each checks that).  Thumbnails are left out
    of the manifest (about 2 kB per frame and camera): they only serve the tolerance check against
    the committed reference, done here, and frame hashes tell runs apart exactly.
    """

    def __init__(self, manifest: dict[str, Any], config: RunConfig, spec: SuiteSpec, episodes: Sequence[EpisodeSpec],
                 protocol_episodes: Sequence[EpisodeSpec]) -> None:
        self.manifest, self.config, self.spec = manifest, config, spec
        self.episodes, self.protocol_episodes = episodes, protocol_episodes
        self.render: _RenderCheck | None = None

    def ready(self, payload: dict[str, Any]) -> None:
        """Fingerprint the protocol from a worker's ready payload (its ``env`` entry is removed)."""
        env = payload.pop("env", {})
        agent_spec = AgentSpec(**payload["spec"])
        recorded = self.manifest.get("render")
        if any(k.startswith("rgb") for k in agent_spec.observation_keys) and not (isinstance(recorded, dict) and "renderer" in recorded):
            self.render = _RenderCheck(self.spec.name)
        renderer = recorded.get("renderer") if isinstance(recorded, dict) and self.render is None else None
        protocol = protocol_fingerprint(
            suite=self.spec, setting=self.config.setting, episodes=self.episodes, agent=self.config.agent, agent_spec=agent_spec,
            action_type=payload["action_type"], agent_options=_option_defaults(self.config.agent) | dict(self.config.agent_options),
            env_kwargs=env.get("env_kwargs"), observation_shapes=env.get("observation_shapes"), control_hz=env.get("control_hz"),
            renderer=renderer, protocol_episodes=self.protocol_episodes,
        )
        before = self.manifest.get("protocol")
        if isinstance(before, dict):
            changed = protocol_differences(before, protocol)
            for name, old, new in changed:
                print(f"warning: this session's protocol differs from the run's: "
                      f"{describe_difference(name, old, new, ('the finished episodes', 'this session'))}", file=sys.stderr)
            if changed:
                self.manifest["sessions"][-1]["protocol_differences"] = [name for name, _, _ in changed]
        self._set(protocol)

    def poll(self) -> bool:
        """Record the render fingerprint if it has just finished; whether the manifest changed."""
        if self.render is None or not self.render.done():
            return False
        self._record(self.render.result())
        return True

    def finish(self, *, wait: bool) -> None:
        """At the run's end: wait for the render fingerprint (a finished run) or drop it."""
        if self.render is None:
            return
        if wait:
            if not self.render.done():
                print(f"waiting for the render fingerprint of {self.spec.name!r} (at most {RENDER_TIMEOUT:g} s)", file=sys.stderr)
            self._record(self.render.result(RENDER_TIMEOUT))
        else:
            self.render.cancel()
            self.render = None

    def _record(self, result: tuple[dict[str, Any] | None, str | None]) -> None:
        from vlaeval.envs.fingerprint import compare_render, load_reference

        self.render = None
        fp, error = result
        if fp is None:
            print(f"warning: render fingerprint of {self.spec.name!r} not taken: {error}", file=sys.stderr)
            self.manifest["render"] = {"error": error}
            return
        try:
            reference = load_reference(self.spec.name)
        except VlaevalError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            reference = None
        differences = compare_render(fp, reference) if reference is not None else []
        for line in differences:
            print(f"warning: render fingerprint of {self.spec.name!r} differs from its reference: {line}", file=sys.stderr)
        self.manifest["render"] = {"renderer": fp["renderer"], "frames": [{k: v for k, v in f.items() if k != "thumbnail_png"} for f in fp["frames"]],
                                   "reference": reference is not None, "differences": differences}
        if isinstance(self.manifest.get("protocol"), dict):
            self._set({**self.manifest["protocol"], "renderer": dict(fp["renderer"])})

    def _set(self, protocol: dict[str, Any]) -> None:
        self.manifest["protocol"] = protocol
        self.manifest["protocol_hash"] = fingerprint_hash(protocol)


class _RenderCheck:
    """``python -m vlaeval.envs.fingerprint SUITE`` running beside the evaluation (see :class:`_Provenance`)."""

    def __init__(self, suite: str) -> None:
        import tempfile

        self.suite = suite
        self.errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: warnings can never fill it and stall the child
        self.proc = subprocess.Popen([sys.executable, "-m", "vlaeval.envs.fingerprint", suite], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.errors, text=True)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def result(self, timeout: float | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """(the fingerprint, None) or (None, why there is none)."""
        import json

        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            return None, f"still running after {timeout:g} s; see `vlaeval doctor --suite {self.suite}`"
        self.errors.seek(0)
        lines = [line.strip() for line in self.errors.read().splitlines() if line.strip()]
        self.errors.close()
        if self.proc.returncode != 0 or not out.strip():
            return None, (lines[-1] if lines else f"exit status {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1]), None

    def cancel(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.errors.close()


def _option_defaults(agent: str) -> dict[str, Any]:
    """The constructor defaults of a registered agent (already imported by :func:`vlaeval.evaluators.runner._preflight`);
    none for URIs, paths and instances, whose constructors the driver does not know."""
    from vlaeval.plugins.manager import registries

    agents = registries().agent
    return agent_option_defaults(agents.get(agent).load()) if agent in agents else {}


def _start_manifest(manifest: dict[str, Any], run_id: str, config: RunConfig, spec: SuiteSpec, workers: int, pending: int) -> dict[str, Any]:
    from vlaeval.version import __version__

    if not manifest:
        setting = spec.setting(config.setting)
        manifest = {
            "run_id": run_id,
            "vlaeval_version": __version__,
            "config": _config_dict(config),
            "suite": {
                "name": spec.name,
                "version": spec.version,
                "setting": config.setting,
                "train_scenes": list(setting.train_scenes),
                "protocol": dataclasses.asdict(spec.protocol),
                "env_ids": list(spec.env_ids),
            },
            "seeds": {"base": config.seed, "per_episode": "SeedSequence([base, episode index]); see the seed column"},
            "versions": _versions(spec),
            "git": _git_revision(),
            "host": {"hostname": socket.gethostname(), "user": _user(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "started_at": _now(),
            "finished_at": None,
            "status": "running",
            "sessions": [],
        }
    manifest["status"] = "running"
    manifest["sessions"].append({"started": _now(), "ended": None, "pid": os.getpid(), "workers": workers, "pending": pending})
    return manifest


def _versions(spec: SuiteSpec) -> dict[str, str]:
    from importlib import metadata

    from vlaeval.version import __version__

    out = {"python": platform.python_version(), "vlaeval": __version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    reported = getattr(load_suite(spec), "versions", None)  # a suite's simulator may have no package version (calvin_env: a git revision)
    if callable(reported):
        out.update(reported())
    return out


def _git_revision() -> dict[str, Any] | None:
    """The revision of the vlaeval checkout in use, if it is one (editable installs)."""
    src = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _new_run_id(suite: str, agent: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_agent = "".join(c if c.isalnum() or c in "-_" else "_" for c in agent)[:40]
    return f"{stamp}-{suite}-{safe_agent}-{uuid.uuid4().hex[:6]}"
