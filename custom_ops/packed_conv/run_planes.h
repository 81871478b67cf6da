// The driver of the bit-plane (AND) convolution kernels, BitSerialConv / BitSerialGemm: lays out
// X and W for split kernels (tap-concatenated when that applies) and runs the rows as tasks.
#pragma once

#include <cstdint>

#include "../common/conv_attrs.h"
#include "../common/ort_api.h"
#include "../lut/lut_run.h"
#include "kernel_args.h"
#include "weights.h"

namespace qcompile {
namespace packed {

// What the driver needs of a bit-plane kernel variant.
struct PlaneKernel {
  BitSerialRowFn row;
  // split: row reads BitSerialArgs::xs / ::wb (split activations, plane-major nibble-blocked
  // weights); calls whose padded split copy would be huge run `fallback` (plain operands).
  bool split;
  BitSerialRowFn fallback;
  // The table-lookup kernel (custom_ops/lut/) run instead on convolutions (not BitSerialGemm):
  // never, where lut_faster says it measured faster, or always (where it can: <= 4 activation
  // planes, int8 table entries, no pad bits set).
  lut::LutTileFn lut;
  lut::LutUse lut_use;
  bool (*lut_faster)(const ConvGeometry&);
};

// Constant W (input 1, [M, KH, KW, Q*Wg]) laid out for a split kernel (the dense ops have their
// own layout: bitserial/dense_planes.h).
void PreparePlaneWeights(const OrtKernelInfo* info, const PlaneKernel& k, int64_t group,
                         int64_t Q, PreparedWeights* out);
// The same W tap-concatenated, when the convolution qualifies and W has no pad bit set.
void PreparePlaneConcatWeights(const OrtKernelInfo* info, const PlaneKernel& k,
                               const ConvAttrs& at, int64_t Q, PreparedWeights* out);

// Runs k on a (geometry and operands set; blocks_per_group is set here).
// k's table-lookup kernel instead when `lut` (the op's setting) chooses it and it can run.
void RunPlaneConv(OrtKernelContext* ctx, const PlaneKernel& k, BitSerialArgs a,
                  const PreparedWeights* prepared, const PreparedWeights* concat = nullptr,
                  const lut::LutState* lut = nullptr);

}  // namespace packed
}  // namespace qcompile
