#include "quantize_pack.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../common/bit_gather.h"
#include "../common/conv_attrs.h"

namespace qcompile {
namespace bitserial {
namespace {

// The first of n values (stride apart) with no code into *bad, unless one is already recorded.
template <Rounding R>
inline void ReportRow(const float* x, int64_t n, int64_t stride, const QuantParams& qp,
                      float* bad, char* has_bad) {
  if (*has_bad) return;
  for (int64_t i = 0; i < n; ++i) {
    int32_t c = 0;
    if (QuantRowScalar<R>(x + i * stride, 1, qp, &c)) {
      *bad = x[i * stride];
      *has_bad = 1;
      return;
    }
  }
}

// One row (n, h) of every channel. Codes of a channel's W values come from a branch-free,
// vectorisable loop (QuantRow); their plane bits are ORed into plane-major scratch words
// [XW][W] (contiguous in w, vectorisable), transposed into the output at the end. A row with
// a value that has no code is redone value by value to report the first one.
template <Rounding kMode>
bool PackRow(const QuantPackRows& a, int64_t r, float* bad) {
  const float* in = a.x;
  uint64_t* out = a.y;
  const int64_t C = a.C, H = a.H, W = a.W, G = a.G, P = a.P;
  const int64_t Cg = C / G, Wg = Words(Cg), XW = G * P * Wg;
  const QuantParams& qp = a.qp;
  const QuantRowFn quant_row = a.kernel->quant_row[static_cast<int>(kMode)];
  const OrPlaneBitsFn or_plane_bits = a.kernel->or_plane_bits;
  char has_bad = 0;
  const int64_t n = r / H, h = r % H;
  uint64_t* o = out + (n * H + h) * W * XW;
  thread_local std::vector<int32_t> codes;
  thread_local std::vector<uint64_t> planes;
  bool any_bad = false;
  if (W == 1) {
    // [N, K] (and 1x1 images): the row's channels are contiguous; one word at a time.
    const float* xr = in + n * C * H + h;  // H == 1 here unless W == 1 < H
    if (H == 1) {
      if (codes.size() < static_cast<size_t>(C)) codes.resize(static_cast<size_t>(C));
      any_bad = quant_row(xr, C, qp, codes.data());
      for (int64_t g = 0; g < G; ++g)
        for (int64_t k = 0; k < Wg; ++k) {
          const int64_t c0 = g * Cg + k * kWordBits;
          const int64_t nc = std::min<int64_t>(kWordBits, (g + 1) * Cg - c0);
          const int32_t* cw = codes.data() + c0;
          for (int64_t p = 0; p < P; ++p)
            o[(g * P + p) * Wg + k] = GatherBit(cw, nc, static_cast<int>(p));
        }
      if (any_bad) ReportRow<kMode>(xr, C, 1, qp, bad, &has_bad);
      return has_bad != 0;
    }
  }
  if (codes.size() < static_cast<size_t>(W)) codes.resize(static_cast<size_t>(W));
  if (planes.size() < static_cast<size_t>(XW * W)) planes.resize(static_cast<size_t>(XW * W));
  std::memset(planes.data(), 0, static_cast<size_t>(XW * W) * sizeof(uint64_t));
  for (int64_t c = 0; c < C; ++c) {
    const int64_t g = c / Cg, cg = c % Cg;
    const int shift = static_cast<int>(cg % kWordBits);
    const float* xr = in + ((n * C + c) * H + h) * W;
    if (quant_row(xr, W, qp, codes.data())) {
      any_bad = true;
      ReportRow<kMode>(xr, W, 1, qp, bad, &has_bad);
    }
    const int32_t* cd = codes.data();
    for (int64_t p = 0; p < P; ++p)
      or_plane_bits(cd, W, static_cast<int>(p), shift,
                  planes.data() + ((g * P + p) * Wg + cg / kWordBits) * W);
  }
  if (any_bad) return has_bad != 0;  // the op fails: the output is never read
  const uint64_t* pl = planes.data();
  for (int64_t w = 0; w < W; ++w)
    for (int64_t j = 0; j < XW; ++j) o[w * XW + j] = pl[j * W + w];
  return false;
}

}  // namespace

bool QuantizePackRow(const QuantPackRows& a, int rounding, int64_t r, float* bad) {
  switch (rounding) {
    case 0: return PackRow<Rounding::kRound>(a, r, bad);
    case 1: return PackRow<Rounding::kCeil>(a, r, bad);
    case 2: return PackRow<Rounding::kFloor>(a, r, bad);
    default: return PackRow<Rounding::kRoundToZero>(a, r, bad);
  }
}

}  // namespace bitserial
}  // namespace qcompile
