// The driver of the dense bit-plane kernels (BitSerialGemm, BitSerialGemmThreshold): W laid out
// in 8-channel blocks (once at kernel creation when it is a constant), D computed row by row in
// parallel tasks big enough to pay for the thread pool.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/ort_api.h"
#include "../packed_conv/kernel_args.h"
#include "../packed_conv/weights.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {

// W [M, Q*Kw] (plane q of channel m at w + (m*Q + q)*Kw) as DensePlaneArgs::wd reads it.
std::vector<uint64_t> DenseBlockedWeights(const uint64_t* w, int64_t M, int64_t Q, int64_t Kw);

// Constant W (input 1) of a dense op laid out at kernel creation, when its shape is [M, Q*Kw].
void PrepareDenseWeights(const OrtKernelInfo* info, int64_t Q, int64_t Kw,
                         packed::PreparedWeights* out);

// The dense operands of a (set by PlaneAttrs::FillDense), X at x, D into d.
inline DensePlaneArgs DenseArgsOf(const packed::BitSerialArgs& a, const uint64_t* x, int32_t* d) {
  return DensePlaneArgs{a.geo.M, a.geo.Wg, a.P, a.Q, a.act_coeffs, a.weight_coeffs,
                        a.weight_offset, x, nullptr, d};
}

// D [N, M] of a.d: fn over every row and channel block. a.wd is set here from `prepared` when
// it holds W (w), else from a layout made now.
void RunDense(OrtKernelContext* ctx, DensePlaneFn fn, DensePlaneArgs a, int64_t N,
              const uint64_t* w, const packed::PreparedWeights* prepared);

// y [N, M] = float(D) * scale[m] + bias[m]: BitSerialGemm's float output, one rounded multiply
// and one rounded add per value, as the conv kernels write it.
void DenseScaleBias(const int32_t* d, int64_t N, int64_t M, const float* scale, const float* bias,
                    float* y);

}  // namespace bitserial
}  // namespace qcompile
