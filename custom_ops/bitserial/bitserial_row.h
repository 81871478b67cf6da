// The BitSerialConv row kernel and the dense kernel, included by bitserial_popcnt.cc and bitserial_generic.cc.
//
//   D = sum over in-bounds taps and the group's words k of
//       sum_p act_coeffs[p] * ( sum_q weight_coeffs[q] * popcount(A_p & W_q)
//                               + weight_offset * popcount(A_p) )
// which equals sum v_act * v_w (v = offset + sum coeff * bit; activations have offset 0, so a
// padded position, all planes 0, adds nothing). Accumulated in int64, exact int32 by the op's
// range check. Then Y = float(D) * scale[m] + bias[m].
#pragma once

#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

inline void BitSerialRow(const BitSerialArgs& a, int64_t n, int64_t m0, int64_t m1, int64_t oh) {
  const packed::ConvGeometry& s = a.geo;
  const int64_t P = a.P, Q = a.Q, Wg = s.Wg;
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t g = m / s.Mg;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      int64_t d = 0;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.sw - s.pl + kw * s.dw;
          if (iw < 0 || iw >= s.W) continue;
          const uint64_t* xp = a.x + ((n * s.H + ih) * s.W + iw) * s.XW + g * P * Wg;
          const uint64_t* wp = a.w + ((m * s.KH + kh) * s.KW + kw) * Q * Wg;
          for (int64_t k = 0; k < Wg; ++k) {
            for (int64_t p = 0; p < P; ++p) {
              const uint64_t ap = xp[p * Wg + k];
              int64_t t = a.weight_offset * __builtin_popcountll(ap);
              for (int64_t q = 0; q < Q; ++q)
                t += a.weight_coeffs[q] * __builtin_popcountll(ap & wp[q * Wg + k]);
              d += a.act_coeffs[p] * t;
            }
          }
        }
      }
      const int32_t di = static_cast<int32_t>(d);
      a.y[((n * s.M + m) * s.OH + oh) * s.OW + ow] =
          static_cast<float>(di) * a.scale[m] + a.bias[m];
    }
  }
}

// The dense kernel, one channel at a time (DensePlaneArgs).
inline void DenseRow(const DensePlaneArgs& a, int64_t n, int64_t b0, int64_t b1) {
  const int64_t P = a.P, Q = a.Q, Kw = a.Kw;
  const uint64_t* x = a.x + n * P * Kw;
  const int64_t base = a.offset_term[n];
  for (int64_t b = b0; b < b1; ++b) {
    const uint64_t* wb = a.wd + b * Q * Kw * kDenseBlock;
    const int64_t nm = a.M - b * kDenseBlock < kDenseBlock ? a.M - b * kDenseBlock : kDenseBlock;
    for (int64_t j = 0; j < nm; ++j) {
      int64_t d = base;
      for (int64_t p = 0; p < P; ++p) {
        const uint64_t* xp = x + p * Kw;
        for (int64_t q = 0; q < Q; ++q) {
          const uint64_t* wq = wb + q * Kw * kDenseBlock + j;
          int64_t s = 0;
          for (int64_t k = 0; k < Kw; ++k) s += __builtin_popcountll(xp[k] & wq[k * kDenseBlock]);
          d += a.act_coeffs[p] * a.weight_coeffs[q] * s;
        }
      }
      a.d[n * a.M + b * kDenseBlock + j] = static_cast<int32_t>(d);
    }
  }
}

}  // namespace
}  // namespace bitserial
}  // namespace qcompile
