// The one place that includes onnxruntime's headers. The library is loaded into an onnxruntime
// process and never links against libonnxruntime: the API table comes from RegisterCustomOps
// (ORT_API_MANUAL_INIT), requested at the headers' API version (21 with the default Debian
// trixie headers), which every newer onnxruntime still serves.
#pragma once

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
