// The registration table: every op of the library, by domain. onnxruntime calls
// RegisterCustomOps when a session registers the library (register_custom_ops_library in Python,
// RegisterCustomOpsLibrary_V2 in C/C++).
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../bitserial/bitserial_mlp.h"
#include "../bitserial/bitserial_ops.h"
#include "../bitserial/bitserial_threshold_ops.h"
#include "../int8/depthwise_conv.h"
#include "../int8/direct_conv.h"
#include "../int8/requantize.h"
#include "../int8/threshold_pack.h"
#include "../qonnx/qonnx_ops.h"
#include "../qonnx/trunc_op.h"
#include "../shift/shift_ops.h"
#include "../packed_conv/run_binary.h"
#include "../xnor/xnor_ops.h"
#include "kernel_adapter.h"
#include "kernel_select.h"
#include "ort_api.h"

#define QCOMPILE_EXPORT extern "C" __attribute__((visibility("default")))

namespace qcompile {
namespace {

// An op of the table: its types, required inputs and outputs (io_characteristics.h) and runs
// bound by kernel_adapter.h, which also refuses an omitted optional input ('') with a clean error.
template <typename Op>
OrtCustomOp* MakeOp(const char* name) {
  return new AdaptedOp<Op>(name);
}

struct Registry {
  std::vector<std::unique_ptr<OrtCustomOp>> ops;
  std::vector<Ort::CustomOpDomain> domains;
};

// Domains and ops live as long as the library (ORT keeps pointers to them in every session).
Registry& BuildRegistry() {
  static Registry* registry = [] {
    auto* r = new Registry;
    Ort::CustomOpDomain qc("qcompile");
    r->ops.emplace_back(MakeOp<BinarizePackOp>("BinarizePack"));
    r->ops.emplace_back(MakeOp<XnorConvOp>("XnorConv"));
    r->ops.emplace_back(MakeOp<XnorGemmOp>("XnorGemm"));
    r->ops.emplace_back(MakeOp<XnorConvThresholdOp>("XnorConvThreshold"));
    r->ops.emplace_back(MakeOp<PackedMaxPoolOp>("PackedMaxPool"));
    r->ops.emplace_back(MakeOp<QuantizePackOp>("QuantizePack"));
    r->ops.emplace_back(MakeOp<BitSerialConvOp>("BitSerialConv"));
    r->ops.emplace_back(MakeOp<BitSerialGemmOp>("BitSerialGemm"));
    r->ops.emplace_back(MakeOp<BitSerialConvThresholdOp>("BitSerialConvThreshold"));
    r->ops.emplace_back(MakeOp<BitSerialGemmThresholdOp>("BitSerialGemmThreshold"));
    r->ops.emplace_back(MakeOp<PlaneMaxPoolOp>("PlaneMaxPool"));
    r->ops.emplace_back(MakeOp<BitSerialMlpOp>("BitSerialMlp"));
    r->ops.emplace_back(MakeOp<Pow2QuantOp>("Pow2Quant"));
    r->ops.emplace_back(MakeOp<ShiftConvOp>("ShiftConv"));
    r->ops.emplace_back(MakeOp<ShiftGemmOp>("ShiftGemm"));
    // one op, two kernels: onnxruntime picks by y_zero_point's type (int8 or uint8 codes)
    r->ops.emplace_back(MakeOp<RequantizeOp<int8_t>>("Requantize"));
    r->ops.emplace_back(MakeOp<RequantizeOp<uint8_t>>("Requantize"));
    r->ops.emplace_back(MakeOp<ThresholdPackOp>("ThresholdPack"));
    // one op, four kernels: onnxruntime picks by the types of x and w (ConvInteger's T1, T2)
    r->ops.emplace_back(MakeOp<DepthwiseConvIntegerOp<int8_t, int8_t>>("DepthwiseConvInteger"));
    r->ops.emplace_back(MakeOp<DepthwiseConvIntegerOp<int8_t, uint8_t>>("DepthwiseConvInteger"));
    r->ops.emplace_back(MakeOp<DepthwiseConvIntegerOp<uint8_t, int8_t>>("DepthwiseConvInteger"));
    r->ops.emplace_back(MakeOp<DepthwiseConvIntegerOp<uint8_t, uint8_t>>("DepthwiseConvInteger"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<int8_t, int8_t, int8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<int8_t, int8_t, uint8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<int8_t, uint8_t, int8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<int8_t, uint8_t, uint8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<uint8_t, int8_t, int8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<uint8_t, int8_t, uint8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<uint8_t, uint8_t, int8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DepthwiseConvRequantizeOp<uint8_t, uint8_t, uint8_t>>("DepthwiseConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvIntegerOp<int8_t, int8_t>>("DirectConvInteger"));
    r->ops.emplace_back(MakeOp<DirectConvIntegerOp<int8_t, uint8_t>>("DirectConvInteger"));
    r->ops.emplace_back(MakeOp<DirectConvIntegerOp<uint8_t, int8_t>>("DirectConvInteger"));
    r->ops.emplace_back(MakeOp<DirectConvIntegerOp<uint8_t, uint8_t>>("DirectConvInteger"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<int8_t, int8_t, int8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<int8_t, int8_t, uint8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<int8_t, uint8_t, int8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<int8_t, uint8_t, uint8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<uint8_t, int8_t, int8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<uint8_t, int8_t, uint8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<uint8_t, uint8_t, int8_t>>("DirectConvRequantize"));
    r->ops.emplace_back(MakeOp<DirectConvRequantizeOp<uint8_t, uint8_t, uint8_t>>("DirectConvRequantize"));
    for (auto& op : r->ops) qc.Add(op.get());
    const size_t n_qc = r->ops.size();

    Ort::CustomOpDomain qonnx("qonnx.custom_op.general");
    r->ops.emplace_back(MakeOp<BipolarQuantOp>("BipolarQuant"));
    r->ops.emplace_back(MakeOp<QuantOp<kQuantName>>("Quant"));
    r->ops.emplace_back(MakeOp<QuantOp<kIntQuantName>>("IntQuant"));
    r->ops.emplace_back(MakeOp<TruncOp>("Trunc"));
    for (size_t i = n_qc; i < r->ops.size(); ++i) qonnx.Add(r->ops[i].get());

    r->domains.push_back(std::move(qc));
    r->domains.push_back(std::move(qonnx));
    return r;
  }();
  return *registry;
}

}  // namespace
}  // namespace qcompile

QCOMPILE_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                          const OrtApiBase* api_base) {
  // Request the API version of the headers we were built with (21 for the default Debian trixie
  // headers); any newer onnxruntime serves it.
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) {
    const OrtApi* v1 = api_base->GetApi(1);
    const std::string msg =
        std::string("libqcompile_ops needs onnxruntime with C API version >= ") +
        std::to_string(ORT_API_VERSION) + ", this one is " + api_base->GetVersionString();
    return v1 ? v1->CreateStatus(ORT_FAIL, msg.c_str()) : nullptr;
  }
  static std::once_flag once;
  std::call_once(once, [api] { Ort::InitApi(api); });
  try {
    qcompile::Registry& r = qcompile::BuildRegistry();
    for (auto& domain : r.domains) {
      OrtStatus* st = api->AddCustomOpDomain(options, domain);
      if (st) return st;
    }
  } catch (const std::exception& e) {
    const std::string msg = std::string("qcompile RegisterCustomOps: ") + e.what();
    return api->CreateStatus(ORT_FAIL, msg.c_str());
  }
  return nullptr;
}

// ------------------------------------------------------------------ kernel variant lists (C ABI)
// Used by qcompile.runtime.kernel_variants(op_type) through ctypes; needs no onnxruntime.

namespace qcompile {
namespace {

// One op type's table as the rows' ids, in table order; nullptr for an op without variants.
struct VariantList {
  std::vector<const VariantId*> ids;
  const char* env;
};

template <class Row>
VariantList ListOf(const VariantTable<Row>& t) {
  VariantList l{{}, t.env};
  for (size_t i = 0; i < t.count; ++i) l.ids.push_back(&t.rows[i].id);
  return l;
}

const VariantList* VariantsOf(const char* op_type) {
  static const std::map<std::string, VariantList>* lists = [] {
    auto* m = new std::map<std::string, VariantList>;
    for (const char* op : {"XnorConv", "XnorConvThreshold", "XnorGemm"})
      (*m)[op] = ListOf(xnor::Variants());
    for (const char* op : {"BitSerialConv", "BitSerialGemm", "BitSerialConvThreshold",
                           "BitSerialGemmThreshold", "BitSerialMlp"})
      (*m)[op] = ListOf(bitserial::Variants());
    (*m)["QuantizePack"] = ListOf(bitserial::QuantizePackVariants());
    for (const char* op : {"ShiftConv", "ShiftGemm"}) (*m)[op] = ListOf(ShiftVariants());
    (*m)["Requantize"] = ListOf(CodesVariants());
    for (const char* op : {"DepthwiseConvInteger", "DepthwiseConvRequantize"})
      (*m)[op] = ListOf(DepthwiseVariants());
    for (const char* op : {"DirectConvInteger", "DirectConvRequantize"})
      (*m)[op] = ListOf(DirectConvVariants());
    return m;
  }();
  if (!op_type) return nullptr;
  auto it = lists->find(op_type);
  return it == lists->end() ? nullptr : &it->second;
}

const VariantId* VariantAt(const char* op_type, int i) {
  const VariantList* l = VariantsOf(op_type);
  return (l && i >= 0 && static_cast<size_t>(i) < l->ids.size()) ? l->ids[static_cast<size_t>(i)]
                                                                   : nullptr;
}

}  // namespace
}  // namespace qcompile

// Rows in op_type's table (qcompile ops, e.g. "XnorConv"); -1 for an op without variants.
QCOMPILE_EXPORT int qcompile_kernel_variant_count(const char* op_type) {
  const qcompile::VariantList* l = qcompile::VariantsOf(op_type);
  return l ? static_cast<int>(l->ids.size()) : -1;
}

QCOMPILE_EXPORT const char* qcompile_kernel_variant_name(const char* op_type, int i) {
  const qcompile::VariantId* v = qcompile::VariantAt(op_type, i);
  return v ? v->name : nullptr;
}

QCOMPILE_EXPORT const char* qcompile_kernel_variant_isa(const char* op_type, int i) {
  const qcompile::VariantId* v = qcompile::VariantAt(op_type, i);
  return v ? v->isa : nullptr;
}

QCOMPILE_EXPORT int qcompile_kernel_variant_supported(const char* op_type, int i) {
  const qcompile::VariantId* v = qcompile::VariantAt(op_type, i);
  return v && v->supported() ? 1 : 0;
}

// The override variable of op_type's table ("" for none; nullptr for an op without variants).
QCOMPILE_EXPORT const char* qcompile_kernel_variant_env(const char* op_type) {
  const qcompile::VariantList* l = qcompile::VariantsOf(op_type);
  return l ? (l->env ? l->env : "") : nullptr;
}

#ifdef QCOMPILE_TEST_HOOKS
// ------------------------------------------------------------------ test hooks (test build only)
// libqcompile_ops_testhooks.so (CMake option QCOMPILE_TEST_HOOKS): counters that let the tests
// see which path ran; the shipped library has none.

// How many ShiftConv / ShiftGemm runs computed D with the shift kernel `name` ("portable",
// "avx2") in this process; -1 for an unknown name.
QCOMPILE_EXPORT long long qcompile_shift_kernel_runs(const char* name) {
  return static_cast<long long>(qcompile::ShiftKernelRuns(name));
}

// Runs of XnorConv / XnorConvThreshold that took the tap-concatenated path.
QCOMPILE_EXPORT uint64_t qcompile_xnor_tap_concat_runs(void) {
  return qcompile::packed::TapConcatRuns();
}

// Runs of XnorConv / XnorConvThreshold / BitSerialConv that took a table-lookup kernel.
QCOMPILE_EXPORT uint64_t qcompile_lut_runs(void) { return qcompile::lut::LutRuns(); }
#endif

// Binary multiply-adds per second on one core for the named variant's inner loop (XOR,
// popcount, accumulate over L1-resident data, the kernel's own tile code), measured for about
// `seconds`; 0 for an unknown variant or one this CPU cannot run. Used by tools/bench.py.
QCOMPILE_EXPORT double qcompile_popcount_ceiling(const char* variant, double seconds) {
  return qcompile::xnor::PopcountCeiling(variant, seconds);
}

// Multiply-adds per second on one core of the named DirectConvInteger variant's sum kernel on
// L1-resident data, measured for about `seconds`; 0 for an unknown or unsupported variant. Used
// by tools/bench_direct_conv.py.
QCOMPILE_EXPORT double qcompile_direct_conv_ceiling(const char* variant, double seconds) {
  return qcompile::DirectConvCeiling(variant, seconds);
}
