#!/usr/bin/env bash
# Set up (idempotent) and run the main job: a BO run with the shipped checkpoint next to
# SingleTaskGP on a built-in problem. Extra arguments go to `python -m botorch_tnpkr.demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/python -m botorch_tnpkr.demo "$@"
