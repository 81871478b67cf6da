// DirectConvInteger's sums with AVX-512 VNNI (built with -mavx512f -mavx512vnni): a tile of
// 3 vectors x 16 flat outputs times 8 output channels in 24 registers over all taps and channel
// quads (one vector at a time for the last outputs); each step loads the tile's input bytes
// once and multiplies them with each channel's broadcast weight quad (vpdpbusd: 4 u8 x s8
// products added to an int32 lane without intermediate saturation: exact like the reference).
#include <immintrin.h>

#include "direct_conv.h"

namespace qcompile {
namespace {

constexpr int64_t MB = kVnniBlock;
static_assert(MB == 8, "the tiles below hold 8 channels");

template <int NV>
inline void Tile(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                 const int32_t* init, int64_t q0, int32_t* acc) {
  const int64_t plane = g.P * 4, step = g.CQ * MB * 4;
  __m512i a[NV][MB];
  for (int j = 0; j < MB; ++j)
    for (int v = 0; v < NV; ++v) a[v][j] = _mm512_set1_epi32(init[j]);
  for (int64_t t = 0; t < g.taps; ++t) {
    const uint8_t* x = xq + (runs[t] + q0) * 4;
    const int8_t* w = wq + t * step;
    for (int64_t cq = 0; cq < g.CQ; ++cq, x += plane, w += MB * 4) {
      __m512i xv[NV];
      for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_si512(x + 64 * v);
      for (int j = 0; j < MB; ++j) {
        int32_t quad;
        __builtin_memcpy(&quad, w + 4 * j, 4);
        const __m512i b = _mm512_set1_epi32(quad);
        for (int v = 0; v < NV; ++v) a[v][j] = _mm512_dpbusd_epi32(a[v][j], xv[v], b);
      }
    }
  }
  for (int j = 0; j < MB; ++j)
    for (int v = 0; v < NV; ++v) _mm512_storeu_si512(acc + j * g.run + q0 + 16 * v, a[v][j]);
}

}  // namespace

void DirectSumVnni(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                   const int32_t* init, int32_t* acc) {
  int64_t q0 = 0;
  for (; q0 + 48 <= g.run; q0 += 48) Tile<3>(g, runs, xq, wq, init, q0, acc);
  for (; q0 < g.run; q0 += 16) Tile<1>(g, runs, xq, wq, init, q0, acc);
}

}  // namespace qcompile
