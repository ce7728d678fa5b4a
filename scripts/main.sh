#!/usr/bin/env bash
# Set up everything, then run the main job, `vlaeval run --agent kosmos-lstm --suite calvin`, and
# print its report:
#   scripts/main.sh [vlaeval run options]       e.g. scripts/main.sh --episodes 100 --workers 2
#
# kosmos-lstm needs the pretrained Kosmos-2 weights in the local Hugging Face cache and a trained
# policy head (KOSMOS_CHECKPOINT=DIR, a `vlaeval train bc` checkpoint). Where the weights are not
# cached (they cannot be downloaded on a machine that reaches only package registries), the same
# evaluation runs with the same architecture at tiny scale: kosmos-lstm-tiny and the checkpoint
# the project trained by behaviour cloning on expert demonstrations from scenes A, B and C
# (README, "Training"), evaluated ABC->D. Nothing is downloaded from a model hub either way.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VLAEVAL_VENV:-.venv}"

bash scripts/setup.sh agents,onnx

run_id="main-$(date +%Y%m%d-%H%M%S)"
out="${VLAEVAL_RUNS:-runs}"
if "$venv/bin/python" -c "
import sys
from huggingface_hub import try_to_load_from_cache
sys.exit(0 if isinstance(try_to_load_from_cache('microsoft/kosmos-2-patch14-224', 'config.json'), str) else 1)
"; then
  agent=(--agent kosmos-lstm)
  [ -n "${KOSMOS_CHECKPOINT:-}" ] && agent+=(--checkpoint "$KOSMOS_CHECKPOINT")
  setting="D->D"
else
  echo "main: microsoft/kosmos-2-patch14-224 is not in the local Hugging Face cache (HF_HOME); running" \
       "kosmos-lstm-tiny with the project's BC checkpoint instead (see README, Training)"
  agent=(--agent kosmos-lstm-tiny --checkpoint checkpoints/kosmos-lstm-tiny-bc-abc)
  setting="ABC->D"
fi

"$venv/bin/vlaeval" run "${agent[@]}" --suite calvin --setting "$setting" --out "$out" --run-id "$run_id" "$@"
"$venv/bin/vlaeval" report "$out/$run_id"
