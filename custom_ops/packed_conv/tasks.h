// Task scheduling of the packed-convolution kernels: (batch x group x channel chunk x output row)
// tasks on onnxruntime's intra-op pool.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../common/op_util.h"
#include "kernel_args.h"

namespace qcompile {
namespace packed {

// Calls row(n, g, b0, b1, oh) for every image n, group g, output row oh and chunk [b0, b1) of
// at most chunk_blocks 8-channel blocks of the group, one task each.
template <class Row>
void RunRowTasks(OrtKernelContext* ctx, const ConvGeometry& s, int64_t chunk_blocks,
                 const Row& row) {
  const int64_t chunks = (s.blocks_per_group + chunk_blocks - 1) / chunk_blocks;
  ParallelFor(ctx, static_cast<size_t>(s.N * s.G * chunks * s.OH), [&](size_t i) {
    int64_t t = static_cast<int64_t>(i);
    const int64_t oh = t % s.OH;
    t /= s.OH;
    const int64_t c = t % chunks;
    t /= chunks;
    const int64_t g = t % s.G;
    const int64_t n = t / s.G;
    const int64_t b0 = c * chunk_blocks;
    row(n, g, b0, std::min(b0 + chunk_blocks, s.blocks_per_group), oh);
  });
}

}  // namespace packed
}  // namespace qcompile
