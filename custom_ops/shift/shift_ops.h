// qcompile::Pow2Quant, qcompile::ShiftConv, qcompile::ShiftGemm
// (custom_ops/SPEC.md, "SHIFT: power-of-two weights").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/kernel_select.h"
#include "../common/op_util.h"
#include "shift_kernel.h"

namespace qcompile {

// The D kernel of ShiftConv / ShiftGemm, chosen when the kernel is created: the int8
// multiply-add path (shift_conv__avx2.cc) when the CPU has AVX2 and the activation range cannot
// saturate it, else the portable shift-and-add one; the `kernel` attribute or
// QCOMPILE_SHIFT_KERNEL=portable|avx2 forces one (SPEC, Clarifications).
enum class ShiftKernel { kPortable = 0, kAvx2 = 1 };

struct ShiftVariant {
  VariantId id;
  ShiftKernel kernel;
};
const VariantTable<ShiftVariant>& ShiftVariants();
// Pow2Quant-style thresholds (1..7 floats, finite, > 0, strictly ascending) from attribute
// `name` into q (pow2 mode); fails with the op's label otherwise. Requantize reads them too.
void ParsePow2Thresholds(const Attrs& at, const std::string& label, const char* name,
                         shift::ActQuant* q);
const char* ShiftKernelName(ShiftKernel k);
#ifdef QCOMPILE_TEST_HOOKS
// How many ShiftConv / ShiftGemm runs have computed D with kernel `name` in this process (-1
// for an unknown name); test build only, read by the tests to see which path ran.
int64_t ShiftKernelRuns(const char* name);
#endif

struct ShiftKernelChoice {
  ShiftKernel kernel = ShiftKernel::kPortable;
  bool forced = false;
};

// W packed for the int8 path once at kernel creation when it is a constant initializer.
struct ShiftConstWeights {
  const uint8_t* src = nullptr;  // W's data in the session; nullptr when not packed
  std::vector<int64_t> shape;
  shift::PackedWeights packed;
  // Packs input 1 (W) for activation offset `off` when it is a constant of shape
  // [M, ceil(Cg*KH*KW/2)] with M % G == 0.
  void Prepare(const OrtKernelInfo* info, int64_t G, int64_t Cg, int64_t KH, int64_t KW,
               int32_t off);
  const shift::PackedWeights* Get(const uint8_t* w, const std::vector<int64_t>& ws) const {
    return (src && w == src && ws == shape) ? &packed : nullptr;
  }
};

struct Pow2QuantOp {
  Pow2QuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                      Tensor<float>& y);

  std::string label_, init_error_;
  shift::ActQuant quant_;
};

struct ShiftConvOp {
  ShiftConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                      const Tensor<uint8_t>& w,
                      const Tensor<float>& scale,
                      const Tensor<float>& bias, Tensor<float>& y);
  void RunConvInt8(OrtKernelContext* ctx, const shift::ConvShape& s, const int8_t* a,
                   const uint8_t* w, const std::vector<int64_t>& ws, const float* sc,
                   const float* bi, float* out) const;

  std::string label_, init_error_;
  ConvAttrs attrs_;
  shift::ActQuant quant_;
  ShiftKernelChoice kernel_;
  ShiftConstWeights const_w_;
};

struct ShiftGemmOp {
  ShiftGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                      const Tensor<uint8_t>& w,
                      const Tensor<float>& scale,
                      const Tensor<float>& bias, Tensor<float>& y);
  void RunGemmInt8(OrtKernelContext* ctx, int64_t N, int64_t K, int64_t M, const int8_t* a,
                   const uint8_t* w, const std::vector<int64_t>& ws, const float* sc,
                   const float* bi, float* out) const;

  std::string label_, init_error_;
  int64_t in_features_ = 0;
  shift::ActQuant quant_;
  ShiftKernelChoice kernel_;
  ShiftConstWeights const_w_;
};

}  // namespace qcompile
