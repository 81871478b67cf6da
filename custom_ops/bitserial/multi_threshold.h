// The multi-threshold epilogue of BitSerialConvThreshold / BitSerialGemmThreshold
// (custom_ops/SPEC.md): per output channel m, L monotone int32 thresholds give a count
// c = #{k : dir[m] > 0 ? D >= T[m][k] : D <= T[m][k]}, the code v = out_base + c is written as
// the consumer's P packed bit planes (two's complement when out_base < 0). Scalar and shared by
// every kernel variant: it runs once per output value, after the D sums that dominate.
#pragma once

#include <cstdint>
#include <vector>

namespace qcompile {
namespace bitserial {

struct MultiThresholdArgs {
  const int32_t* thr_flipped;  // [M, L]: T ^ flip (FlipThresholds)
  const int32_t* thr_levels;   // [L, M]: the same by level (MultiThresholdDense)
  const int32_t* flip;         // [M]: 0 for direction +1, ~0 for -1
  int64_t L;
  int64_t out_base;    // v = out_base + count
  int64_t P;           // output planes
  int64_t plane;       // OH*OW: between channels of D
  int64_t OG, Mg_out, Wg_out, OW, YW;  // YW = OG * P * Wg_out words per output pixel
};

// row[ow*YW + word] for every pixel ow of one output row; d_row: D of channel 0 of the row
// (channel m at d_row + m*plane), held exactly as float (|D| <= 2^24).
void MultiThresholdRow(const MultiThresholdArgs& a, const float* d_row, uint64_t* row);

// The codes of one dense output row: channel m's D at d[m] (exact int32), its code's planes
// into row[p*Wg_out + word] (a.P planes, a.Wg_out words each; OG = 1, one pixel). Reads
// thr_levels, so that the compares run across channels.
void MultiThresholdDense(const MultiThresholdArgs& a, const int32_t* d, int64_t M, uint64_t* row);

// flip, thr_flipped and thr_levels ([M], [M, L], [L, M]) from thresholds [M, L] and
// directions [M].
void FlipThresholds(const int32_t* thr, const int32_t* dir, int64_t M, int64_t L, int32_t* flip,
                    int32_t* thr_flipped, int32_t* thr_levels);

// The three tables of FlipThresholds, owned: what the threshold epilogues read.
struct ThresholdTables {
  int64_t L = 0;
  std::vector<int32_t> flip, thr_flipped, thr_levels;
  // From thresholds [M, L] and directions [M] (already checked).
  void Build(const int32_t* thr, const int32_t* dir, int64_t M, int64_t levels);
  // a's thr_flipped, thr_levels, flip and L from these tables.
  void Fill(MultiThresholdArgs* a) const;
};

}  // namespace bitserial
}  // namespace qcompile
