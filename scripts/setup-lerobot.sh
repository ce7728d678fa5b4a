#!/usr/bin/env bash
# Set up ./.venv-lerobot (override with VLAEVAL_LEROBOT_VENV), idempotently: LeRobot 0.6 and
# vlaeval[lerobot,dev] editable, for recording LeRobotDatasets, `lerobot-train` and `--agent lerobot:DIR`,
# and FFmpeg's libraries from apt.
#   bash scripts/setup-lerobot.sh && .venv-lerobot/bin/python -m pytest tests/agents/test_lerobot.py
# A venv of its own because lerobot 0.6 needs Python >= 3.12 and torch < 2.12, while .venv is
# Python 3.11 with torch 2.13. PyPI's torch 2.11 for Linux is a CUDA build: with its NVIDIA
# libraries the venv is several GB (README, "LeRobot", has the measured size and time). pybullet
# has no Python 3.12 wheel, so the first setup on a machine compiles it; pip caches that wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VLAEVAL_LEROBOT_VENV:-.venv-lerobot}"
pip_quiet=(--quiet --disable-pip-version-check)

is_312() { [ -n "$1" ] && "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

python=""
for candidate in "${PYTHON312:-}" "$(command -v python3.12 || true)" \
                 "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python 2>/dev/null | sort -V | tail -1)"; do
  if is_312 "$candidate"; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
  echo "setup-lerobot: lerobot 0.6 needs Python 3.12 with venv; none found (set PYTHON312=/path/to/python3.12)" >&2
  exit 1
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"

# FFmpeg's shared libraries for torchcodec, LeRobot's video decoder: without them every dataset
# LeRobot opens logs a page-long warning, and LeRobot's default (video) datasets cannot be read.
if ! ldconfig -p | grep -q 'libavformat\.so'; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup-lerobot: apt-get install ffmpeg"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi

# Same stamp logic as scripts/setup.sh: nothing is reinstalled while pyproject.toml and this
# script are unchanged and both packages import.
stamp="$venv/.vlaeval-setup"
want_hash="$(cat pyproject.toml scripts/setup-lerobot.sh | sha256sum | cut -d' ' -f1)"
installed=false
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_hash" ] && "$venv/bin/python" -c "import lerobot, vlaeval" 2>/dev/null && installed=true
if ! $installed; then
  "$venv/bin/python" -m pip install "${pip_quiet[@]}" --upgrade pip  # not setuptools: lerobot pins it below 82
  PYTHONWARNINGS="ignore::UserWarning" "$venv/bin/python" -m pip install "${pip_quiet[@]}" -e ".[lerobot,dev]"
  echo "$want_hash" > "$stamp"
fi
echo "setup-lerobot: ready ($("$venv/bin/python" -c 'import lerobot, torch, sys; print(f"lerobot {lerobot.__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}")')$($installed && echo '; already installed, nothing to do')) in $venv"
