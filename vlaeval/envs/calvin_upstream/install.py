"""Where upstream ``calvin_env`` is installed, which revision it is, and whether it can run.

No package registry serves ``calvin_env``: it is installed from a source checkout (or the vendored
tarball) by ``scripts/install-calvin-upstream.sh``, editable, because its scene and robot configs
point at the URDF/mesh folder ``data/`` next to the package, which a wheel would not carry.  This
module answers the questions a run asks before it builds anything (is it importable, are its
assets there, which revision is it) without importing pybullet, so a missing install fails in a
second with a one-line error that says how to install it.

``python -m vlaeval.envs.calvin_upstream.install`` prints ``SOURCE_ROOT REVISION`` when
calvin_env and everything its env imports are importable (exit 1 otherwise): the install
script's "already installed" test.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import multiprocessing
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from vlaeval.errors import VlaevalError

#: mees/calvin_env HEAD (2022-12-23): the revision this suite and its cross-check were validated on.
HEAD_REVISION = "797142c588c21e76717268b7b430958dbd13bf48"
#: The calvin_env revision mees/calvin pins as a submodule; it resets the button differently (spec §C.7).
PINNED_REVISION = "1431a46"
#: Written into an unpacked tarball by the install script: a tarball has no git metadata to ask.
REVISION_FILE = ".vlaeval-revision"
INSTALL_HINT = ("install it with `bash scripts/install-calvin-upstream.sh [CALVIN_ENV_CHECKOUT]` "
                "(a checkout of github.com/mees/calvin_env; see the README's calvin-upstream section)")
#: What PlayTableSimEnv imports besides calvin_env itself (the pip dependencies of the extra).
RUNTIME_MODULES = ("gym", "hydra", "hydra_plugins.hydra_colorlog", "omegaconf", "git", "quaternion", "cv2", "pybullet")


@dataclass(frozen=True)
class Installation:
    """An importable calvin_env.

    Attributes:
        root: its source root (holds ``calvin_env/``, ``conf/`` and ``data/``).
        revision: the git commit, as long as it is known (``unknown`` when nothing records it).
        kind: ``HEAD`` (797142c), ``submodule pin`` (1431a46, mees/calvin's) or ``other``.
    """

    root: Path
    revision: str
    kind: str

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def versions(self) -> dict[str, str]:
        """What a run's manifest records about it."""
        return {"calvin_env": self.revision, "calvin_env_revision": self.kind}


def revision_kind(revision: str) -> str:
    """``HEAD``, ``submodule pin`` or ``other``; short and full hashes both match."""
    short = revision[:7]
    if short and HEAD_REVISION.startswith(short):
        return "HEAD"
    if short and PINNED_REVISION.startswith(short):
        return "submodule pin"
    return "other"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read_revision(root: Path) -> str:
    """The commit of the calvin_env source at ``root``: from git when ``root`` is a checkout of
    calvin_env itself (a clone, or mees/calvin's submodule), else from the install script's
    marker, else from pip's record of a ``git+`` install, else ``unknown``.  A folder inside some
    other repository (e.g. an unpacked tarball in this project's ``.vendor/``) does not count as
    a checkout: its HEAD would be that repository's."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() == root.resolve():
        head = _git(root, "rev-parse", "HEAD")
        if head:
            return head
    marker = root / REVISION_FILE
    if marker.is_file():
        return marker.read_text().strip() or "unknown"
    try:
        direct = json.loads(metadata.distribution("calvin_env").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, json.JSONDecodeError):
        direct = {}
    return str(direct.get("vcs_info", {}).get("commit_id", "unknown"))


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


@functools.lru_cache(maxsize=1)
def installation() -> Installation:
    """The installed calvin_env, or a one-line :class:`VlaevalError` saying what is missing:
    the package (how to install it), a module its env imports, or the asset folder (its path)."""
    spec = importlib.util.find_spec("calvin_env")
    if spec is None or not spec.submodule_search_locations:
        raise VlaevalError(f"suite 'calvin-upstream' needs upstream CALVIN's calvin_env, which is not installed; {INSTALL_HINT}")
    missing = [name for name in RUNTIME_MODULES if not _importable(name)]
    if missing:
        raise VlaevalError(f"calvin_env is installed but its dependencies {', '.join(missing)} are not; {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))).resolve().parent
    found = Installation(root, "unknown", "other")
    for folder in (found.conf, found.data):
        if not folder.is_dir():
            raise VlaevalError(f"calvin_env's {folder.name} folder {folder} does not exist (a non-editable install "
                               f"leaves it behind); {INSTALL_HINT}")
    revision = read_revision(root)
    return Installation(root, revision, revision_kind(revision))


def check() -> Installation:
    """:func:`installation`, warning once (from the main process only) when it is not the
    revision this suite was validated on."""
    found = installation()
    if found.kind != "HEAD" and multiprocessing.parent_process() is None:
        _warn_once(found)
    return found


@functools.lru_cache(maxsize=1)
def _warn_once(found: Installation) -> None:
    what = {"submodule pin": "mees/calvin's submodule pin, whose button reset differs (spec §C.7)",
            "other": "an untested revision"}[found.kind]
    logging.getLogger("vlaeval").warning(
        "warning: calvin_env at %s is revision %s (%s), not %s that calvin-upstream was validated on",
        found.root, found.revision, what, HEAD_REVISION[:7])


def main() -> int:
    try:
        found = installation()
    except VlaevalError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(found.root, found.revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
