#!/usr/bin/env bash
# The test suite: sets up .venv if needed (tools/setup.sh), then runs pytest. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m pytest -q "$@"
