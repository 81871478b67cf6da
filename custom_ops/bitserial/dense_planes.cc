#include "dense_planes.h"

#include <algorithm>

#include "../common/op_util.h"

namespace qcompile {
namespace bitserial {
namespace {

// Kernel steps (one weight vector each) below which a parallel task costs more than it saves:
// about 2 us of the AVX2 kernel; the one-row layers of small MLPs then run on the calling thread.
constexpr int64_t kMinTaskSteps = 4096;

}  // namespace

std::vector<uint64_t> DenseBlockedWeights(const uint64_t* w, int64_t M, int64_t Q, int64_t Kw) {
  const int64_t blocks = (M + kDenseBlock - 1) / kDenseBlock;
  std::vector<uint64_t> out(static_cast<size_t>(blocks * Q * Kw * kDenseBlock), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t b = m / kDenseBlock, j = m % kDenseBlock;
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t k = 0; k < Kw; ++k)
        out[static_cast<size_t>(((b * Q + q) * Kw + k) * kDenseBlock + j)] = w[(m * Q + q) * Kw + k];
  }
  return out;
}

void PrepareDenseWeights(const OrtKernelInfo* info, int64_t Q, int64_t Kw,
                         packed::PreparedWeights* out) {
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  // Compute checks the shape; only a shape it can accept is laid out here.
  if (ws.size() != 2 || ws[0] < 1 || ws[1] != Q * Kw) return;
  out->Set(wdata, ws, DenseBlockedWeights(wdata, ws[0], Q, Kw));
}

void RunDense(OrtKernelContext* ctx, DensePlaneFn fn, DensePlaneArgs a, int64_t N,
              const uint64_t* w, const packed::PreparedWeights* prepared) {
  std::vector<uint64_t> laid_out;
  if (prepared) {
    a.wd = prepared->laid_out.data();
  } else {
    laid_out = DenseBlockedWeights(w, a.M, a.Q, a.Kw);
    a.wd = laid_out.data();
  }
  ScratchArray<int64_t, 64> offset_term(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {  // the weight-offset term of each row, for every channel
    int64_t t = 0;
    for (int64_t p = 0; a.weight_offset != 0 && p < a.P; ++p) {
      int64_t c = 0;
      const uint64_t* xp = a.x + (n * a.P + p) * a.Kw;
      for (int64_t k = 0; k < a.Kw; ++k) c += __builtin_popcountll(xp[k]);
      t += a.act_coeffs[p] * a.weight_offset * c;
    }
    offset_term[static_cast<size_t>(n)] = t;
  }
  a.offset_term = offset_term.data();
  const int64_t blocks = (a.M + kDenseBlock - 1) / kDenseBlock;
  const int64_t items = N * blocks;  // (row, block) pairs
  const int64_t steps = std::max<int64_t>(1, a.P * a.Q * a.Kw);
  const int64_t tasks = std::clamp<int64_t>(items * steps / kMinTaskSteps, 1, items);
  if (tasks == 1) {
    for (int64_t n = 0; n < N; ++n) fn(a, n, 0, blocks);
    return;
  }
  ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
    const int64_t i0 = static_cast<int64_t>(t) * items / tasks;
    const int64_t i1 = (static_cast<int64_t>(t) + 1) * items / tasks;
    for (int64_t i = i0; i < i1;) {  // the task's pairs, one row's run of blocks per call
      const int64_t n = i / blocks, b0 = i % blocks;
      const int64_t b1 = std::min(blocks, b0 + (i1 - i));
      fn(a, n, b0, b1);
      i += b1 - b0;
    }
  });
}

void DenseScaleBias(const int32_t* d, int64_t N, int64_t M, const float* scale, const float* bias,
                    float* y) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      y[n * M + m] = static_cast<float>(d[n * M + m]) * scale[m] + bias[m];  // no FMA (build flags)
}

}  // namespace bitserial
}  // namespace qcompile
