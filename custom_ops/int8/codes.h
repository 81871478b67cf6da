// The int8 epilogue's arithmetic, shared by qcompile::Requantize and DepthwiseConvRequantize: int32
// sums -> int8 / uint8 codes exactly as onnxruntime's Cast -> Mul -> Add -> QuantizeLinear -> Clip
// chain computes them (custom_ops/SPEC.md, Requantize); the rows' kernel variants (SSE2, AVX2).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../common/kernel_select.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qcompile {

// The codes' arithmetic (ys: the channel's y_scale): clamp(round_half_even((float(acc) * s + b) /
// ys), lo - zp, hi - zp) + zp, in the order onnxruntime's Cast, Mul, Add and MLAS' QuantizeLinear
// (divide, clamp, cvtps2dq) round; the clamp to [lo, hi] is the Clip after (integer bounds:
// clamping before or after rounding is the same). The build has -ffp-contract=off: no FMA.
struct Codes {
  float s, b, ys, lo, hi;
  int32_t zp;

  int32_t Of(int32_t acc) const {
    float y = (static_cast<float>(acc) * s + b) / ys;
    y = y > lo ? y : lo;  // a NaN takes lo, as MLAS' maxps(y, lo) does
    y = y < hi ? y : hi;
    return static_cast<int32_t>(std::nearbyint(y)) + zp;  // the default mode: half to even
  }
};

#if defined(__SSE2__)
// Four at a time with SSE2 (x86-64's baseline, so no dispatch): the same steps; cvtps2dq rounds
// half to even in the default MXCSR mode, as onnxruntime assumes too.
struct Codes4 {
  __m128 s, b, ys, lo, hi;
  __m128i zp;

  explicit Codes4(const Codes& k)
      : s(_mm_set1_ps(k.s)), b(_mm_set1_ps(k.b)), ys(_mm_set1_ps(k.ys)), lo(_mm_set1_ps(k.lo)),
        hi(_mm_set1_ps(k.hi)), zp(_mm_set1_epi32(k.zp)) {}

  __m128i Of(__m128i acc) const {
    __m128 y = _mm_div_ps(_mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(acc), s), b), ys);
    y = _mm_min_ps(_mm_max_ps(y, lo), hi);
    return _mm_add_epi32(_mm_cvtps_epi32(y), zp);
  }
};

// 16 codes (in the type's range already) -> 16 bytes; the saturating packs change nothing.
template <typename T>
inline void Store16(__m128i q0, __m128i q1, __m128i q2, __m128i q3, T* out) {
  const __m128i lo = _mm_packs_epi32(q0, q1), hi = _mm_packs_epi32(q2, q3);
  const __m128i bytes = std::is_signed_v<T> ? _mm_packs_epi16(lo, hi) : _mm_packus_epi16(lo, hi);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), bytes);
}
#endif

template <typename T>
inline void CodesRow(const Codes& k, const int32_t* acc, int64_t n, T* out) {
  int64_t i = 0;
#if defined(__SSE2__)
  const Codes4 k4(k);
  for (; i + 16 <= n; i += 16) {
    const __m128i* a = reinterpret_cast<const __m128i*>(acc + i);
    Store16<T>(k4.Of(_mm_loadu_si128(a)), k4.Of(_mm_loadu_si128(a + 1)),
               k4.Of(_mm_loadu_si128(a + 2)), k4.Of(_mm_loadu_si128(a + 3)), out + i);
  }
#endif
  for (; i < n; ++i) out[i] = static_cast<T>(k.Of(acc[i]));
}

// Requantize's thresholds mode (AQE's power-of-two activations): the code of y = float(acc) * s + b
// is Pow2Quant's a (|a| = 2^(j-1) for the j thresholds |y| reaches, 0 for none; negative iff
// !(y >= 0); NaN: 0), then a + zp clamped to [lo, hi].
struct Pow2Codes {
  const float* t;  // the thresholds, ascending
  int levels;
  float s, b;
  int32_t zp, lo, hi;
};

// The codes of a run of one channel's sums, per variant: CodesRow (SSE2, x86-64's baseline) or
// codes__avx2.cc's 32 at a time, and the same for thresholds mode (the baseline through
// ShiftConv's quantizer and scratch rows y, a of n values; AVX2 in registers); every variant
// rounds exactly alike (the same steps lane by lane).
template <typename T>
using CodesRowFn = void (*)(const Codes& k, const int32_t* acc, int64_t n, T* out);
template <typename T>
using Pow2RowFn = void (*)(const Pow2Codes& p, const int32_t* acc, int64_t n, T* out, float* y,
                           int8_t* a);
struct CodesVariant {
  VariantId id;
  CodesRowFn<int8_t> i8;
  CodesRowFn<uint8_t> u8;
  Pow2RowFn<int8_t> pow2_i8;
  Pow2RowFn<uint8_t> pow2_u8;
};
// The table (attribute `kernel` of Requantize, QCOMPILE_REQUANTIZE_KERNEL), best first.
const VariantTable<CodesVariant>& CodesVariants();
#ifdef QCOMPILE_HAVE_AVX2
void CodesRowAvx2(const Codes& k, const int32_t* acc, int64_t n, int8_t* out);
void CodesRowAvx2(const Codes& k, const int32_t* acc, int64_t n, uint8_t* out);
void Pow2RowAvx2(const Pow2Codes& p, const int32_t* acc, int64_t n, int8_t* out, float*, int8_t*);
void Pow2RowAvx2(const Pow2Codes& p, const int32_t* acc, int64_t n, uint8_t* out, float*, int8_t*);
#endif

// The row functions of variant v for code type T.
template <typename T>
inline CodesRowFn<T> CodesRowOf(const CodesVariant& v) {
  if constexpr (std::is_signed_v<T>) return v.i8; else return v.u8;
}
template <typename T>
inline Pow2RowFn<T> Pow2RowOf(const CodesVariant& v) {
  if constexpr (std::is_signed_v<T>) return v.pow2_i8; else return v.pow2_u8;
}

// A dense layer's row ([.., M] with channels last, inner 1): one value per channel, so the channel
// parameters are vectors too; the same steps as CodesRow lane by lane. ys_step 0: one y_scale.
template <typename T>
inline void ChannelCodesRow(const float* s, const float* b, const float* ys, int64_t ys_step, float lo,
                     float hi, int32_t zp, const int32_t* acc, int64_t m, T* out) {
  int64_t c = 0;
#if defined(__SSE2__)
  const __m128 lo4 = _mm_set1_ps(lo), hi4 = _mm_set1_ps(hi);
  const __m128i zp4 = _mm_set1_epi32(zp);
  auto of = [&](int64_t at) {
    const __m128 ys4 = ys_step ? _mm_loadu_ps(ys + at) : _mm_set1_ps(ys[0]);
    const __m128 a = _mm_cvtepi32_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + at)));
    __m128 y = _mm_div_ps(_mm_add_ps(_mm_mul_ps(a, _mm_loadu_ps(s + at)), _mm_loadu_ps(b + at)), ys4);
    y = _mm_min_ps(_mm_max_ps(y, lo4), hi4);
    return _mm_add_epi32(_mm_cvtps_epi32(y), zp4);
  };
  for (; c + 16 <= m; c += 16) Store16<T>(of(c), of(c + 4), of(c + 8), of(c + 12), out + c);
#endif
  for (; c < m; ++c) out[c] = static_cast<T>(Codes{s[c], b[c], ys[c * ys_step], lo, hi, zp}.Of(acc[c]));
}

}  // namespace qcompile
