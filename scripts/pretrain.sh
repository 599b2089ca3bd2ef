#!/usr/bin/env bash
# Start or resume a pretraining run in the background (one torch thread), logging to
# runs/<preset>/train.out. Usage: bash scripts/pretrain.sh <preset> [nice level] [extra args]
# Every session resumes the shipped runs with this (see README, "Pretraining").
set -euo pipefail
cd "$(dirname "$0")/.."
preset="$1"; niceness="${2:-0}"; shift; shift || true
dir="runs/${preset}"
mkdir -p "$dir"
py=".venv/bin/python"; [ -x "$py" ] || py="python3"
resume=""; [ -f "$dir/trainer_state.pt" ] && resume="--resume"
OMP_NUM_THREADS=1 nohup nice -n "$niceness" "$py" -m botorch_tnpkr.train --preset "$preset" \
  --run-dir "$dir" --threads 1 --compile --no-progress --save-every-minutes 10 $resume "$@" \
  >> "$dir/train.out" 2>&1 &
echo "$!" > "$dir/pid"
echo "pretraining $preset in the background (pid $(cat "$dir/pid")), log: $dir/train.out"
