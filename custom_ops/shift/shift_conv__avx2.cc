// ShiftConv / ShiftGemm int8 dot-product tile for AVX2 (custom_ops/SPEC.md, "SHIFT"; the
// packing, im2col and dispatch are in shift_kernel.cc / shift_ops.cc). Built with -mavx2 in its
// own translation unit and called only when the CPU has AVX2.
//
// Why this path multiplies instead of shifting: a · (±2^e) = ±(a << e) exactly, so the integer
// D is the same whether the product is formed by a shift or by a multiply. But on x86 one
// vpmaddubsw does 32 int8 multiply-adds (u8 x s8 -> pairs summed into 16 int16), whereas the
// variable shift vpsllvd handles only 8 int32 lanes (and every term of the shift-and-add kernel
// still needs its own sign-extend, shift, sign fix and add). So the weights are decoded once
// to int8 w_int (|w| <= 64) and D is an ordinary int8 dot product.
//
// vpmaddubsw takes one unsigned and one signed operand, so the activation codes go in offset:
// u = a + off in [0, 255] with off = max(0, -min code) (ActOffset: 128 for signed 8-bit codes,
// 2^(L-1) for pow2 codes), and sum_k u·w = D + off · sum_k w, the constant removed afterwards
// (PackedWeights::corr). A zero-padded tap has a = 0, i.e. u = off, so padding needs no other
// correction. Each int16 pair sum is at most 2 · max u · max |w| <= 2 · 255 · 64 = 32640 <
// 32767, so vpmaddubsw never saturates (the op checks this bound against its activation range,
// ShiftInt8Fits, before choosing this path). The pair sums are then widened into int32 lanes by
// vpmaddwd with ones and summed with wrapping adds. Small ranges (AQE's 3-bit codes: u <= 8,
// |w| <= 4) let `depth` quads of pair sums add up in int16 lanes first (Int16Depth: the
// int16 sum cannot pass 32767), so most quads cost one multiply instead of two. The true D fits
// int32 (checked when the kernel is created), so the sum taken modulo 2^32 minus the
// correction modulo 2^32 is D exactly even if the offset sum itself would overflow.
#include <immintrin.h>

#include <cstring>

#include "shift_kernel.h"

namespace qcompile {
namespace shift {
namespace {

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// out[r][0..15] = sum_q sum_i u[r*lda + 4q + i] * w[(q*16 + j)*4 + i] for r < R: 16 channels
// (two ymm of 8 int32 lanes, 4 consecutive k per lane) x R rows, all accumulators in registers
// (named variables, see TileInt16).
template <int R>
inline void Tile(const uint8_t* u, int64_t lda, const int8_t* w, int64_t quads, int32_t* out) {
  static_assert(R >= 1 && R <= 6, "at most 6 rows");
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i zero = _mm256_setzero_si256();
  const uint8_t* u0 = u;
  const uint8_t* u1 = u + lda;
  const uint8_t* u2 = u + 2 * lda;
  const uint8_t* u3 = u + 3 * lda;
  const uint8_t* u4 = u + 4 * lda;
  const uint8_t* u5 = u + 5 * lda;
  __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero;
  __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero, c4 = zero, c5 = zero;
  for (int64_t q = 0; q < quads; ++q) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64 + 32));
#define QC_ROW(i)                                                                          \
  if constexpr (R > i) {                                                                   \
    const __m256i b = _mm256_set1_epi32(Load4(u##i + 4 * q));                              \
    a##i = _mm256_add_epi32(a##i, _mm256_madd_epi16(_mm256_maddubs_epi16(b, w0), ones));   \
    c##i = _mm256_add_epi32(c##i, _mm256_madd_epi16(_mm256_maddubs_epi16(b, w1), ones));   \
  }
    QC_ROW(0) QC_ROW(1) QC_ROW(2) QC_ROW(3) QC_ROW(4) QC_ROW(5)
#undef QC_ROW
  }
#define QC_STORE(i)                                                                      \
  if constexpr (R > i) {                                                                 \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * kDotBlockM), a##i);         \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * kDotBlockM + 8), c##i);     \
  }
  QC_STORE(0) QC_STORE(1) QC_STORE(2) QC_STORE(3) QC_STORE(4) QC_STORE(5)
#undef QC_STORE
}

// Tile with the pair sums of up to `depth` quads added in int16 lanes (vpaddw; no overflow by
// the choice of depth) before each widening into the int32 sums kept in `out`. The accumulators
// are named variables, not arrays: GCC otherwise keeps some of them on the stack, and the
// store-to-load latency of that chain dominates the loop.
template <int R>
inline void TileInt16(const uint8_t* u, int64_t lda, const int8_t* w, int64_t quads,
                      int64_t depth, int32_t* out) {
  static_assert(R >= 1 && R <= 6, "at most 6 rows (12 accumulators + 2 weights + 1 broadcast)");
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i zero = _mm256_setzero_si256();
  for (int r = 0; r < 2 * R; ++r) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * 8), zero);
  const uint8_t* u0 = u;
  const uint8_t* u1 = u + lda;
  const uint8_t* u2 = u + 2 * lda;
  const uint8_t* u3 = u + 3 * lda;
  const uint8_t* u4 = u + 4 * lda;
  const uint8_t* u5 = u + 5 * lda;
  for (int64_t q0 = 0; q0 < quads; q0 += depth) {
    const int64_t q1 = q0 + depth < quads ? q0 + depth : quads;
    __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero;
    __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero, c4 = zero, c5 = zero;
#pragma GCC unroll 2
    for (int64_t q = q0; q < q1; ++q) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64 + 32));
#define QC_ROW(i)                                                        \
  if constexpr (R > i) {                                                 \
    const __m256i b = _mm256_set1_epi32(Load4(u##i + 4 * q));            \
    a##i = _mm256_add_epi16(a##i, _mm256_maddubs_epi16(b, w0));          \
    c##i = _mm256_add_epi16(c##i, _mm256_maddubs_epi16(b, w1));          \
  }
      QC_ROW(0) QC_ROW(1) QC_ROW(2) QC_ROW(3) QC_ROW(4) QC_ROW(5)
#undef QC_ROW
    }
#define QC_WIDEN(i)                                                                          \
  if constexpr (R > i) {                                                                     \
    __m256i* o0 = reinterpret_cast<__m256i*>(out + i * kDotBlockM);                          \
    __m256i* o1 = reinterpret_cast<__m256i*>(out + i * kDotBlockM + 8);                      \
    _mm256_storeu_si256(o0, _mm256_add_epi32(_mm256_loadu_si256(o0), _mm256_madd_epi16(a##i, ones))); \
    _mm256_storeu_si256(o1, _mm256_add_epi32(_mm256_loadu_si256(o1), _mm256_madd_epi16(c##i, ones))); \
  }
    QC_WIDEN(0) QC_WIDEN(1) QC_WIDEN(2) QC_WIDEN(3) QC_WIDEN(4) QC_WIDEN(5)
#undef QC_WIDEN
  }
}

// Rows per tile: 4 rows x 2 channel vectors = 8 accumulators leaves GCC enough registers (6 rows
// fit 16 ymm only just, and GCC then keeps accumulators on the stack).
constexpr int kRows = 4;

// Below this depth the int32 tile is used (widening every quad in registers beats widening
// every few quads through memory).
constexpr int64_t kMinInt16Depth = 4;

template <int R>
inline void RowTile(const uint8_t* u, int64_t lda, const int8_t* w, int64_t quads, int64_t depth,
                    int32_t* out) {
  if (depth >= kMinInt16Depth)
    TileInt16<R>(u, lda, w, quads, depth, out);
  else
    Tile<R>(u, lda, w, quads, out);
}

}  // namespace

void DotTileAvx2(const uint8_t* u, int64_t lda, int64_t rows, const int8_t* w, int64_t K4,
                 int64_t depth, int32_t* out) {
  static_assert(kDotBlockM == 16, "Tile holds 16 channels in two ymm");
  const int64_t quads = K4 / 4;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows)
    RowTile<kRows>(u + r * lda, lda, w, quads, depth, out + r * kDotBlockM);
  const uint8_t* ur = u + r * lda;
  int32_t* o = out + r * kDotBlockM;
  switch (rows - r) {
    case 6: RowTile<6>(ur, lda, w, quads, depth, o); break;
    case 5: RowTile<5>(ur, lda, w, quads, depth, o); break;
    case 4: RowTile<4>(ur, lda, w, quads, depth, o); break;
    case 3: RowTile<3>(ur, lda, w, quads, depth, o); break;
    case 2: RowTile<2>(ur, lda, w, quads, depth, o); break;
    case 1: RowTile<1>(ur, lda, w, quads, depth, o); break;
    default: break;
  }
}

}  // namespace shift
}  // namespace qcompile
