#!/usr/bin/env bash
# Set up everything vlaeval needs on a fresh Debian 12 machine, idempotently:
#   scripts/setup.sh [EXTRAS]      e.g. scripts/setup.sh dev,agents,onnx,remote
# Creates ./.venv (override with VLAEVAL_VENV), installs the CPU build of torch first when an
# extra needs it (an unpinned torch would pull GBs of CUDA wheels), then vlaeval itself.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
venv="${VLAEVAL_VENV:-.venv}"
python="${PYTHON:-python3}"
pip_quiet=(--quiet --disable-pip-version-check)

apt_install() {  # apt packages, only when missing (root on CI; sudo elsewhere)
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# PyBullet's wheel is self-contained; the venv module and a compiler cover source builds.
"$python" -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install "${pip_quiet[@]}" --upgrade pip setuptools wheel

case ",$extras," in
  *,agents,*|*,train,*|*,torch,*|*,all,*)
    "$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install "${pip_quiet[@]}" "torch==2.13.0" ;;
esac

spec="."
[ -n "$extras" ] && spec=".[${extras}]"
"$venv/bin/python" -m pip install "${pip_quiet[@]}" -e "$spec"
echo "setup: ready ($("$venv/bin/vlaeval" --version), extras: ${extras:-none}) in $venv"
