# Locate onnxruntime's C/C++ headers (the Python wheel ships none).
#
# Order: ORT_INCLUDE_DIR (CMake cache variable or environment variable), a system install
# (/usr/include/onnxruntime, /usr/local/include/onnxruntime), a per-user cache, and finally
# Debian trixie's libonnxruntime-dev package fetched through apt with a private lists
# directory (nothing is installed system-wide) whose headers are unpacked into the cache.
#
# Sets QCOMPILE_ORT_INCLUDE_DIR to the directory that holds onnxruntime_lite_custom_op.h.

set(_qc_ort_marker onnxruntime_lite_custom_op.h)

function(_qc_ort_check dir out_var)
  # Accept either the header directory itself or an include root with onnxruntime/ in it.
  if(EXISTS "${dir}/${_qc_ort_marker}")
    set(${out_var} "${dir}" PARENT_SCOPE)
  elseif(EXISTS "${dir}/onnxruntime/${_qc_ort_marker}")
    set(${out_var} "${dir}/onnxruntime" PARENT_SCOPE)
  else()
    set(${out_var} "" PARENT_SCOPE)
  endif()
endfunction()

set(_qc_hint "Set ORT_INCLUDE_DIR (environment or -DORT_INCLUDE_DIR=...) to a directory that \
holds onnxruntime_c_api.h, onnxruntime_cxx_api.h and onnxruntime_lite_custom_op.h (C API \
version >= 21, e.g. from a release tarball of github.com/microsoft/onnxruntime, include/), \
or install Debian/Ubuntu's libonnxruntime-dev.")

if(NOT ORT_INCLUDE_DIR AND DEFINED ENV{ORT_INCLUDE_DIR})
  set(ORT_INCLUDE_DIR "$ENV{ORT_INCLUDE_DIR}")
endif()

set(QCOMPILE_ORT_INCLUDE_DIR "")
if(ORT_INCLUDE_DIR)
  _qc_ort_check("${ORT_INCLUDE_DIR}" QCOMPILE_ORT_INCLUDE_DIR)
  if(NOT QCOMPILE_ORT_INCLUDE_DIR)
    message(FATAL_ERROR "ORT_INCLUDE_DIR=${ORT_INCLUDE_DIR} holds no ${_qc_ort_marker}. ${_qc_hint}")
  endif()
  message(STATUS "qcompile: onnxruntime headers from ORT_INCLUDE_DIR: ${QCOMPILE_ORT_INCLUDE_DIR}")
  return()
endif()

foreach(_dir /usr/include/onnxruntime /usr/local/include/onnxruntime)
  _qc_ort_check("${_dir}" QCOMPILE_ORT_INCLUDE_DIR)
  if(QCOMPILE_ORT_INCLUDE_DIR)
    message(STATUS "qcompile: onnxruntime headers from system install: ${QCOMPILE_ORT_INCLUDE_DIR}")
    return()
  endif()
endforeach()

if(DEFINED ENV{QCOMPILE_CACHE_DIR})
  set(_qc_cache "$ENV{QCOMPILE_CACHE_DIR}")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_qc_cache "$ENV{XDG_CACHE_HOME}/qcompile")
else()
  set(_qc_cache "$ENV{HOME}/.cache/qcompile")
endif()
set(_qc_headers "${_qc_cache}/ort-headers/include/onnxruntime")

_qc_ort_check("${_qc_headers}" QCOMPILE_ORT_INCLUDE_DIR)
if(QCOMPILE_ORT_INCLUDE_DIR)
  message(STATUS "qcompile: onnxruntime headers from cache: ${QCOMPILE_ORT_INCLUDE_DIR}")
  return()
endif()

find_program(_qc_apt_get apt-get)
find_program(_qc_dpkg_deb dpkg-deb)
set(_qc_keyring /usr/share/keyrings/debian-archive-keyring.gpg)
if(NOT _qc_apt_get OR NOT _qc_dpkg_deb OR NOT EXISTS "${_qc_keyring}")
  message(FATAL_ERROR "qcompile: no onnxruntime headers found (ORT_INCLUDE_DIR unset, none in "
    "/usr/include/onnxruntime, none cached in ${_qc_cache}/ort-headers), and they cannot be "
    "fetched here (needs apt-get, dpkg-deb and ${_qc_keyring}). ${_qc_hint}")
endif()

message(STATUS "qcompile: fetching Debian trixie libonnxruntime-dev headers into ${_qc_cache}/ort-headers")
string(RANDOM LENGTH 8 _qc_rand)
set(_qc_work "${_qc_cache}/ort-fetch-${_qc_rand}")
file(MAKE_DIRECTORY "${_qc_work}/lists/partial" "${_qc_work}/archives/partial" "${_qc_work}/etc")
file(WRITE "${_qc_work}/etc/status" "")
file(WRITE "${_qc_work}/etc/sources.list"
  "deb [signed-by=${_qc_keyring}] http://deb.debian.org/debian trixie main\n")
set(_qc_apt_opts
  -o "Dir::Etc::SourceList=${_qc_work}/etc/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=${_qc_work}/lists"
  -o "Dir::Cache::Archives=${_qc_work}/archives"
  -o "Dir::State::Status=${_qc_work}/etc/status"
  -o "Debug::NoLocking=1")

execute_process(COMMAND "${_qc_apt_get}" ${_qc_apt_opts} update
  RESULT_VARIABLE _qc_rc OUTPUT_VARIABLE _qc_out ERROR_VARIABLE _qc_err)
if(NOT _qc_rc EQUAL 0)
  message(FATAL_ERROR "qcompile: 'apt-get update' for the header fetch failed (${_qc_rc}):\n"
    "${_qc_err}\n${_qc_hint}")
endif()
execute_process(COMMAND "${_qc_apt_get}" ${_qc_apt_opts} download libonnxruntime-dev
  WORKING_DIRECTORY "${_qc_work}"
  RESULT_VARIABLE _qc_rc OUTPUT_VARIABLE _qc_out ERROR_VARIABLE _qc_err)
file(GLOB _qc_debs "${_qc_work}/libonnxruntime-dev_*.deb")
if(NOT _qc_rc EQUAL 0 OR NOT _qc_debs)
  message(FATAL_ERROR "qcompile: 'apt-get download libonnxruntime-dev' failed (${_qc_rc}):\n"
    "${_qc_err}\n${_qc_hint}")
endif()
list(GET _qc_debs 0 _qc_deb)
execute_process(COMMAND "${_qc_dpkg_deb}" -x "${_qc_deb}" "${_qc_work}/x"
  RESULT_VARIABLE _qc_rc ERROR_VARIABLE _qc_err)
if(NOT _qc_rc EQUAL 0 OR NOT EXISTS "${_qc_work}/x/usr/include/onnxruntime/${_qc_ort_marker}")
  message(FATAL_ERROR "qcompile: unpacking ${_qc_deb} gave no headers (${_qc_rc}): ${_qc_err}\n${_qc_hint}")
endif()
# Only the headers are kept; the move makes the cache appear atomically.
file(MAKE_DIRECTORY "${_qc_cache}/ort-headers/include")
file(REMOVE_RECURSE "${_qc_headers}")
file(RENAME "${_qc_work}/x/usr/include/onnxruntime" "${_qc_headers}")
get_filename_component(_qc_deb_name "${_qc_deb}" NAME)
file(WRITE "${_qc_cache}/ort-headers/SOURCE" "${_qc_deb_name} from Debian trixie main\n")
file(REMOVE_RECURSE "${_qc_work}")

_qc_ort_check("${_qc_headers}" QCOMPILE_ORT_INCLUDE_DIR)
if(NOT QCOMPILE_ORT_INCLUDE_DIR)
  message(FATAL_ERROR "qcompile: fetched headers are incomplete in ${_qc_headers}. ${_qc_hint}")
endif()
message(STATUS "qcompile: onnxruntime headers fetched: ${QCOMPILE_ORT_INCLUDE_DIR} (${_qc_deb_name})")
