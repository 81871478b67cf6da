#include "shift_kernel.h"

#include <algorithm>
#include <cstring>

namespace qcompile {
namespace shift {
namespace {

template <Rounding R>
int64_t QuantizeUniform(const ActQuant& q, const float* x, int64_t count, int8_t* a) {
  int64_t bad = -1;
  for (int64_t i = 0; i < count; ++i) {
    const float v = QuantCode<R>(x[i], q.scale, q.zero_point, q.qmin, q.qmax);
    if (!(v == v)) {  // NaN: no integer code
      if (bad < 0) bad = i;
      a[i] = 0;
      continue;
    }
    // q - zero_point is exact in float32 (both integers of magnitude < 2^9), then in int8
    // (range checked when the kernel is created).
    a[i] = static_cast<int8_t>(static_cast<int32_t>(v - q.zero_point));
  }
  return bad;
}

// Pow2Code over an array with the level count fixed, written so that GCC vectorises it: the
// thresholds ascend, so |a| is 2^k for the last k with |x| >= t[k] (a select per level, no
// variable shift), 0 if none; negative iff !(x >= 0). Same codes as Pow2Code (NaN: 0).
template <int L>
void QuantizePow2(const float* t, const float* x, int64_t count, int8_t* a) {
  float tk[L], pk[L];
  for (int k = 0; k < L; ++k) tk[k] = t[k], pk[k] = static_cast<float>(1 << k);
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i], ax = std::fabs(v);
    float mag = 0.0f;  // float selects: GCC vectorises them (compare, and/andnot/or)
    for (int k = 0; k < L; ++k) mag = ax >= tk[k] ? pk[k] : mag;
    a[i] = static_cast<int8_t>(static_cast<int32_t>(v >= 0.0f ? mag : -mag));
  }
}

int64_t FloorDiv(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// acc[i] += +-(src[i * stride] << shift) for i in [0, len): the shift and the sign mask are
// the same for the whole row, so GCC vectorises it (sign-extend, shift by a scalar count, xor,
// subtract, add). The shift is done on uint32 (a negative int shifted left is undefined before
// C++20); |v << shift| <= 128 * 64, so the result is exact.
template <bool kUnitStride>
inline void AddShiftedRow(int32_t* __restrict acc, const int8_t* __restrict src, int64_t len,
                          int64_t stride, int shift, int32_t sign) {
  for (int64_t i = 0; i < len; ++i) {
    const int32_t v = src[kUnitStride ? i : i * stride];
    const int32_t t = static_cast<int32_t>(static_cast<uint32_t>(v) << shift);
    acc[i] += (t ^ sign) - sign;
  }
}

}  // namespace

int64_t QuantizeActs(const ActQuant& q, const float* x, int64_t count, int8_t* a) {
  if (q.pow2) {
    switch (q.levels) {
      case 1: QuantizePow2<1>(q.thresholds, x, count, a); return -1;
      case 2: QuantizePow2<2>(q.thresholds, x, count, a); return -1;
      case 3: QuantizePow2<3>(q.thresholds, x, count, a); return -1;
      case 4: QuantizePow2<4>(q.thresholds, x, count, a); return -1;
      case 5: QuantizePow2<5>(q.thresholds, x, count, a); return -1;
      case 6: QuantizePow2<6>(q.thresholds, x, count, a); return -1;
      case 7: QuantizePow2<7>(q.thresholds, x, count, a); return -1;
      default: break;
    }
    for (int64_t i = 0; i < count; ++i)
      a[i] = static_cast<int8_t>(Pow2Code(x[i], q.thresholds, q.levels));
    return -1;
  }
  switch (q.rounding) {
    case Rounding::kRound:
      return QuantizeUniform<Rounding::kRound>(q, x, count, a);
    case Rounding::kCeil:
      return QuantizeUniform<Rounding::kCeil>(q, x, count, a);
    case Rounding::kFloor:
      return QuantizeUniform<Rounding::kFloor>(q, x, count, a);
    case Rounding::kRoundToZero:
      return QuantizeUniform<Rounding::kRoundToZero>(q, x, count, a);
  }
  return -1;
}

DecodedWeights DecodeWeights(const uint8_t* w, int64_t M, int64_t Cg, int64_t KH, int64_t KW,
                             int64_t H, int64_t W) {
  const int64_t K = Cg * KH * KW, row_bytes = (K + 1) / 2;
  DecodedWeights d;
  d.begin.resize(static_cast<size_t>(M + 1));
  for (int64_t m = 0; m < M; ++m) {
    d.begin[static_cast<size_t>(m)] = static_cast<int64_t>(d.terms.size());
    const uint8_t* row = w + m * row_bytes;
    for (int64_t k = 0; k < K; ++k) {
      const int code = (k & 1) ? row[k / 2] >> 4 : row[k / 2] & 0xF;
      if ((code & 7) == 0) continue;  // 0 (and 8, sign without magnitude) is a zero weight
      const int64_t c = k / (KH * KW), kh = (k / KW) % KH, kw = k % KW;
      d.terms.push_back(Term{c * H * W, static_cast<int32_t>(kh), static_cast<int32_t>(kw),
                             (code & 7) - 1, (code & 8) ? -1 : 0});
    }
  }
  d.begin[static_cast<size_t>(M)] = static_cast<int64_t>(d.terms.size());
  return d;
}

std::vector<ColRange> ColRanges(const ConvShape& s) {
  std::vector<ColRange> cols(static_cast<size_t>(s.KW));
  for (int64_t kw = 0; kw < s.KW; ++kw) {
    // iw(ow) = ow*sw - pl + kw*dw must lie in [0, W).
    const int64_t u = s.pl - kw * s.dw;
    const int64_t lo = u <= 0 ? 0 : std::min(s.OW, FloorDiv(u + s.sw - 1, s.sw));
    const int64_t hi = std::min(s.OW, std::max(lo, FloorDiv(s.W - 1 + u, s.sw) + 1));
    cols[static_cast<size_t>(kw)] = ColRange{lo, hi, lo * s.sw - u};
  }
  return cols;
}

void ShiftConvRow(const ConvShape& s, const int8_t* a, const DecodedWeights& w,
                  const ColRange* cols, const float* scale, const float* bias, int64_t n,
                  int64_t m0, int64_t m1, int64_t oh, int32_t* acc, float* y) {
  const int64_t ih0 = oh * s.sh - s.pt;
  for (int64_t m = m0; m < m1; ++m) {
    std::fill(acc, acc + s.OW, 0);
    const int64_t g = m / s.Mg;
    const int8_t* ag = a + (n * s.C + g * s.Cg) * s.H * s.W;
    const Term* t = w.terms.data() + w.begin[static_cast<size_t>(m)];
    const Term* t_end = w.terms.data() + w.begin[static_cast<size_t>(m) + 1];
    for (; t != t_end; ++t) {
      const int64_t ih = ih0 + t->kh * s.dh;
      if (ih < 0 || ih >= s.H) continue;
      const ColRange& r = cols[t->kw];
      if (r.hi <= r.lo) continue;
      const int8_t* src = ag + t->offset + ih * s.W + r.iw;
      if (s.sw == 1)
        AddShiftedRow<true>(acc + r.lo, src, r.hi - r.lo, 1, t->shift, t->sign);
      else
        AddShiftedRow<false>(acc + r.lo, src, r.hi - r.lo, s.sw, t->shift, t->sign);
    }
    // One float multiply then one add (-ffp-contract=off keeps them apart).
    const float sc = scale[m], b = bias[m];
    float* out = y + ((n * s.M + m) * s.OH + oh) * s.OW;
    for (int64_t ow = 0; ow < s.OW; ++ow) out[ow] = static_cast<float>(acc[ow]) * sc + b;
  }
}

void ShiftGemmRow(const int8_t* a, int64_t K, int64_t M, const DecodedWeights& w,
                  const float* scale, const float* bias, int64_t n, int64_t m0, int64_t m1,
                  float* y) {
  const int8_t* an = a + n * K;
  for (int64_t m = m0; m < m1; ++m) {
    int32_t acc = 0;
    const Term* t = w.terms.data() + w.begin[static_cast<size_t>(m)];
    const Term* t_end = w.terms.data() + w.begin[static_cast<size_t>(m) + 1];
    for (; t != t_end; ++t) {
      const int32_t v = an[t->offset];
      const int32_t sh = static_cast<int32_t>(static_cast<uint32_t>(v) << t->shift);
      acc += (sh ^ t->sign) - t->sign;
    }
    y[n * M + m] = static_cast<float>(acc) * scale[m] + bias[m];
  }
}

// ---------------------------------------------------------------- int8 multiply-add path

PackedWeights PackWeights(const uint8_t* w, int64_t M, int64_t G, int64_t Cg, int64_t KH,
                          int64_t KW, int32_t off) {
  PackedWeights p;
  p.G = G, p.Mg = M / G, p.Cg = Cg, p.KH = KH, p.KW = KW, p.off = off;
  const int64_t K = Cg * KH * KW, row_bytes = (K + 1) / 2;
  p.K4 = (K + 3) / 4 * 4;
  p.blocks = (p.Mg + kDotBlockM - 1) / kDotBlockM;
  p.w.assign(static_cast<size_t>(G * p.blocks * p.K4 * kDotBlockM), 0);
  p.corr.assign(static_cast<size_t>(G * p.blocks * kDotBlockM), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t g = m / p.Mg, ml = m % p.Mg, b = ml / kDotBlockM, j = ml % kDotBlockM;
    int8_t* blk = p.w.data() + (g * p.blocks + b) * p.K4 * kDotBlockM;
    const uint8_t* row = w + m * row_bytes;
    int64_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int code = (k & 1) ? row[k / 2] >> 4 : row[k / 2] & 0xF;
      if ((code & 7) == 0) continue;  // 0 (and 8) is a zero weight
      const int v = (code & 8) ? -(1 << ((code & 7) - 1)) : 1 << ((code & 7) - 1);
      const int64_t c = k / (KH * KW), tap = k % (KH * KW);  // tap = kh*KW + kw
      const int64_t kk = tap * Cg + c;
      blk[(kk / 4 * kDotBlockM + j) * 4 + kk % 4] = static_cast<int8_t>(v);
      sum += v;
      p.max_w = std::max(p.max_w, v < 0 ? -v : v);
    }
    p.corr[static_cast<size_t>(g * p.blocks * kDotBlockM + ml)] =
        static_cast<uint32_t>(static_cast<uint64_t>(sum * off));
  }
  return p;
}

void ToOffsetNHWC(const int8_t* a, int64_t C, int64_t H, int64_t W, int64_t n, int64_t h,
                  int32_t off, uint8_t* u) {
  uint8_t* dst = u + (n * H + h) * W * C;
  for (int64_t c = 0; c < C; ++c) {
    const int8_t* src = a + ((n * C + c) * H + h) * W;
    for (int64_t x = 0; x < W; ++x)
      dst[x * C + c] = static_cast<uint8_t>(src[x] + off);  // in [0, 255]
  }
}

void ConvIm2colRows(const ConvShape& s, const uint8_t* u, int64_t K4, int64_t n, int64_t g,
                    int64_t p0, int64_t rows, int32_t off, uint8_t* dst) {
  const int64_t K = s.Cg * s.KH * s.KW;
  const uint8_t* un = u + n * s.H * s.W * s.C + g * s.Cg;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = p0 + r, oh = p / s.OW, ow = p % s.OW;
    uint8_t* d = dst + r * K4;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
      const bool row_in = ih >= 0 && ih < s.H;
      for (int64_t kw = 0; kw < s.KW; ++kw, d += s.Cg) {
        const int64_t iw = ow * s.sw - s.pl + kw * s.dw;
        if (row_in && iw >= 0 && iw < s.W)
          std::memcpy(d, un + (ih * s.W + iw) * s.C, static_cast<size_t>(s.Cg));
        else
          std::memset(d, off, static_cast<size_t>(s.Cg));  // padded tap: a = 0
      }
    }
    std::memset(d, off, static_cast<size_t>(K4 - K));
  }
}

void WriteTile(const int32_t* acc, const uint32_t* corr, int64_t rows, int64_t channels,
               const float* scale, const float* bias, float* y, int64_t stride_r,
               int64_t stride_m) {
  for (int64_t j = 0; j < channels; ++j) {
    const uint32_t cj = corr[j];
    const float sc = scale[j], b = bias[j];
    float* out = y + j * stride_m;
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t d =
          static_cast<int32_t>(static_cast<uint32_t>(acc[r * kDotBlockM + j]) - cj);
      out[r * stride_r] = static_cast<float>(d) * sc + b;  // one multiply, one add
    }
  }
}

}  // namespace shift
}  // namespace qcompile
