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

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

apt_install() {  # apt_install [-t SUITE] PACKAGE...  (root on CI; sudo elsewhere)
  local release=()
  [ "${1:-}" = "-t" ] && { release=(-t "$2"); shift 2; }
  echo "setup: apt-get install ${release[*]} $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${release[@]}" "$@" >/dev/null
}

# PyBullet's wheel is self-contained; the venv module and a compiler cover source builds.
"$python" -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"

# What the last successful install covered: a hash of pyproject.toml and the extras installed.
# When it covers this request, nothing is reinstalled (a second run takes a second and prints
# only the ready line); a changed pyproject.toml or a new extra reinstalls, keeping earlier extras.
stamp="$venv/.vlaeval-setup"
want_hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have_hash=""; have_extras=""
[ -f "$stamp" ] && { have_hash="$(sed -n 1p "$stamp")"; have_extras="$(sed -n 2p "$stamp")"; }
[ "$have_hash" = "$want_hash" ] || have_extras=""
missing=""
for extra in ${extras//,/ }; do
  case ",$have_extras," in *,"$extra",*) ;; *) missing="$missing,$extra" ;; esac
done
installed=false
"$venv/bin/python" -c "import vlaeval" 2>/dev/null && [ "$have_hash" = "$want_hash" ] && [ -z "$missing" ] && installed=true
$installed || "$venv/bin/python" -m pip install "${pip_quiet[@]}" --upgrade pip setuptools wheel

case ",$extras," in
  *,simpler,*)
    # SAPIEN renders through Vulkan; without a GPU driver that is Mesa's lavapipe, which must be
    # >= 24.3 (bookworm has 22.x, bookworm-backports 25.x).
    if [ ! -e /usr/share/vulkan/icd.d/nvidia_icd.json ] && ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)" ge 24.3; then
      if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $sudo tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
      fi
      apt_install -t bookworm-backports mesa-vulkan-drivers
    fi ;;
esac

case ",$extras," in
  *,dev,*)
    # The HTML report's test renders the page in headless Chromium (skipped where it is absent).
    [ -x /usr/bin/chromium ] || apt_install chromium ;;
esac

case ",$extras," in
  *,agents,*|*,train,*|*,torch,*|*,simpler,*)
    "$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install "${pip_quiet[@]}" "torch==2.13.0" ;;
esac

all_extras="$(echo "${have_extras},${extras}" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
if ! $installed; then
  spec="."
  [ -n "$all_extras" ] && spec=".[${all_extras}]"
  # setuptools' editable-install notice is a UserWarning box printed on every install; it says
  # nothing about this project, so the build backend is told to keep it to itself.
  PYTHONWARNINGS="ignore::UserWarning" "$venv/bin/python" -m pip install "${pip_quiet[@]}" -e "$spec"
  printf '%s\n%s\n' "$want_hash" "$all_extras" > "$stamp"
fi
echo "setup: ready ($("$venv/bin/vlaeval" --version), extras: ${all_extras:-none}$($installed && echo '; already installed, nothing to do')) in $venv"
# Can this machine run each installed suite as the reference machine did? Checked after an install
# (it takes ~30 s: each suite renders a few frames); `vlaeval doctor` checks again at any time.
# Warnings leave the exit status 0; a fail stops here.
$installed || "$venv/bin/vlaeval" doctor
