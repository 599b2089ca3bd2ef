#!/usr/bin/env bash
# Set up (idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,ax
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -q "$@"
