# CMake toolchain: compile with zig's clang (the `ziglang` PyPI package) for x86_64 Linux with
# glibc 2.28, so libqcompile_ops.so loads on RHEL 8, Ubuntu 20.04 and newer (manylinux_2_28).
# zig links its own libc++ statically: the library needs no libstdc++ of the host.
#
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/zig-x86_64-linux-gnu.2.28.cmake ...
#
# ZIG_PYTHON (cache or environment variable): the Python that has `ziglang` installed
# (default: python3 on PATH). tools/build_wheel.sh sets it.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(QCOMPILE_ZIG_TARGET x86_64-linux-gnu.2.28)

if(DEFINED ENV{ZIG_PYTHON})
  set(ZIG_PYTHON "$ENV{ZIG_PYTHON}" CACHE FILEPATH "Python with the ziglang package" FORCE)
elseif(NOT ZIG_PYTHON)
  find_program(ZIG_PYTHON python3 REQUIRED)
endif()
# try_compile projects re-read this file; the variable has to reach them too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES ZIG_PYTHON)

execute_process(
  COMMAND "${ZIG_PYTHON}" -c "import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))"
  OUTPUT_VARIABLE _qc_zig OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _qc_rc ERROR_QUIET)
if(NOT _qc_rc EQUAL 0 OR NOT EXISTS "${_qc_zig}")
  message(FATAL_ERROR "expected the `ziglang` package in ${ZIG_PYTHON}, got none; "
    "pip install ziglang (or set ZIG_PYTHON to a Python that has it)")
endif()

# CMake wants one executable per tool; zig takes the tool as its first argument.
set(_qc_wrappers "${CMAKE_BINARY_DIR}/zig-wrappers")
foreach(_tool cc c++ ar ranlib)
  file(WRITE "${_qc_wrappers}/zig-${_tool}.in" "#!/bin/sh\n")
  if(_tool STREQUAL "cc" OR _tool STREQUAL "c++")
    file(APPEND "${_qc_wrappers}/zig-${_tool}.in"
      "exec \"${_qc_zig}\" ${_tool} -target ${QCOMPILE_ZIG_TARGET} \"$@\"\n")
  else()
    file(APPEND "${_qc_wrappers}/zig-${_tool}.in" "exec \"${_qc_zig}\" ${_tool} \"$@\"\n")
  endif()
  file(CHMOD "${_qc_wrappers}/zig-${_tool}.in"
    PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  file(RENAME "${_qc_wrappers}/zig-${_tool}.in" "${_qc_wrappers}/zig-${_tool}")
endforeach()

set(CMAKE_C_COMPILER "${_qc_wrappers}/zig-cc")
set(CMAKE_CXX_COMPILER "${_qc_wrappers}/zig-c++")
set(CMAKE_AR "${_qc_wrappers}/zig-ar" CACHE FILEPATH "zig ar")
set(CMAKE_RANLIB "${_qc_wrappers}/zig-ranlib" CACHE FILEPATH "zig ranlib")
# __builtin_cpu_supports (custom_ops/common/cpu_features.cc) reads libgcc's __cpu_model, which
# zig's compiler-rt lacks: link libgcc's self-contained cpuinfo.o (cpuid only, no libc symbol)
# from the host gcc, so CPU dispatch stays at load time.
execute_process(COMMAND gcc -print-libgcc-file-name
  OUTPUT_VARIABLE _qc_libgcc OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _qc_rc ERROR_QUIET)
if(NOT _qc_rc EQUAL 0 OR NOT EXISTS "${_qc_libgcc}")
  message(FATAL_ERROR "expected gcc on PATH (its libgcc.a provides __cpu_model), got none")
endif()
execute_process(COMMAND "${_qc_zig}" ar x "${_qc_libgcc}" cpuinfo.o
  WORKING_DIRECTORY "${_qc_wrappers}" RESULT_VARIABLE _qc_rc)
if(NOT _qc_rc EQUAL 0 OR NOT EXISTS "${_qc_wrappers}/cpuinfo.o")
  message(FATAL_ERROR "expected cpuinfo.o in ${_qc_libgcc}, got none")
endif()
set(CMAKE_CXX_STANDARD_LIBRARIES_INIT "${_qc_wrappers}/cpuinfo.o")
# Export only the library's C entry points (onnxruntime's RegisterCustomOps, the qcompile_* C ABI
# that qcompile.runtime reads with ctypes), so the statically linked libc++ and libunwind (operator
# new and delete, _Unwind_*) stay private; and ship no debug info (zig keeps it: 8 MB, not ~1 MB).
file(WRITE "${_qc_wrappers}/exports.map"
  "{\n  global: RegisterCustomOps; qcompile_*;\n  local: *;\n};\n")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-s -Wl,--version-script=${_qc_wrappers}/exports.map")

# zig's clang does not let -mavx512f imply 512-bit vectors (evex512) as gcc and clang do, so the
# AVX-512 variant would not compile. -mevex512 alone enables no instruction: files built without
# AVX-512 flags stay baseline x86-64 (zig targets the baseline CPU, never the build machine's).
set(CMAKE_CXX_FLAGS_INIT "-mevex512")

# zig links shared libraries without gcc's crtbeginS.o, whose unload step runs the library's static
# destructors (__cxa_finalize); without it a process that dlclosed the library segfaults in exit().
# CMakeLists.txt links cmake/zig/dso_finalize.cc, which does that step, when this is set.
set(QCOMPILE_LINK_DSO_FINALIZE ON)
