#!/usr/bin/env bash
# Set up and run the test suite (what CI runs through .ci/run):
#   scripts/test.sh [pytest args]     e.g. scripts/test.sh -m slow
# The default run leaves out tests marked slow or gpu; its summary says how many and how to run them.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VLAEVAL_VENV:-.venv}"

bash scripts/setup.sh dev,agents,onnx,remote,ray,simpler,train

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-m "not slow and not gpu")
set +e
"$venv/bin/python" -m pytest "${args[@]}"
status=$?
set -e
[ $status -eq 5 ] && { echo "test: no tests were collected"; exit 1; }
exit $status
