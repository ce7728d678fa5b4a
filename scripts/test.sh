#!/usr/bin/env bash
# Set up and run the test suite (what CI runs through .ci/run):
#   scripts/test.sh [pytest args]     e.g. scripts/test.sh -m slow
# The default run leaves out tests marked slow or gpu; its summary says how many and how to run them.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VLAEVAL_VENV:-.venv}"

bash scripts/setup.sh dev,agents,onnx,remote,ray,simpler,train,video
# upstream CALVIN (calvin_env) for the calvin-upstream suite's tests, from the vendored copy where
# there is one (no registry serves it; elsewhere those tests skip and say why)
if compgen -G "../shared/vendor/calvin_env-*.tar.gz" >/dev/null; then bash scripts/install-calvin-upstream.sh; fi

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-m "not slow and not gpu")
set +e
"$venv/bin/python" -m pytest "${args[@]}"
status=$?
set -e
[ $status -eq 5 ] && { echo "test: no tests were collected"; exit 1; }
exit $status
