// BitSerialConv / BitSerialGemm kernel (custom_ops/SPEC.md, "Multi-bit operands: bit planes").
// The same source is built twice (bitserial_popcnt.cc with -mpopcnt, bitserial_generic.cc
// without) and the op picks the first when the CPU has POPCNT; the code here is plain data and
// an internal-linkage template so the two builds never mix.
#pragma once

#include <cstdint>

#include "../packed_conv/kernel_args.h"

namespace qcompile {
namespace bitserial {

constexpr int64_t kMaxPlanes = 16;

struct BitSerialArgs {
  packed::ConvGeometry geo;  // XW = G*P*Wg words per input pixel; W rows hold Q*Wg words per tap
  int64_t P, Q;
  int64_t act_coeffs[kMaxPlanes];
  int64_t weight_coeffs[kMaxPlanes];
  int64_t weight_offset;
  const uint64_t* x;  // [N, H, W, G*P*Wg]
  const uint64_t* w;  // [M, KH, KW, Q*Wg]
  const float* scale;
  const float* bias;
  float* y;  // [N, M, OH, OW]
  // Variants with bitserial_split (xnor_variants.h): W in kWeightsBlockedNibbles with
  // KH*KW*Q*Wg words per channel, and X in the split layout (XW = G*P*Wg words per pixel).
  const uint64_t* wb = nullptr;
  const uint64_t* xs = nullptr;
  const packed::SplitLayout* split = nullptr;
};

// y[n, m, oh, :] for m in [m0, m1), a range of whole 8-channel blocks of one group (the last
// block of a group may be partial).
using BitSerialRowFn = void (*)(const BitSerialArgs&, int64_t n, int64_t m0, int64_t m1,
                                int64_t oh);

void bitserial_conv2d_u64__popcnt(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);
void bitserial_conv2d_u64__generic(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);
void bitserial_conv2d_u64__avx2(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);

}  // namespace bitserial
}  // namespace qcompile
