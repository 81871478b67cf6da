// DirectConvInteger's sums with AMX-INT8 (built with -mamx-tile -mamx-int8): a tile of 32 output
// channels x 32 flat outputs in four 16 x 16 int32 accumulator tiles. tdpbsud multiplies a
// 16-channel x 16-quad weight tile (s8, A) by a 16-quad x 16-output input tile (u8, B: row r is
// quad r of 16 consecutive flat outputs, 64 contiguous bytes of direct_conv_kernel.h's layout, the
// rows one quad plane apart) and adds in int32 without intermediate saturation: exact. The
// accumulator rows are output channels, so a tile stores straight into acc's [channel, q] rows.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "direct_conv.h"

namespace qcompile {
namespace {

struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

}  // namespace

void DirectSumAmx(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                  const int32_t* init, int32_t* acc) {
  static_assert(kAmxBlock == 32, "the tiles below hold 32 channels");
  const int64_t qk = std::min<int64_t>(16, g.CQ), KC = g.CQ / qk;  // CQ: a multiple of qk
  TileConfig cfg;
  for (int c = 0; c < 4; ++c) cfg.rows[c] = 16, cfg.colsb[c] = 64;      // C: 16 channels x 16 q
  for (int a = 4; a < 6; ++a) cfg.rows[a] = 16, cfg.colsb[a] = static_cast<uint16_t>(qk * 4);  // A
  for (int b = 6; b < 8; ++b) cfg.rows[b] = static_cast<uint8_t>(qk), cfg.colsb[b] = 64;       // B
  _tile_loadconfig(&cfg);
  alignas(64) int32_t start[2][16][16];  // each channel's starting value along its row
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 16; ++j) std::fill(start[h][j], start[h][j] + 16, init[16 * h + j]);
  const int64_t plane = g.P * 4, chunk = qk * plane, wrow = qk * 4, out_stride = g.run * 4;
  for (int64_t q0 = 0; q0 < g.run; q0 += 32) {
    _tile_loadd(0, start[0], 64);
    _tile_loadd(1, start[0], 64);
    _tile_loadd(2, start[1], 64);
    _tile_loadd(3, start[1], 64);
    const int8_t* w = wq;
    for (int64_t t = 0; t < g.taps; ++t) {
      const uint8_t* x = xq + (runs[t] + q0) * 4;
      for (int64_t kc = 0; kc < KC; ++kc, x += chunk, w += 32 * wrow) {
        // each product as soon as its two tiles are in
        _tile_loadd(6, x, plane);
        _tile_loadd(4, w, wrow);
        _tile_dpbsud(0, 4, 6);
        _tile_loadd(5, w + 16 * wrow, wrow);
        _tile_dpbsud(2, 5, 6);
        _tile_loadd(7, x + 64, plane);
        _tile_dpbsud(1, 4, 7);
        _tile_dpbsud(3, 5, 7);
      }
    }
    _tile_stored(0, acc + q0, out_stride);
    _tile_stored(1, acc + q0 + 16, out_stride);
    _tile_stored(2, acc + 16 * g.run + q0, out_stride);
    _tile_stored(3, acc + 16 * g.run + q0 + 16, out_stride);
  }
  _tile_release();  // no tile state left for the OS to save at a context switch
}

}  // namespace qcompile
