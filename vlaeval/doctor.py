"""``vlaeval doctor``: can this machine evaluate each installed suite, and the way the reference did?

Most "my numbers don't match" reports are machine problems that no test in the code catches: a
Vulkan loader that silently fell back to a software rasteriser, an ICD variable pointing at a
driver that is gone, a renderer that draws differently from the machine the baseline came from,
or too little memory for the workers asked for.  Each check says ok, warn or fail, with the fix;
only a fail (the suite cannot run here) makes the exit status non-zero, so setup scripts can run
it without stopping for a warning.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Sequence

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
#: Resident memory of one worker's environment and harness, measured with a one-episode run on
#: this project's machine (calvin, both cameras: 0.18 GB; simpler, 224 px camera: 0.74 GB);
#: the agent's model comes on top (kosmos-lstm-tiny on ONNX Runtime: about 0.5 GB).
WORKER_MEMORY_GB = {"calvin": 0.2, "simpler": 0.8}
DEFAULT_WORKER_MEMORY_GB = 0.5
#: Simulator packages a built-in suite cannot run without (module names).
SIMULATORS = {"calvin": ("pybullet",), "simpler": ("mani_skill", "sapien")}
#: SAPIEN's renderer needs at least this Mesa release when it runs on lavapipe.
MIN_MESA = (24, 3)
#: Seconds the Vulkan probe (a subprocess that loads SAPIEN) and a render fingerprint may take.
PROBE_TIMEOUT = 120.0
RENDER_TIMEOUT = 300.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    scope: str  # "system" or a suite name
    name: str
    status: str  # ok, warn, fail or skip
    detail: str
    fix: str = ""


def run_doctor(suites: Sequence[str] | None = None) -> list[Check]:
    """System checks, then per suite (default: every registered suite whose simulator is installed)."""
    from vlaeval.plugins.manager import registries

    registered = [e.name for e in registries().suite]
    asked = list(suites) if suites else registered
    checks = [_python(), _packages()]
    for name in asked:
        registries().suite.get(name)  # a did-you-mean error for a typo
        missing = [m for m in SIMULATORS.get(name, ()) if find_spec(m) is None]
        if missing:
            checks.append(Check(name, "simulator", FAIL if suites else SKIP, f"not installed ({', '.join(missing)} missing)",
                                f"bash scripts/setup.sh {name}"))
            continue
        suite_checks = _SUITE_CHECKS.get(name, list)()
        if not any(c.status == FAIL for c in suite_checks):
            suite_checks.append(_render(name, requested=bool(suites)))
        checks += suite_checks
        if not any(c.status == SKIP for c in suite_checks):
            checks.append(_memory(name))
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """The table: one line per check, its fix indented below it, and a count."""
    width = max(len(f"{c.scope} {c.name}") for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper() if c.status in (WARN, FAIL) else c.status:<5} {f'{c.scope} {c.name}':<{width}}  {c.detail}")
        if c.fix and c.status in (WARN, FAIL):
            lines.append(f"{'':<5} {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in (OK, WARN, FAIL, SKIP)}
    lines.append("doctor: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != SKIP))
    return "\n".join(lines) + "\n"


def failed(checks: Sequence[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def _python() -> Check:
    from vlaeval.version import __version__

    return Check("system", "python", OK, f"Python {platform.python_version()} ({sys.executable}), vlaeval {__version__}, "
                                          f"{platform.machine()}, {os.cpu_count()} CPUs")


def _packages() -> Check:
    from vlaeval.results.fingerprint import score_versions

    versions = score_versions()
    return Check("system", "packages", OK, ", ".join(f"{k} {v}" for k, v in versions.items()) or "none of the simulator or model packages")


def _calvin() -> list[Check]:
    from vlaeval.envs.calvin.cameras import renderer_info

    info = renderer_info()
    return [Check("calvin", "renderer", OK, f"{info['renderer']} (pybullet {info['pybullet']}): CPU only, no GPU, OpenGL or EGL needed")]


def _simpler() -> list[Check]:
    """ICD variables, then which Vulkan device SAPIEN really gets (probed in a subprocess: a broken
    driver can take the process that loads it down with it)."""
    from vlaeval.envs.simpler.vulkan import ICD_VARIABLES, LAVAPIPE_ICD, NVIDIA_ICDS

    nvidia = [str(p) for p in NVIDIA_ICDS if p.exists()]
    for variable in ICD_VARIABLES:
        value = os.environ.get(variable)
        if value is None:
            continue
        gone = [p for p in value.split(os.pathsep) if p and not Path(p).exists()]
        if gone:
            return [Check("simpler", "vulkan", FAIL, f"{variable} names {', '.join(gone)}, which does not exist: no Vulkan driver can load",
                          f"unset {variable} (vlaeval picks lavapipe or the NVIDIA driver itself) or point it at an existing ICD, "
                          f"e.g. {nvidia[0] if nvidia else LAVAPIPE_ICD}")]
    try:
        probe = subprocess.run([sys.executable, "-c", "import json; from vlaeval.envs.simpler.vulkan import renderer_info; "
                                "print(json.dumps(renderer_info()))"], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [Check("simpler", "vulkan", FAIL, f"loading SAPIEN's Vulkan renderer did not finish within {PROBE_TIMEOUT:g} s",
                      "check the GPU driver (nvidia-smi) or use lavapipe: VK_ICD_FILENAMES=" + str(LAVAPIPE_ICD))]
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return [Check("simpler", "vulkan", FAIL, f"SAPIEN cannot render: {reason}",
                      "install a Vulkan driver: the NVIDIA driver on a GPU machine, else Mesa's lavapipe >= 24.3 "
                      "(bash scripts/setup.sh simpler installs it from bookworm-backports)")]
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    where = f"{info['device']} via {info['icd']}"
    if info["driver"].startswith("lavapipe"):
        mesa = info.get("mesa", "unknown")
        if _older_than(mesa, MIN_MESA):
            return [Check("simpler", "vulkan", FAIL, f"lavapipe from Mesa {mesa} ({where}); SAPIEN needs Mesa >= {'.'.join(map(str, MIN_MESA))}",
                          "bash scripts/setup.sh simpler (installs mesa-vulkan-drivers from bookworm-backports)")]
        if nvidia:
            return [Check("simpler", "vulkan", WARN, f"software rendering on lavapipe (Mesa {mesa}, {where}) although an NVIDIA driver is "
                          f"installed ({', '.join(nvidia)}): slow, and frames differ from a GPU machine's",
                          "unset VK_ICD_FILENAMES / VK_DRIVER_FILES, or check the NVIDIA driver with nvidia-smi")]
        return [Check("simpler", "vulkan", OK, f"software rendering on lavapipe (Mesa {mesa}, {where}); no GPU driver here, as expected")]
    return [Check("simpler", "vulkan", OK, f"{info['driver']}: {where}")]


_SUITE_CHECKS: dict[str, Callable[[], list[Check]]] = {"calvin": _calvin, "simpler": _simpler}


def _render(suite: str, requested: bool) -> Check:
    """This machine's first frames against the suite's committed reference.

    Rendered in a process of its own, like a worker: a simulator that crashes or holds global
    state (pybullet's client 0, a Vulkan device) then affects neither the doctor nor the next suite.
    A suite that cannot start with a user-facing error (a plugin suite whose simulator is not
    installed) is skipped unless it was asked for.
    """
    from vlaeval.envs.fingerprint import compare_render, identical_frames, load_reference

    try:
        done = subprocess.run([sys.executable, "-m", "vlaeval.envs.fingerprint", suite], capture_output=True, text=True,
                              timeout=RENDER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Check(suite, "render", FAIL, f"resetting the suite's environment took more than {RENDER_TIMEOUT:g} s")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if done.returncode == 2 and not requested:
            return Check(suite, "render", SKIP, f"cannot start here: {reason.removeprefix('error: ')}")
        return Check(suite, "render", FAIL, f"cannot reset the suite's environment: {reason.removeprefix('error: ')}",
                     f"reinstall the suite's simulator (bash scripts/setup.sh {suite})" if suite in SIMULATORS else "")
    fingerprint = json.loads(done.stdout.strip().splitlines()[-1])
    if not fingerprint["frames"]:
        return Check(suite, "render", OK, "no camera observations: nothing to fingerprint")
    reference = load_reference(suite)
    if reference is None:
        return Check(suite, "render", WARN, "no render reference to compare with",
                     f"record one on a trusted machine: python -m vlaeval.envs.fingerprint --write {suite}")
    differences = compare_render(fingerprint, reference)
    same, total = identical_frames(fingerprint, reference)
    if differences:
        return Check(suite, "render", WARN, f"frames differ from the reference ({same}/{total} bit-identical): " + "; ".join(differences),
                     "scores of image-based agents may not match runs made on the reference machine; compare runs made on one "
                     f"renderer, or record a new reference: python -m vlaeval.envs.fingerprint --write {suite}")
    exact = "bit-identical" if same == total else f"{same} of {total} bit-identical, the rest within tolerance"
    return Check(suite, "render", OK, f"{total} first frames match the reference ({exact}; {fingerprint['renderer'].get('device', '')})")


def _memory(suite: str) -> Check:
    need = WORKER_MEMORY_GB.get(suite, DEFAULT_WORKER_MEMORY_GB)
    available = _available_gb()
    cpus = os.cpu_count() or 1
    room = int(available // need)
    detail = (f"{available:.1f} GB available; a worker needs about {need:g} GB plus its agent's model: "
              f"room for {room} workers on {cpus} CPUs")
    if room < 1:
        return Check(suite, "memory", FAIL, detail, "free memory or use a machine with more: not even one worker fits")
    if room < cpus:
        return Check(suite, "memory", WARN, detail, f"run with --workers {room} or fewer")
    return Check(suite, "memory", OK, detail)


def _available_gb() -> float:
    """MemAvailable (what can be allocated without swapping), else free physical pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def _older_than(version: str, minimum: tuple[int, int]) -> bool:
    """Whether a Debian version string (``25.0.7-2~bpo12+1``) is below ``minimum``; unknown is not."""
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) < minimum
    except (ValueError, IndexError):
        return False
