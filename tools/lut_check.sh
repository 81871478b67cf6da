#!/usr/bin/env bash
# Builds and runs the standalone check / microbenchmark of the table-lookup kernels
# (custom_ops/lut/testing/lut_check.cc) without onnxruntime:
#   bash tools/lut_check.sh            bit-exactness against the reference kernels
#   bash tools/lut_check.sh bench [R]  LUT vs avx2 XOR-popcount, W2A2 LUT vs bit-serial, ceilings
# Every variant at the op level, vs onnxruntime fp32 and int8 QDQ: python tools/bench_lut.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${LUT_CHECK_DIR:-$(mktemp -d)}
mkdir -p "$out"
cxx=${CXX:-g++}
"$cxx" -std=c++17 -O3 -ffp-contract=off -mavx2 -mpopcnt custom_ops/lut/testing/lut_check.cc \
  custom_ops/lut/lut_layout.cc custom_ops/lut/lut_conv__scalar.cc custom_ops/lut/lut_conv__avx2.cc \
  custom_ops/xnor/xnor_conv__reference.cc custom_ops/xnor/xnor_conv__avx2.cc \
  custom_ops/bitserial/bitserial_conv__generic.cc custom_ops/bitserial/bitserial_conv__popcnt.cc \
  -o "$out/lut_check"
"$out/lut_check" "$@"
