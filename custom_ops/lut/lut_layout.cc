// Plans, activation byte layouts and weight tables of the table-lookup kernels (lut_kernel.h).
// Portable code, built without ISA flags; runs once per call (activations) or per layer (tables).
#include <cstdlib>
#include <cstring>

#include "lut_kernel.h"

namespace qcompile {
namespace lut {
namespace {

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Bit c of a packed channel row (channel c in word c / 64, bit c % 64).
inline int Bit(const uint64_t* row, int64_t c) {
  return static_cast<int>((row[c >> 6] >> (c & 63)) & 1);
}

// The pad bits of a channel row's last word (0 when Cg is a multiple of 64). The tables count
// only real channels, while the popcount kernels count whole words: a set pad bit (outside
// SPEC) would make the results differ, so the LUT path is not taken then (as tap concatenation).
inline uint64_t PadMask(int64_t Cg) {
  return Cg % 64 == 0 ? 0 : ~((uint64_t{1} << (Cg % 64)) - 1);
}

}  // namespace

bool MakeLutPlan(const xnor::ConvGeometry& s, int64_t P, LutPlan* p) {
  if (P < 1 || P > 4) return false;
  p->N = s.N;
  p->G = s.G;
  p->Mg = s.Mg;
  p->M = s.M;
  p->OH = s.OH;
  p->OW = s.OW;
  p->planes = P;
  p->per_nibble = 4 / P;
  p->C4 = (s.Cg + p->per_nibble - 1) / p->per_nibble;
  p->sh = s.sh;
  p->sw = s.sw;
  const int64_t row_reach = ((s.KH - 1) * s.dh) / s.sh, col_reach = ((s.KW - 1) * s.dw) / s.sw;
  p->Hq = s.OH + row_reach;
  p->Wq = s.OW + col_reach;
  p->vcount = s.OH * p->Wq;
  // The last pass reads kLutPx bytes from its first position plus the farthest tap offset.
  p->pitch = RoundUp(RoundUp(p->vcount, kLutPx) + row_reach * p->Wq + col_reach, 32);
  p->steps = s.KH * s.KW * p->C4;
  p->blocks = (s.Mg + kLutM - 1) / kLutM;
  p->max_entry = 0;
  return true;
}

void LutStepOffsets(const xnor::ConvGeometry& s, const LutPlan& p, int64_t* step_off) {
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t rh = (kh * s.dh) % s.sh, rw = (kw * s.dw) % s.sw;
      const int64_t shift = ((kh * s.dh) / s.sh) * p.Wq + (kw * s.dw) / s.sw;
      for (int64_t c4 = 0; c4 < p.C4; ++c4)
        step_off[(kh * s.KW + kw) * p.C4 + c4] = ((c4 * s.sh + rh) * s.sw + rw) * p.pitch + shift;
    }
}

int64_t LutActivationBytes(const LutPlan& p) { return p.N * p.G * p.C4 * p.sh * p.sw * p.pitch; }
int64_t LutTableBytes(const LutPlan& p) { return p.G * p.blocks * p.steps * kLutM * kTableBytes; }

bool LutActivationsOf(const xnor::ConvGeometry& s, const LutPlan& p, const uint64_t* x,
                      uint8_t* xb, int64_t n, int64_t g) {
  const int64_t P = p.planes, pn = p.per_nibble, phases = s.sh * s.sw;
  const uint64_t pad = PadMask(s.Cg);
  uint64_t pad_bits = 0;
  const int64_t real = p.Hq * p.Wq;
  uint8_t* base = xb + (n * s.G + g) * p.C4 * phases * p.pitch;
  const int64_t c4_step = phases * p.pitch;
  for (int64_t rh = 0; rh < s.sh; ++rh)
    for (int64_t rw = 0; rw < s.sw; ++rw) {
      uint8_t* phase = base + (rh * s.sw + rw) * p.pitch;
      for (int64_t c4 = 0; c4 < p.C4; ++c4)
        std::memset(phase + c4 * c4_step + real, kPadByte, p.pitch - real);
      for (int64_t qh = 0; qh < p.Hq; ++qh) {
        const int64_t ih = qh * s.sh + rh - s.pt;
        for (int64_t qw = 0; qw < p.Wq; ++qw) {
          const int64_t iw = qw * s.sw + rw - s.pl;
          uint8_t* dst = phase + qh * p.Wq + qw;
          if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) {
            for (int64_t c4 = 0; c4 < p.C4; ++c4) dst[c4 * c4_step] = kPadByte;
            continue;
          }
          const uint64_t* px = x + ((n * s.H + ih) * s.W + iw) * s.XW + g * P * s.Wg;
          for (int64_t q = 0; q < P; ++q) pad_bits |= px[q * s.Wg + s.Wg - 1] & pad;
          if (P == 1) {  // a nibble is 4 consecutive channels of one word
            for (int64_t c4 = 0; c4 < p.C4; ++c4)
              dst[c4 * c4_step] = static_cast<uint8_t>((px[c4 >> 4] >> ((c4 & 15) * 4)) & 15);
            continue;
          }
          // Bits q*pn .. q*pn + pn-1 of the nibble: plane q of channels c4*pn .. c4*pn + pn-1
          // (pn divides 64, so they sit in one word; pad channels are 0 by the check above).
          const uint64_t low = (uint64_t{1} << pn) - 1;
          for (int64_t c4 = 0; c4 < p.C4; ++c4) {
            const int64_t c = c4 * pn;
            uint64_t v = 0;
            for (int64_t q = 0; q < P; ++q)
              v |= ((px[q * s.Wg + (c >> 6)] >> (c & 63)) & low) << (q * pn);
            dst[c4 * c4_step] = static_cast<uint8_t>(v);
          }
        }
      }
    }
  return pad_bits == 0;
}

bool LutActivations(const xnor::ConvGeometry& s, const LutPlan& p, const uint64_t* x,
                    uint8_t* xb) {
  bool clean = true;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t g = 0; g < s.G; ++g) clean &= LutActivationsOf(s, p, x, xb, n, g);
  return clean;
}

// Measured (tools/lut_check.sh variants + bench, 1 thread, Xeon Sapphire Rapids host): against
// avx2, the LUT kernel wins where a layer has many output positions per image (its tables are
// read once per 64 positions): 3x3 at 56x56 (1.2-1.7x), ~even at 28x28, 0.3-0.5x at 14x14 and
// 7x7; 1x1 at 56x56 / 28x28 / 14x14 1.2-1.45x. Against avx512vpopcnt only 1x1 layers with
// >= 28x28 outputs (2.3x / 1.8x).
bool LutBeatsAvx2(const xnor::ConvGeometry& s) {
  const int64_t positions = s.OH * (s.OW + ((s.KW - 1) * s.dw) / s.sw);
  return s.KH * s.KW == 1 ? positions >= 192 : positions >= 1024;
}
bool LutBeatsAvx512(const xnor::ConvGeometry& s) {
  return s.KH * s.KW == 1 && s.OH * s.OW >= 784;
}
// BitSerialConv 2/2 (tools/lut_check.sh bench and op-level A/B in one run, 1 thread): against
// the avx2 split kernel 1.7-1.8x at 3x3 56x56 / 28x28, 0.6-0.9x at 14x14 / 7x7; 1x1 3x at
// 56x56, ~even below.
bool LutBeatsAvx2BitSerial(const xnor::ConvGeometry& s) {
  const int64_t positions = s.OH * (s.OW + ((s.KW - 1) * s.dw) / s.sw);
  return s.KH * s.KW == 1 ? positions >= 2048 : positions >= 784;
}


bool LutTablesXnor(const xnor::ConvGeometry& s, LutPlan* p, const uint64_t* w, int8_t* tables) {
  std::memset(tables, 0, static_cast<size_t>(LutTableBytes(*p)));
  int64_t max_entry = 0;
  const uint64_t pad = PadMask(s.Cg);
  for (int64_t g = 0; g < s.G; ++g)
    for (int64_t m = 0; m < s.Mg; ++m) {
      const int64_t b = m / kLutM, j = m % kLutM;
      int8_t* block = tables + (g * p->blocks + b) * p->steps * kLutM * kTableBytes;
      for (int64_t t = 0; t < s.KH * s.KW; ++t) {
        const uint64_t* wrow = w + ((g * s.Mg + m) * s.KH * s.KW + t) * s.Wg;
        if (wrow[s.Wg - 1] & pad) return false;
        for (int64_t c4 = 0; c4 < p->C4; ++c4) {
          int8_t* table = block + ((t * p->C4 + c4) * kLutM + j) * kTableBytes;
          for (int idx = 0; idx < 16; ++idx) {
            int e = 0;
            for (int64_t i = 0; i < 4 && c4 * 4 + i < s.Cg; ++i)
              e += ((idx >> i) & 1) == Bit(wrow, c4 * 4 + i) ? 1 : -1;
            table[idx] = table[(16 + idx) % kTableBytes] = static_cast<int8_t>(e);
            if (std::abs(e) > max_entry) max_entry = std::abs(e);
          }
        }
      }
    }
  p->max_entry = max_entry;
  return true;
}

bool LutTablesBitSerial(const xnor::ConvGeometry& s, LutPlan* p, const uint64_t* w, int64_t Q,
                        const int64_t* act_coeffs, const int64_t* weight_coeffs,
                        int64_t weight_offset, int8_t* tables) {
  std::memset(tables, 0, static_cast<size_t>(LutTableBytes(*p)));
  const int64_t P = p->planes, pn = p->per_nibble;
  int64_t max_entry = 0;
  const uint64_t pad = PadMask(s.Cg);
  for (int64_t g = 0; g < s.G; ++g)
    for (int64_t m = 0; m < s.Mg; ++m) {
      const int64_t b = m / kLutM, j = m % kLutM;
      int8_t* block = tables + (g * p->blocks + b) * p->steps * kLutM * kTableBytes;
      for (int64_t t = 0; t < s.KH * s.KW; ++t) {
        const uint64_t* wrow = w + ((g * s.Mg + m) * s.KH * s.KW + t) * Q * s.Wg;
        for (int64_t q = 0; q < Q; ++q)
          if (wrow[q * s.Wg + s.Wg - 1] & pad) return false;
        for (int64_t c4 = 0; c4 < p->C4; ++c4) {
          int64_t vw[4] = {0, 0, 0, 0};
          for (int64_t i = 0; i < pn && c4 * pn + i < s.Cg; ++i) {
            vw[i] = weight_offset;
            for (int64_t q = 0; q < Q; ++q)
              vw[i] += weight_coeffs[q] * Bit(wrow + q * s.Wg, c4 * pn + i);
          }
          int8_t* table = block + ((t * p->C4 + c4) * kLutM + j) * kTableBytes;
          for (int idx = 0; idx < 16; ++idx) {
            int64_t e = 0;
            for (int64_t i = 0; i < pn; ++i) {
              int64_t va = 0;  // bit q*pn + i: plane q of the nibble's channel i
              for (int64_t q = 0; q < P; ++q) va += act_coeffs[q] * ((idx >> (q * pn + i)) & 1);
              e += va * vw[i];
            }
            if (e > 127 || e < -127) return false;
            table[idx] = table[(16 + idx) % kTableBytes] = static_cast<int8_t>(e);
            if (std::abs(e) > max_entry) max_entry = std::abs(e);
          }
        }
      }
    }
  p->max_entry = max_entry;
  return true;
}

}  // namespace lut
}  // namespace qcompile
