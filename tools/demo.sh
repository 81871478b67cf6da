#!/usr/bin/env bash
# The main job end to end: train a small binary network on Fashion-MNIST (scikit-learn's digits
# when Fashion-MNIST is not installed), export it to QONNX, compile it, verify it, benchmark it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m tools.demo "$@"
