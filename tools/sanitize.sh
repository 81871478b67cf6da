#!/usr/bin/env bash
# The op library under AddressSanitizer + UBSan: builds it (CMake option QCOMPILE_SANITIZE, test
# hooks on) into build/sanitize, then runs the op tests and the hostile-input corpus on it.
# Python is not built with ASan, so libasan is preloaded (it must come first) with libstdc++ (so
# ASan's interceptors see C++ exceptions thrown across the library); leak detection is off since
# CPython keeps its allocations until exit by design; UBSan stops at its first finding.
# QCOMPILE_OPS_LIBRARY makes qcompile.runtime (and the tests' test-hooks library, found beside
# it) load the sanitized build. Any sanitizer report fails the run. Usage:
#   bash tools/sanitize.sh [pytest args]     # default: the op test set below
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
start=$(date +%s)
build=build/sanitize
cmake -S . -B "$build" -G Ninja -DQCOMPILE_SANITIZE=ON -DQCOMPILE_TEST_HOOKS=ON >/dev/null
cmake --build "$build" >/dev/null
built=$(date +%s)

asan=$(${CXX:-g++} -print-file-name=libasan.so)
stdcxx=$(${CXX:-g++} -print-file-name=libstdc++.so)
for lib in "$asan" "$stdcxx"; do
  [ -f "$lib" ] || { echo "error: expected $lib (from ${CXX:-g++} -print-file-name), got no file" >&2; exit 2; }
done

# The op tests: the hostile-input corpus, the padding sweep, the concurrency test and the op
# suites whose cases run in seconds; the long multi-variant sweeps (test_ops_xnor.py,
# test_ops_bitserial.py, test_ops_lut.py, test_ops_kernels_emulated.py) are not in the list, but
# their dense-kernel and QuantizePack pre-affine cases are.
tests=(tests/ops/test_ops_hostile_corpus.py tests/ops/test_ops_hostile_pads.py tests/ops/test_ops_hostile_threads.py
       tests/ops/test_ops_xnor_small.py tests/ops/test_ops_qonnx.py tests/ops/test_ops_shift.py
       tests/ops/test_ops_requantize.py tests/ops/test_ops_threshold_pack.py tests/ops/test_ops_depthwise.py
       tests/ops/test_ops_direct_conv.py
       tests/ops/test_ops_bitserial.py::test_bitserial_gemm
       tests/ops/test_ops_bitserial.py::test_quantize_pack_pre_affine_is_the_mul_and_add_it_replaces
       tests/ops/test_ops_bitserial_threshold.py::test_bitserial_gemm_threshold
       tests/ops/test_ops_bitserial_threshold.py::test_bitserial_gemm_threshold_constants
       tests/ops/test_ops_bitserial_threshold.py::test_bad_constant_thresholds_are_reported_by_the_run
       tests/ops/test_ops_bitserial_mlp.py)
args=("$@")
[ ${#args[@]} -eq 0 ] && args=("${tests[@]}")

log=$build/pytest.log
status=0
env LD_PRELOAD="$asan:$stdcxx" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=86 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    QCOMPILE_OPS_LIBRARY="$PWD/$build/qcompile/libqcompile_ops.so" \
    .venv/bin/python -m pytest -q -p no:cacheprovider "${args[@]}" 2>&1 | tee "$log" || status=$?
reports=$(grep -c -E "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$log" || true)
end=$(date +%s)
echo "sanitize: build $((built - start)) s, tests $((end - built)) s, sanitizer reports $reports"
[ "$reports" = 0 ] || status=1
exit "$status"
