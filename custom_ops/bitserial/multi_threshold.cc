#include "multi_threshold.h"

#include <algorithm>

#include "../common/bit_gather.h"

namespace qcompile {
namespace bitserial {
namespace {

constexpr int64_t kPixels = 8;  // output pixels whose words are built in registers at once

// The code bits of channel j (bit position j of the words) for `count` pixels from D at dm:
// count = #{k : (D ^ f) >= (T_k ^ f)} with f = 0 for up and ~0 for down (~ reverses the order
// of int32 without overflow), so both directions are one branch-free loop over tf = T ^ f.
// Templated on the plane count for the usual 1-4 (kAnyP: a.P); L, the base and P are read into
// locals, since the uint64 stores to acc may alias the int64 fields of a.
constexpr int kAnyP = 0;

template <int kP>
inline void OrCodeBits(const MultiThresholdArgs& a, const int32_t* tf, int32_t f, const float* dm,
                       int64_t count, int64_t j, uint64_t acc[kPixels][16]) {
  const int64_t P = kP == kAnyP ? a.P : kP, L = a.L, base = a.out_base;
  const uint64_t code_mask = (uint64_t{1} << P) - 1;
  for (int64_t i = 0; i < count; ++i) {
    const int32_t d = static_cast<int32_t>(dm[i]) ^ f;
    int64_t c = 0;
    for (int64_t k = 0; k < L; ++k) c += static_cast<int64_t>(d >= tf[k]);
    const uint64_t u = static_cast<uint64_t>(base + c) & code_mask;  // two's complement
    for (int64_t p = 0; p < P; ++p) acc[i][p] |= ((u >> p) & 1) << j;
  }
}

// The same for a full chunk of kPixels pixels, written as fixed-length loops over the pixels
// that the compiler vectorizes (compares into int32 lanes, plane bits into uint64 lanes); the
// code v = out_base + count kept in int32, whose low P bits are v's two's complement planes.
template <int kP>
inline void OrCodeBitsChunk(const MultiThresholdArgs& a, const int32_t* tf, int32_t f, const float* dm,
                            int64_t j, uint64_t planes[16][kPixels]) {
  const int64_t P = kP == kAnyP ? a.P : kP, L = a.L;
  const int32_t base = static_cast<int32_t>(a.out_base);
  int32_t d[kPixels], v[kPixels];
  for (int64_t i = 0; i < kPixels; ++i) d[i] = static_cast<int32_t>(dm[i]) ^ f;
  for (int64_t i = 0; i < kPixels; ++i) v[i] = base;
  for (int64_t k = 0; k < L; ++k) {
    const int32_t t = tf[k];
    for (int64_t i = 0; i < kPixels; ++i) v[i] += static_cast<int32_t>(d[i] >= t);
  }
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < kPixels; ++i)
      planes[p][i] |= static_cast<uint64_t>((v[i] >> p) & 1) << j;
}

template <int kP>
void RowOfPlanes(const MultiThresholdArgs& a, const float* d_row, uint64_t* row) {
  const int64_t P = kP == kAnyP ? a.P : kP, OW = a.OW, YW = a.YW, L = a.L, Wg_out = a.Wg_out;
  const int64_t plane = a.plane;
  for (int64_t og = 0; og < a.OG; ++og) {
    for (int64_t k = 0; k < Wg_out; ++k) {
      // output word k of group og holds channels m0 .. m0+nb-1 (64 at most)
      const int64_t m0 = og * a.Mg_out + k * 64;
      const int64_t nb = std::min<int64_t>(64, a.Mg_out - k * 64);
      for (int64_t ow = 0; ow < OW; ow += kPixels) {
        const int64_t count = std::min(kPixels, OW - ow);
        if (count == kPixels) {
          uint64_t planes[16][kPixels] = {};
          for (int64_t j = 0; j < nb; ++j) {
            const int64_t m = m0 + j;
            OrCodeBitsChunk<kP>(a, a.thr_flipped + m * L, a.flip[m], d_row + m * plane + ow, j, planes);
          }
          for (int64_t i = 0; i < kPixels; ++i) {
            uint64_t* px = row + (ow + i) * YW + (og * P) * Wg_out + k;
            for (int64_t p = 0; p < P; ++p) px[p * Wg_out] = planes[p][i];
          }
          continue;
        }
        uint64_t acc[kPixels][16] = {};
        for (int64_t j = 0; j < nb; ++j) {
          const int64_t m = m0 + j;
          OrCodeBits<kP>(a, a.thr_flipped + m * L, a.flip[m], d_row + m * plane + ow, count, j, acc);
        }
        for (int64_t i = 0; i < count; ++i) {
          uint64_t* px = row + (ow + i) * YW + (og * P) * Wg_out + k;
          for (int64_t p = 0; p < P; ++p) px[p * Wg_out] = acc[i][p];
        }
      }
    }
  }
}
}  // namespace

void MultiThresholdRow(const MultiThresholdArgs& a, const float* d_row, uint64_t* row) {
  switch (a.P) {
    case 1: return RowOfPlanes<1>(a, d_row, row);
    case 2: return RowOfPlanes<2>(a, d_row, row);
    case 3: return RowOfPlanes<3>(a, d_row, row);
    case 4: return RowOfPlanes<4>(a, d_row, row);
    default: return RowOfPlanes<kAnyP>(a, d_row, row);
  }
}

void MultiThresholdDense(const MultiThresholdArgs& a, const int32_t* d, int64_t M, uint64_t* row) {
  const int64_t P = a.P, L = a.L;
  const int32_t base = static_cast<int32_t>(a.out_base);
  for (int64_t k = 0; k * 64 < M; ++k) {
    const int64_t m0 = k * 64, nb = std::min<int64_t>(64, M - m0);
    // the codes of channels m0 .. m0+nb-1, as OrCodeBits counts them
    int32_t v[64];
    int32_t dm[64];
    for (int64_t j = 0; j < nb; ++j) dm[j] = d[m0 + j] ^ a.flip[m0 + j];
    for (int64_t j = 0; j < nb; ++j) v[j] = base;
    for (int64_t l = 0; l < L; ++l) {
      const int32_t* t = a.thr_levels + l * M + m0;
      for (int64_t j = 0; j < nb; ++j) v[j] += static_cast<int32_t>(dm[j] >= t[j]);
    }
    for (int64_t p = 0; p < P; ++p) {
      const uint64_t word = GatherBit(v, nb, static_cast<int>(p));
      row[p * a.Wg_out + k] = word;
    }
  }
}

void FlipThresholds(const int32_t* thr, const int32_t* dir, int64_t M, int64_t L, int32_t* flip,
                    int32_t* thr_flipped, int32_t* thr_levels) {
  for (int64_t m = 0; m < M; ++m) {
    flip[m] = dir[m] > 0 ? 0 : ~int32_t{0};
    for (int64_t k = 0; k < L; ++k) {
      thr_flipped[m * L + k] = thr[m * L + k] ^ flip[m];
      thr_levels[k * M + m] = thr_flipped[m * L + k];
    }
  }
}

void ThresholdTables::Build(const int32_t* thr, const int32_t* dir, int64_t M, int64_t levels) {
  L = levels;
  flip.resize(static_cast<size_t>(M));
  thr_flipped.resize(static_cast<size_t>(M * L));
  thr_levels.resize(static_cast<size_t>(M * L));
  FlipThresholds(thr, dir, M, L, flip.data(), thr_flipped.data(), thr_levels.data());
}

void ThresholdTables::Fill(MultiThresholdArgs* a) const {
  a->thr_flipped = thr_flipped.data();
  a->thr_levels = thr_levels.data();
  a->flip = flip.data();
  a->L = L;
}

}  // namespace bitserial
}  // namespace qcompile
