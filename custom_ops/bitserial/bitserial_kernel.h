// The BitSerialConv / BitSerialGemm micro-kernels (custom_ops/SPEC.md, "Multi-bit operands: bit
// planes"), one translation unit each: bitserial_conv__popcnt.cc (-mpopcnt) and
// bitserial_conv__generic.cc (no ISA flags) build the same row (bitserial_row.h, internal
// linkage, so the two builds never mix); bitserial_conv__avx2.cc reads the split layout.
// BitSerialGemm / BitSerialGemmThreshold run the dense kernels (bitserial_dense__*.cc and the
// same two scalar builds): one output row of D at a time, vectorised over output channels.
#pragma once

#include <cstdint>

#include "../packed_conv/kernel_args.h"

namespace qcompile {
namespace bitserial {

using namespace packed;  // the kernels are written against the core's types

void bitserial_conv2d_u64__popcnt(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);
void bitserial_conv2d_u64__generic(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);
void bitserial_conv2d_u64__avx2(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);

// Channels per block of the dense weight layout: one AVX-512 vector of uint64 words.
constexpr int64_t kDenseBlock = 8;

// A dense layer's operands (custom_ops/SPEC.md, "Multi-bit operands: bit planes"):
//   D[n, m] = sum_p act_coeffs[p] * ( sum_q weight_coeffs[q] * sum_k popcount(X_p[k] & W_q[m, k])
//                                    + weight_offset * sum_k popcount(X_p[k]) )
// exact in int32 by the op's range check (which also bounds |act_coeffs[p] * weight_coeffs[q]|
// times the popcounts by 2^31, so the products fit int32 x int32 -> int64 multiplies).
struct DensePlaneArgs {
  int64_t M, Kw, P, Q;
  const int64_t* act_coeffs;     // [P]
  const int64_t* weight_coeffs;  // [Q]
  int64_t weight_offset;
  const uint64_t* x;   // [N, P*Kw]: plane p of row n at x + (n*P + p)*Kw
  const uint64_t* wd;  // DenseBlockedWeights: [ceil(M/8)][Q][Kw][8], zero words past M
  int32_t* d;          // [N, M]
  // [N]: row n's weight-offset term, weight_offset * sum_p act_coeffs[p] * popcount(X_p), the
  // same for every channel (set by the driver, RunDense)
  const int64_t* offset_term = nullptr;
};

// D[n, m] for the channels of blocks [b0, b1) (8 channels each; the last may be partial).
using DensePlaneFn = void (*)(const DensePlaneArgs&, int64_t n, int64_t b0, int64_t b1);

void bitserial_dense_u64__avx512vpopcnt(const DensePlaneArgs&, int64_t, int64_t, int64_t);
void bitserial_dense_u64__avx2(const DensePlaneArgs&, int64_t, int64_t, int64_t);
void bitserial_dense_u64__popcnt(const DensePlaneArgs&, int64_t, int64_t, int64_t);
void bitserial_dense_u64__generic(const DensePlaneArgs&, int64_t, int64_t, int64_t);

}  // namespace bitserial
}  // namespace qcompile
