#!/usr/bin/env bash
# Set up .venv with qcompile installed editable (its C++ op library built in place) and the test
# dependencies. Idempotent and quick when nothing changed: the install is redone only when the
# build inputs (pyproject, CMake files, C++ sources) differ from the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

# Fashion-MNIST (Debian's dataset-fashion-mnist) for the demo; without it the demo uses
# scikit-learn's bundled digits.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || echo "note: could not install dataset-fashion-mnist; the demo will use scikit-learn's digits"
fi

stamp=.venv/.qcompile-build-inputs
inputs=$(cat pyproject.toml constraints.txt CMakeLists.txt cmake/*.cmake $(find custom_ops -type f | sort) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ] && [ -f qcompile/libqcompile_ops.so ]; then
  exit 0
fi
echo "installing qcompile and its dependencies into .venv (builds the C++ op library)..."
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[train,test]'
echo "$inputs" > "$stamp"
