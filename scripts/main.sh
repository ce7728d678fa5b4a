#!/usr/bin/env bash
# Set up everything, then run the main job, `vlaeval run --agent kosmos-lstm --suite calvin`, and
# print its report:
#   scripts/main.sh [vlaeval run options]       e.g. scripts/main.sh --episodes 100 --workers 2
#
# kosmos-lstm needs the pretrained Kosmos-2 weights in the local Hugging Face cache (HF_HOME) and,
# to mean anything, a trained policy head: KOSMOS_CHECKPOINT=DIR (a `vlaeval train bc`
# checkpoint). A machine that reaches only package registries cannot download the weights; there
# the script says so and runs the best real evaluation available instead: the scripted expert on
# the same episodes (by default the full CALVIN protocol, 1000 chains: the suite's upper bound), so
# the command always does real work and never pretends a random policy is a result.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VLAEVAL_VENV:-.venv}"

bash scripts/setup.sh agents,onnx

run_id="main-$(date +%Y%m%d-%H%M%S)"
out="${VLAEVAL_RUNS:-runs}"
workers="$(nproc 2>/dev/null || echo 1)"
if "$venv/bin/python" -c "
import sys
from huggingface_hub import try_to_load_from_cache
sys.exit(0 if isinstance(try_to_load_from_cache('microsoft/kosmos-2-patch14-224', 'config.json'), str) else 1)
"; then
  agent=(--agent kosmos-lstm)
  [ -n "${KOSMOS_CHECKPOINT:-}" ] && agent+=(--checkpoint "$KOSMOS_CHECKPOINT")
else
  what="the full protocol (1000 chains)" prev=""
  for arg in "$@"; do
    case "$prev" in -n|--episodes) what="the first $arg chains" ;; esac
    case "$arg" in --episodes=*) what="the first ${arg#--episodes=} chains" ;; -n?*) what="the first ${arg#-n} chains" ;; esac
    prev="$arg"
  done
  echo "main: microsoft/kosmos-2-patch14-224 is not in the local Hugging Face cache, so kosmos-lstm cannot run" \
       "here (get it with: hf download microsoft/kosmos-2-patch14-224 on a connected machine," \
       "then copy the cache and set HF_HOME); evaluating the scripted expert on $what instead" >&2
  agent=(--agent expert)
fi

"$venv/bin/vlaeval" run "${agent[@]}" --suite calvin --workers "$workers" --out "$out" --run-id "$run_id" "$@"
"$venv/bin/vlaeval" report "$out/$run_id"
