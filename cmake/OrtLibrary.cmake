# Locate libonnxruntime for the example host: ORT_LIBRARY (CMake cache or environment variable),
# else the onnxruntime Python wheel of the Python found first on PATH (or Python3_EXECUTABLE).
#
# The wheel ships capi/libonnxruntime.so.1.<minor>.<patch> under its soname libonnxruntime.so.1
# with no file of that name, so the build directory gets a link named after the soname and the
# host's RPATH points there. Sets QCOMPILE_ORT_LIBRARY and QCOMPILE_ORT_RPATH_DIR.

if(NOT ORT_LIBRARY AND DEFINED ENV{ORT_LIBRARY})
  set(ORT_LIBRARY "$ENV{ORT_LIBRARY}")
endif()

if(NOT ORT_LIBRARY)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"
    OUTPUT_VARIABLE _qc_capi OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _qc_rc ERROR_QUIET)
  if(NOT _qc_rc EQUAL 0)
    message(FATAL_ERROR "qcompile: expected the onnxruntime Python package in ${Python3_EXECUTABLE}, "
      "got none; pip install onnxruntime, or set ORT_LIBRARY to a libonnxruntime.so")
  endif()
  file(GLOB _qc_ort_libs "${_qc_capi}/libonnxruntime.so.*")
  list(SORT _qc_ort_libs)
  if(NOT _qc_ort_libs)
    message(FATAL_ERROR "qcompile: expected libonnxruntime.so.* in ${_qc_capi}, got none; set ORT_LIBRARY")
  endif()
  list(GET _qc_ort_libs -1 ORT_LIBRARY)
endif()
if(NOT EXISTS "${ORT_LIBRARY}")
  message(FATAL_ERROR "qcompile: ORT_LIBRARY=${ORT_LIBRARY} does not exist")
endif()
set(QCOMPILE_ORT_LIBRARY "${ORT_LIBRARY}")

set(QCOMPILE_ORT_RPATH_DIR "${CMAKE_BINARY_DIR}/onnxruntime-lib")
file(MAKE_DIRECTORY "${QCOMPILE_ORT_RPATH_DIR}")
file(CREATE_LINK "${QCOMPILE_ORT_LIBRARY}" "${QCOMPILE_ORT_RPATH_DIR}/libonnxruntime.so.1" SYMBOLIC)
message(STATUS "qcompile: example host links ${QCOMPILE_ORT_LIBRARY}")
