#!/usr/bin/env bash
# Install upstream CALVIN's simulator, calvin_env, into the project venv (${VLAEVAL_VENV:-.venv}),
# for the `calvin-upstream` suite:
#   scripts/install-calvin-upstream.sh [SRC]
# SRC is a checkout of github.com/mees/calvin_env (or mees/calvin's calvin_env submodule); it is
# installed editable, in place, because its configs find the URDF/mesh folder data/ next to the
# package. Without SRC the vendored tarball ../shared/vendor/calvin_env-<rev>.tar.gz is unpacked
# into .vendor/calvin_env-<rev>/ (git-ignored) and installed from there; a tarball has no git
# history, so its revision (from the file name) is written next to it for the run manifests.
# The pip dependencies are the `calvin-upstream` extra of pyproject.toml. Idempotent: when that
# source is already installed at that revision with its dependencies, nothing is reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VLAEVAL_VENV:-.venv}"
pip_quiet=(--quiet --disable-pip-version-check)
say() { echo "install-calvin-upstream: $*"; }

"$venv/bin/python" -c "import vlaeval" 2>/dev/null || bash scripts/setup.sh
python="$venv/bin/python"

if [ $# -ge 1 ]; then
  [ -f "$1/calvin_env/__init__.py" ] && [ -d "$1/conf" ] \
    || { say "error: $1 is not a calvin_env checkout (no calvin_env/__init__.py and conf/ in it)" >&2; exit 2; }
  src="$(cd "$1" && pwd)"
  rev="$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)"
else
  tarballs=(../shared/vendor/calvin_env-*.tar.gz)
  [ -f "${tarballs[0]}" ] || { say "error: no ../shared/vendor/calvin_env-*.tar.gz; pass a calvin_env checkout: $0 SRC" \
                                   "(git clone https://github.com/mees/calvin_env SRC)" >&2; exit 2; }
  tarball="${tarballs[-1]}"
  rev="${tarball##*/calvin_env-}"; rev="${rev%.tar.gz}"
  src="$PWD/.vendor/calvin_env-$rev"
  if [ ! -f "$src/.vlaeval-revision" ]; then  # written last: a half-unpacked folder is unpacked again
    rm -rf "$src" && mkdir -p .vendor
    tmp="$(mktemp -d .vendor/.unpack.XXXXXX)"
    tar -xzf "$tarball" -C "$tmp"
    mv "$tmp/calvin_env" "$src" && rmdir "$tmp"
    echo "$rev" > "$src/.vlaeval-revision"
  fi
fi

have="$("$python" -m vlaeval.envs.calvin_upstream.install 2>/dev/null || true)"
case "$have" in
  "$src $rev"*) say "ready (calvin_env $rev from $src; already installed, nothing to do)"; exit 0 ;;
esac

# The extra's requirements, read from pyproject.toml (the one list). opencv-python-headless is
# skipped where some cv2 is already importable (e.g. opencv-python from the simpler extra): two
# OpenCV distributions would overwrite each other's cv2 package.
mapfile -t deps < <("$python" - <<'EOF'
import importlib.util, tomllib
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["calvin-upstream"]:
    if not (requirement.startswith("opencv-python-headless") and importlib.util.find_spec("cv2")):
        print(requirement)
EOF
)
say "installing ${deps[*]} and calvin_env $rev from $src"
"$python" -m pip install "${pip_quiet[@]}" "${deps[@]}"
PYTHONWARNINGS="ignore::UserWarning" "$python" -m pip install "${pip_quiet[@]}" --no-deps --no-build-isolation -e "$src"
have="$("$python" -m vlaeval.envs.calvin_upstream.install)"
say "ready (calvin_env ${have#* } from ${have%% *})"
