// DirectConvInteger's sums with AVX2 (built with -mavx2): a tile of 3 vectors x 8 flat outputs
// times 4 output channels in 12 registers (one vector at a time for the last outputs).
// vpmaddubsw multiplies u8 x by s8 w and adds adjacent pairs into int16 with saturation, so this
// variant runs only weights whose every adjacent pair has |w0| + |w1| <= 128 (then
// 255 (|w0| + |w1|) <= 32640 cannot saturate; the op checks); vpmaddwd against ones then adds
// the two pairs of each quad into int32.
#include <immintrin.h>

#include "direct_conv.h"

namespace qcompile {
namespace {

constexpr int64_t MB = kAvx2Block;
static_assert(MB == 4, "the tiles below hold 4 channels");

template <int NV>
inline void Tile(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                 const int32_t* init, int64_t q0, int32_t* acc) {
  const int64_t plane = g.P * 4, step = g.CQ * MB * 4;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a[NV][MB];
  for (int j = 0; j < MB; ++j)
    for (int v = 0; v < NV; ++v) a[v][j] = _mm256_set1_epi32(init[j]);
  for (int64_t t = 0; t < g.taps; ++t) {
    const uint8_t* x = xq + (runs[t] + q0) * 4;
    const int8_t* w = wq + t * step;
    for (int64_t cq = 0; cq < g.CQ; ++cq, x += plane, w += MB * 4) {
      __m256i xv[NV];
      for (int v = 0; v < NV; ++v) xv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * v));
      for (int j = 0; j < MB; ++j) {
        int32_t quad;
        __builtin_memcpy(&quad, w + 4 * j, 4);
        const __m256i b = _mm256_set1_epi32(quad);
        for (int v = 0; v < NV; ++v)
          a[v][j] = _mm256_add_epi32(a[v][j], _mm256_madd_epi16(_mm256_maddubs_epi16(xv[v], b), ones));
      }
    }
  }
  for (int j = 0; j < MB; ++j)
    for (int v = 0; v < NV; ++v)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j * g.run + q0 + 8 * v), a[v][j]);
}

}  // namespace

void DirectSumAvx2(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                   const int32_t* init, int32_t* acc) {
  int64_t q0 = 0;
  for (; q0 + 24 <= g.run; q0 += 24) Tile<3>(g, runs, xq, wq, init, q0, acc);
  for (; q0 < g.run; q0 += 8) Tile<1>(g, runs, xq, wq, init, q0, acc);
}

}  // namespace qcompile
