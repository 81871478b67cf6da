// Requantize's codes 32 at a time with AVX2 (built with -mavx2): the steps of codes.h's CodesRow
// (float32 multiply, add, divide, clamp, cvtps2dq's round half to even, zero point) on 8 lanes,
// and of thresholds mode (Pow2Codes).
// Only the plain data struct Codes comes from codes.h: its inline functions, compiled here with
// AVX2, could otherwise be the copy the linker keeps for every caller (ODR), so this file has its
// own scalar tail.
#include <immintrin.h>

#include <cmath>

#include "codes.h"

namespace qcompile {
namespace {

struct Codes8 {
  __m256 s, b, ys, lo, hi;
  __m256i zp;

  explicit Codes8(const Codes& k)
      : s(_mm256_set1_ps(k.s)), b(_mm256_set1_ps(k.b)), ys(_mm256_set1_ps(k.ys)),
        lo(_mm256_set1_ps(k.lo)), hi(_mm256_set1_ps(k.hi)), zp(_mm256_set1_epi32(k.zp)) {}

  __m256i Of(const int32_t* acc) const {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc));
    __m256 y = _mm256_div_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), s), b), ys);
    y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);  // maxps(y, lo): a NaN takes lo
    return _mm256_add_epi32(_mm256_cvtps_epi32(y), zp);
  }
};

int32_t Scalar(const Codes& k, int32_t acc) {
  float y = (static_cast<float>(acc) * k.s + k.b) / k.ys;
  y = y > k.lo ? y : k.lo;
  y = y < k.hi ? y : k.hi;
  return static_cast<int32_t>(std::nearbyint(y)) + k.zp;
}

template <typename T>
void Row(const Codes& k, const int32_t* acc, int64_t n, T* out) {
  const Codes8 k8(k);
  // the packs interleave 128-bit halves: dwords come out as q0 q1 q2 q3 of the low halves, then
  // of the high ones; this permutation puts the 32 codes back in order
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i w0 = _mm256_packs_epi32(k8.Of(acc + i), k8.Of(acc + i + 8));
    const __m256i w1 = _mm256_packs_epi32(k8.Of(acc + i + 16), k8.Of(acc + i + 24));
    const __m256i bytes = std::is_signed_v<T> ? _mm256_packs_epi16(w0, w1) : _mm256_packus_epi16(w0, w1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  for (; i < n; ++i) out[i] = static_cast<T>(Scalar(k, acc[i]));
}

// Eight codes of thresholds mode (Pow2Codes): y in float32 as the scalar steps, |y| against each
// threshold (ascending: the last one reached sets the magnitude, a select per level), the sign,
// then + zp clamped; a NaN reaches no threshold and gives 0 + zp, as Pow2Quant's 0.
inline __m256i Pow2Of(const Pow2Codes& p, const __m256* t, const __m256* mag, const int32_t* acc) {
  const __m256 y = _mm256_add_ps(
      _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc))),
                    _mm256_set1_ps(p.s)),
      _mm256_set1_ps(p.b));
  const __m256 ay = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), y);
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < p.levels; ++k) m = _mm256_blendv_ps(m, mag[k], _mm256_cmp_ps(ay, t[k], _CMP_GE_OQ));
  // negative iff !(y >= 0): a NaN y has m = 0, and -0 converts to 0
  const __m256 neg = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_NGE_UQ);
  const __m256 a = _mm256_blendv_ps(m, _mm256_sub_ps(_mm256_setzero_ps(), m), neg);
  const __m256i v = _mm256_add_epi32(_mm256_cvttps_epi32(a), _mm256_set1_epi32(p.zp));
  return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(p.lo)), _mm256_set1_epi32(p.hi));
}

int32_t Pow2Scalar(const Pow2Codes& p, int32_t acc) {
  const float y = static_cast<float>(acc) * p.s + p.b, ay = std::fabs(y);
  int j = 0;
  for (int k = 0; k < p.levels; ++k) j += ay >= p.t[k] ? 1 : 0;
  const int32_t mag = j ? (int32_t{1} << (j - 1)) : 0;
  const int32_t v = (y >= 0.0f ? mag : -mag) + p.zp;
  return v < p.lo ? p.lo : (v > p.hi ? p.hi : v);
}

template <typename T>
void Pow2Row(const Pow2Codes& p, const int32_t* acc, int64_t n, T* out) {
  __m256 t[8], mag[8];
  for (int k = 0; k < p.levels && k < 8; ++k)
    t[k] = _mm256_set1_ps(p.t[k]), mag[k] = _mm256_set1_ps(static_cast<float>(1 << k));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i w0 = _mm256_packs_epi32(Pow2Of(p, t, mag, acc + i), Pow2Of(p, t, mag, acc + i + 8));
    const __m256i w1 =
        _mm256_packs_epi32(Pow2Of(p, t, mag, acc + i + 16), Pow2Of(p, t, mag, acc + i + 24));
    const __m256i bytes = std::is_signed_v<T> ? _mm256_packs_epi16(w0, w1) : _mm256_packus_epi16(w0, w1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  for (; i < n; ++i) out[i] = static_cast<T>(Pow2Scalar(p, acc[i]));
}

}  // namespace

void Pow2RowAvx2(const Pow2Codes& p, const int32_t* acc, int64_t n, int8_t* out, float*, int8_t*) {
  Pow2Row(p, acc, n, out);
}
void Pow2RowAvx2(const Pow2Codes& p, const int32_t* acc, int64_t n, uint8_t* out, float*, int8_t*) {
  Pow2Row(p, acc, n, out);
}

void CodesRowAvx2(const Codes& k, const int32_t* acc, int64_t n, int8_t* out) { Row(k, acc, n, out); }
void CodesRowAvx2(const Codes& k, const int32_t* acc, int64_t n, uint8_t* out) { Row(k, acc, n, out); }

}  // namespace qcompile
