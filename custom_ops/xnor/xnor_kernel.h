// The XnorConv micro-kernels (custom_ops/SPEC.md, qcompile::XnorConv), one translation unit
// each (xnor_conv__<isa>.cc), on the packed-convolution core's arguments. XnorGemm runs on the
// same kernels as a 1x1 convolution of a 1x1 image.
#pragma once

#include <cstdint>

#include "../packed_conv/kernel_args.h"

namespace qcompile {
namespace xnor {

using namespace packed;  // the kernels are written against the core's types

void xnor_conv2d_u64__reference(const ConvArgs&, int64_t, int64_t, int64_t, int64_t, int64_t);
void xnor_conv2d_u64__portable(const ConvArgs&, int64_t, int64_t, int64_t, int64_t, int64_t);
void xnor_conv2d_u64__avx2(const ConvArgs&, int64_t, int64_t, int64_t, int64_t, int64_t);
// The popcount-ceiling microbenchmark of a variant (qcompile_popcount_ceiling): `iters` runs of
// the variant's inner tile on L1-resident data; returns the binary multiply-adds done. The
// timing lives in xnor_variants.cc, outside the ISA translation units.
using CeilingFn = int64_t (*)(int64_t iters);
int64_t xnor_ceiling__portable(int64_t iters);
int64_t xnor_ceiling__avx2(int64_t iters);
int64_t xnor_ceiling__avx512vpopcnt(int64_t iters);

void xnor_conv2d_u64__avx512vpopcnt(const ConvArgs&, int64_t, int64_t, int64_t, int64_t, int64_t);
void xnor_conv2d_u64__avx512vpopcnt_csa(const ConvArgs&, int64_t, int64_t, int64_t, int64_t,
                                        int64_t);
int64_t xnor_ceiling__avx512vpopcnt_csa(int64_t iters);

}  // namespace xnor
}  // namespace qcompile
