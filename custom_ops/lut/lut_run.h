// Running the table-lookup kernels inside the XnorConv / XnorConvThreshold / BitSerialConv ops:
// weight tables (once per layer when W is a constant), the activation byte layout per run, and
// the tasks on ORT's intra-op pool.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../common/op_util.h"
#include "lut_kernel.h"

namespace qcompile {
namespace lut {

struct LutTables {
  std::vector<int8_t> tables;
  int64_t max_entry = 0;
};

// The bit planes of a BitSerialConv (for XnorConv: P = Q = 1 and no coefficients).
struct LutOperands {
  int64_t P = 1, Q = 1;
  const int64_t* act_coeffs = nullptr;  // nullptr: XnorConv
  const int64_t* weight_coeffs = nullptr;
  int64_t weight_offset = 0;
};

// Whether a variant with this LutUse (and `faster` rule) runs the LUT kernel on geometry s.
bool LutChosen(LutUse use, bool (*faster)(const xnor::ConvGeometry&), const xnor::ConvGeometry& s,
               int64_t P);

// Tables for W; false when an entry does not fit int8 or a pad bit of W is set (the op then
// runs its own kernel).
bool BuildTables(const xnor::ConvGeometry& s, const LutOperands& o, const uint64_t* w,
                 LutTables* t);

// D (or y = float(D) * scale + bias) of the whole convolution with kernel fn; false, having
// written nothing, when a pad bit of x is set.
bool RunLut(OrtKernelContext* ctx, LutTileFn fn, const xnor::ConvGeometry& s, int64_t P,
            const LutTables& t, const uint64_t* x, const float* scale, const float* bias,
            float* y, int32_t* d);

// The variant's LutUse as a new kernel takes it: QCOMPILE_LUT=0 (read here, at kernel creation)
// turns kLutWhenFaster off, for A/B timing of the variant's own kernel.
LutUse EffectiveUse(LutUse use);

// Tables of an op's constant W, built on its first run and kept (runs may be concurrent).
class LutTableCache {
 public:
  // The cached tables when `constant` (W is the op's constant initializer), built on first
  // use; else built into *scratch. nullptr when the tables cannot be built.
  const LutTables* Get(const xnor::ConvGeometry& s, const LutOperands& o, const uint64_t* w,
                       bool constant, LutTables* scratch);

 private:
  std::mutex mu_;
  bool built_ = false, ok_ = false;
  LutTables tables_;
};

// The LUT side of an op: when it runs the LUT kernel, and its constant W's tables.
struct LutState {
  LutUse use = kLutOff;
  std::unique_ptr<LutTableCache> cache = std::make_unique<LutTableCache>();
};

#ifdef QCOMPILE_TEST_HOOKS
// Convolutions that ran a table-lookup kernel since the library was loaded (test build only).
uint64_t LutRuns();
#endif

}  // namespace lut
}  // namespace qcompile
