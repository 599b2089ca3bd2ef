#!/usr/bin/env bash
# Create .venv (if missing) and install botorch-tnpkr with its pinned dependencies.
# Usage: source-free; call as `bash scripts/setup.sh [extras]`, e.g. `bash scripts/setup.sh dev,ax`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev,ax}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch is pinned through constraints.txt: an open torch requirement would pull a CUDA build.
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
