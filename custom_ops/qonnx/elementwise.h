// Elementwise loops over X with numpy-broadcast parameter tensors, shared by the QONNX reference
// ops (Quant, BipolarQuant, Trunc): each parameter walks X's index space with its own strides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/op_util.h"

namespace qcompile {
namespace elementwise {

// Elements per parallel task of the elementwise loops.
constexpr int64_t kChunk = 1 << 14;

// Strides of a parameter tensor aligned to X's shape (0 along broadcast axes). The parameter
// must broadcast to exactly X's shape (numpy rules, the result keeping X's shape).
inline std::vector<int64_t> BroadcastStrides(const std::string& op, const char* tensor,
                                      const std::vector<int64_t>& xs,
                                      const std::vector<int64_t>& ps) {
  const size_t r = xs.size();
  auto fail = [&]() {
    Fail(op, "input ", tensor, ": shape ", ShapeStr(ps), " does not broadcast to X's shape ",
         ShapeStr(xs), " (numpy broadcasting, output keeps X's shape)");
  };
  if (ps.size() > r) {
    for (size_t i = 0; i < ps.size() - r; ++i)
      if (ps[i] != 1) fail();
  }
  std::vector<int64_t> strides(r, 0);
  int64_t stride = 1;
  for (size_t k = 0; k < r && k < ps.size(); ++k) {
    const size_t xi = r - 1 - k, pi = ps.size() - 1 - k;
    if (ps[pi] == xs[xi]) {
      strides[xi] = ps[pi] == 1 ? 0 : stride;
    } else if (ps[pi] == 1) {
      strides[xi] = 0;
    } else {
      fail();
    }
    stride *= ps[pi];
  }
  return strides;
}

// Calls fn(i, offsets...) for flat X indices [begin, end), keeping each parameter's offset
// in step with a multi-index counter.
template <size_t P, typename Fn>
void ForRange(const std::vector<int64_t>& xs, const std::vector<int64_t> (&strides)[P],
              int64_t begin, int64_t end, Fn&& fn) {
  const size_t r = xs.size();
  std::vector<int64_t> idx(r, 0);
  int64_t off[P] = {};
  int64_t rem = begin;
  for (size_t d = r; d-- > 0;) {
    idx[d] = rem % xs[d];
    rem /= xs[d];
    for (size_t p = 0; p < P; ++p) off[p] += idx[d] * strides[p][d];
  }
  for (int64_t i = begin; i < end; ++i) {
    fn(i, off);
    for (size_t d = r; d-- > 0;) {
      ++idx[d];
      for (size_t p = 0; p < P; ++p) off[p] += strides[p][d];
      if (idx[d] < xs[d]) break;
      for (size_t p = 0; p < P; ++p) off[p] -= idx[d] * strides[p][d];
      idx[d] = 0;
    }
  }
}

// Whether every parameter is constant along X's last axis (per tensor, or per channel
// [1, C, 1, 1]): then ElementwiseRuns can hand out whole rows with one offset each.
template <size_t P>
bool ConstantAlongRows(const std::vector<int64_t>& xs, const std::vector<int64_t> (&strides)[P]) {
  if (xs.empty()) return false;
  for (size_t p = 0; p < P; ++p)
    if (strides[p][xs.size() - 1] != 0) return false;
  return true;
}

// Calls run(i, n, offsets) for the runs [i, i + n) of X's flat indices that stay within one
// row of its last axis, in parallel chunks; each parameter's offset is the row's. Only when
// ConstantAlongRows: a loop over a row then has scalar parameters and vectorises (the
// per-element loop above reads them through the index counter, ~15-30 ns per value).
template <size_t P, typename Run>
void ElementwiseRuns(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
                     const std::vector<int64_t> (&strides)[P], Run&& run) {
  const int64_t total = NumElements(xs);
  const int64_t inner = xs.back();
  const int64_t tasks = (total + kChunk - 1) / kChunk;
  ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
    const int64_t b = static_cast<int64_t>(t) * kChunk;
    const int64_t e = b + kChunk < total ? b + kChunk : total;
    for (int64_t i = b; i < e;) {
      int64_t off[P] = {};
      int64_t rem = i;
      for (size_t d = xs.size(); d-- > 0;) {
        const int64_t idx = rem % xs[d];
        rem /= xs[d];
        for (size_t p = 0; p < P; ++p) off[p] += idx * strides[p][d];
      }
      const int64_t left = inner - i % inner;
      const int64_t n = e - i < left ? e - i : left;
      run(i, n, static_cast<const int64_t*>(off));
      i += n;
    }
  });
}

template <size_t P, typename Fn>
void Elementwise(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
                 const std::vector<int64_t> (&strides)[P], Fn&& fn) {
  const int64_t total = NumElements(xs);
  const int64_t tasks = (total + kChunk - 1) / kChunk;
  ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
    const int64_t b = static_cast<int64_t>(t) * kChunk;
    const int64_t e = b + kChunk < total ? b + kChunk : total;
    ForRange<P>(xs, strides, b, e, fn);
  });
}

}  // namespace elementwise
}  // namespace qcompile
