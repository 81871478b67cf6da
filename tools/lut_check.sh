#!/usr/bin/env bash
# Builds and runs the standalone check / microbenchmark of the table-lookup kernels
# (custom_ops/lut/testing/lut_check.cc) without onnxruntime:
#   bash tools/lut_check.sh            bit-exactness against the reference kernels
#   bash tools/lut_check.sh bench [R]  LUT vs avx2 XOR-popcount, W2A2 LUT vs bit-serial, ceilings
#   bash tools/lut_check.sh variants   every XnorConv variant this CPU runs, with its ceiling
# The AVX-512 units are built with their own flags and linked when the compiler supports them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${LUT_CHECK_DIR:-$(mktemp -d)}
mkdir -p "$out"
cxx=${CXX:-g++}
flags=(-std=c++17 -O3 -ffp-contract=off)
objs=()
defs=(-DQCOMPILE_HAVE_AVX2)
if echo 'int main(){}' | "$cxx" -mavx512f -mavx512vpopcntdq -x c++ - -o "$out/probe" 2>/dev/null; then
  for f in xnor_avx512 xnor_avx512_csa; do
    "$cxx" "${flags[@]}" -mavx512f -mavx512vpopcntdq -mpopcnt -c "custom_ops/xnor/$f.cc" -o "$out/$f.o"
    objs+=("$out/$f.o")
  done
  defs+=(-DQCOMPILE_HAVE_AVX512)
fi
"$cxx" "${flags[@]}" -mavx2 -mpopcnt "${defs[@]}" custom_ops/lut/testing/lut_check.cc \
  custom_ops/lut/lut_layout.cc custom_ops/lut/lut_scalar.cc custom_ops/lut/lut_conv__avx2.cc \
  custom_ops/xnor/xnor_reference.cc custom_ops/xnor/xnor_avx2.cc custom_ops/xnor/xnor_variants.cc \
  custom_ops/xnor/xnor_portable.cc custom_ops/common/cpu_features.cc \
  custom_ops/bitserial/bitserial_generic.cc custom_ops/bitserial/bitserial_popcnt.cc \
  custom_ops/bitserial/bitserial_avx2.cc "${objs[@]}" -o "$out/lut_check"
"$out/lut_check" "$@"
