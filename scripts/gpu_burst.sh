#!/usr/bin/env bash
# A pretraining burst on a lent GPU machine (the `device` tool's `run`), resuming a committed
# run and handing its new state back through $OUT. The device image already holds torch,
# botorch, safetensors and tqdm; the package runs from the working tree (PYTHONPATH).
# Usage (as the device command):  bash scripts/gpu_burst.sh <run name> <minutes> [extra args]
# Back here: copy $OUT's files over runs/<run name>/ and commit them. Test it on the CPU
# first with a short burst (it then runs on the CPU):  bash scripts/gpu_burst.sh exact-small 1
set -euo pipefail
cd "$(dirname "$0")/.."
run="$1"; minutes="$2"; shift 2
dir="runs/${run}"
preset="$(python3 -c "import json,torch;print(torch.load('${dir}/trainer_state.pt',weights_only=True)['preset'])")"
out="${OUT:-/tmp/gpu_burst_out}"; mkdir -p "$out"
python3 -c "import torch; print('cuda:', torch.cuda.is_available(), torch.__version__)"
PYTHONPATH=. PYTHONUNBUFFERED=1 python3 -m botorch_tnpkr.train --preset "$preset" \
  --run-dir "$dir" --resume --no-progress --max-minutes "$minutes" "$@" 2>&1 | tail -5
for f in trainer_state.pt latest.safetensors best.safetensors log.jsonl; do
  [ -f "$dir/$f" ] && cp "$dir/$f" "$out/"
done
ls -la "$out"
