// The driver of the binary (XOR) convolution kernels, XnorConv / XnorConvThreshold / XnorGemm:
// lays out X and W for the kernel, takes the tap-concatenated path when it applies, and runs the
// kernel's rows as tasks.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/ort_api.h"
#include "../lut/lut_run.h"
#include "kernel_args.h"
#include "weights.h"

namespace qcompile {
namespace packed {

// What the driver needs of a binary kernel variant.
struct BinaryKernel {
  WeightLayout weights;  // kWeightsPlain: reads ConvArgs::w; else ConvArgs::wb in that layout
  bool split_x;          // reads ConvArgs::xs (activations split into nibbles)
  ConvRowFn conv;
  // The table-lookup kernel (custom_ops/lut/) run instead of `conv` on convolutions (not
  // XnorGemm): never, where lut_faster says it measured faster, or always (where it can).
  lut::LutTileFn lut;
  lut::LutUse lut_use;
  bool (*lut_faster)(const ConvGeometry&);
};

// W (input 1) laid out for k when it is a constant: [M, KH, KW, Wg] (conv) or [M, Kw] (dense,
// group 1). Nothing is prepared for a shape Compute rejects.
void PrepareBinaryWeights(const OrtKernelInfo* info, const BinaryKernel& k, int64_t group,
                          PreparedWeights* out);
// The same W tap-concatenated (tap_concat.h), when the convolution qualifies under `mode`, k
// reads laid-out weights and W has no pad bit set.
void PrepareBinaryConcatWeights(const OrtKernelInfo* info, const BinaryKernel& k,
                                const ConvAttrs& a, int mode, PreparedWeights* out);

// Runs k on args (geometry and operands set): k's table-lookup kernel when `lut` (the op's
// setting) chooses it and it can run, else tap-concatenated when `concat_mode` allows it and it
// applies (a forced tap concatenation, for tests of that path, goes first), else directly.
// Weights are laid out here, per call, unless prepared.
void RunBinaryConv(OrtKernelContext* ctx, const BinaryKernel& k, ConvArgs args,
                   const PreparedWeights* prepared, int concat_mode = 0,
                   const PreparedWeights* concat_prepared = nullptr,
                   const lut::LutState* lut = nullptr);

#ifdef QCOMPILE_TEST_HOOKS
// Runs of the tap-concatenated path since the library was loaded (test build only).
uint64_t TapConcatRuns();
#endif

}  // namespace packed
}  // namespace qcompile
