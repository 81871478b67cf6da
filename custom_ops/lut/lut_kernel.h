// Table-lookup convolution kernels (T-MAC / DeepGEMM style, weight-stationary) for XnorConv
// (binary x binary) and BitSerialConv with at most 4 activation planes (2-bit x 2-bit,
// 1-bit x 2-bit, 2-bit x 1-bit, ...). Same D as custom_ops/SPEC.md, bit for bit.
//
// Idea. Four activation bits of one pixel (4 binary channels, or 2 channels of 2 planes, ...)
// form a nibble; for each output channel m and tap, the contribution of those channels to D is a
// function of the nibble alone, so it is precomputed per layer as a 16-entry int8 table. With
// pixels along the bytes of a vector, one vpshufb looks up 32 pixels' contributions (128 binary
// multiply-adds for binary x binary) and one vpaddb accumulates them. Padded positions hold the
// byte 0x80, which vpshufb maps to 0: the zero padding is exact with no edge code at all.
//
// Activation byte layout (built per call, LutActivations*): planes (n, g, c4, rh, rw), each
// `pitch` bytes, holding at [qh*Wq + qw] the nibble c4 of padded pixel (qh*sh + rh, qw*sw + rw)
// (hp = ih + pt, wp = iw + pl), 0x80 outside the image. Output pixel (oh, ow) is the virtual
// position v = oh*Wq + ow; at tap (kh, kw) it reads plane ((kh*dh) % sh, (kw*dw) % sw) at
// v + ((kh*dh) / sh)*Wq + (kw*dw) / sw, so consecutive v read consecutive bytes for any stride
// and dilation (positions with ow >= OW are computed and dropped).
//
// This header is included by ISA translation units: plain data and declarations only.
#pragma once

#include <cstdint>

#include "../xnor/xnor_kernel.h"

namespace qcompile {
namespace lut {

constexpr int64_t kLutM = 4;    // output channels per block (tables per step)
constexpr int64_t kLutPx = 64;  // virtual output positions per pass (two ymm of bytes)
constexpr uint8_t kPadByte = 0x80;  // vpshufb index with bit 7 set: looks up 0
// Bytes per stored table: 16, broadcast to both 128-bit lanes by vbroadcasti128 (a pure load
// on Intel cores; measured faster there than 32, half the table traffic), or 32 (the table
// stored twice, a plain load; for cores where the broadcast takes a shuffle port).
#ifndef QCOMPILE_LUT_TABLE_BYTES
#define QCOMPILE_LUT_TABLE_BYTES 16
#endif
constexpr int64_t kTableBytes = QCOMPILE_LUT_TABLE_BYTES;

struct LutPlan {
  int64_t N, G, Mg, M, OH, OW;
  int64_t planes;    // activation bit planes P (1 for XnorConv)
  int64_t per_nibble;  // channels per nibble: 4 / P
  int64_t C4;        // nibbles per pixel of a group: ceil(Cg / per_nibble)
  int64_t sh, sw;    // phases of the layout
  int64_t Hq, Wq;    // rows and columns of a plane
  int64_t pitch;     // bytes per plane (covers every read of the last pass)
  int64_t steps;     // KH * KW * C4 lookups per output
  int64_t blocks;    // ceil(Mg / kLutM) per group
  int64_t vcount;    // OH * Wq virtual positions
  int64_t max_entry;  // largest |table entry| (<= 127)
};

struct LutConvArgs {
  LutPlan plan;
  const uint8_t* xb;         // [N, G, C4, sh, sw, pitch]
  const int8_t* tables;      // [G, blocks, steps, kLutM, kTableBytes]
  const int64_t* step_off;   // [steps]: byte offset of step s from its (n, g) base
  const float* scale;        // [M]
  const float* bias;         // [M]
  float* y;                  // [N, M, OH, OW]: float(D) * scale + bias, when d is null
  int32_t* d = nullptr;      // [N, M, OH, OW]: D itself
};

// When an XnorConv / BitSerialConv kernel variant runs the table-lookup kernel instead of its
// own (xnor_variants.cc): never, on the geometries where it measured faster than the variant's
// own kernel (LutVariant::faster), or on every convolution it can run (tests, A/B timing).
enum LutUse { kLutOff, kLutWhenFaster, kLutAlways };

// Plan for geometry s with P activation planes (P = 1 for XnorConv); false when the LUT
// kernels cannot run it (P > 4). step_off must hold KH*KW*ceil(Cg/(4/P)) entries.
bool MakeLutPlan(const xnor::ConvGeometry& s, int64_t P, LutPlan* p);
void LutStepOffsets(const xnor::ConvGeometry& s, const LutPlan& p, int64_t* step_off);
int64_t LutActivationBytes(const LutPlan& p);  // N*G*C4*sh*sw*pitch
int64_t LutTableBytes(const LutPlan& p);       // G*blocks*steps*kLutM*kTableBytes

// Activation bytes from packed XnorConv input x [N, H, W, G*Wg] (P = 1) or BitSerialConv
// input [N, H, W, G*P*Wg]; the same function, P read from the plan. LutActivationsOf writes
// image n, group g only (the planes of different (n, g) are disjoint: run them in parallel).
// False when a pad bit (past Cg in a last word) is set: outside SPEC, the popcount kernels
// would count it and the tables do not, so the caller runs another kernel.
bool LutActivations(const xnor::ConvGeometry& s, const LutPlan& p, const uint64_t* x,
                    uint8_t* xb);
bool LutActivationsOf(const xnor::ConvGeometry& s, const LutPlan& p, const uint64_t* x,
                      uint8_t* xb, int64_t n, int64_t g);

// Tables for XnorConv weights w [M, KH, KW, Wg]; entry = sum over the nibble's real channels of
// s(x bit) * s(w bit), s(0) = +1, s(1) = -1. Sets p->max_entry. False when a pad bit of W
// is set (see LutActivations).
bool LutTablesXnor(const xnor::ConvGeometry& s, LutPlan* p, const uint64_t* w, int8_t* tables);

// Tables for BitSerialConv weights w [M, KH, KW, Q*Wg]; entry = sum over the nibble's channels
// of v_act * v_w (SPEC "bit planes"). False (tables unusable) when an entry passes 127 or a
// pad bit of W is set.
bool LutTablesBitSerial(const xnor::ConvGeometry& s, LutPlan* p, const uint64_t* w, int64_t Q,
                        const int64_t* act_coeffs, const int64_t* weight_coeffs,
                        int64_t weight_offset, int8_t* tables);

// Outputs of group g, channel block b, virtual positions [v0, v1) of image n (v0 a multiple of
// kLutPx).
using LutTileFn = void (*)(const LutConvArgs& a, int64_t n, int64_t g, int64_t b, int64_t v0,
                           int64_t v1);
void lut_conv2d_i8__scalar(const LutConvArgs&, int64_t, int64_t, int64_t, int64_t, int64_t);
void lut_conv2d_i8__avx2(const LutConvArgs&, int64_t, int64_t, int64_t, int64_t, int64_t);

// Register-resident ceiling of the avx2 inner loop (vpshufb + vpaddb, tables and indices in
// registers): returns the lookups done. A lookup is 4 binary multiply-adds (XnorConv), or
// 4 / P multiply-adds of P-bit activations.
int64_t lut_ceiling_lookups__avx2(int64_t iters);
// The same in binary multiply-adds (the XnorConv variant table's CeilingFn).
int64_t lut_ceiling__avx2(int64_t iters);

// Geometries where the LUT kernel measured faster than a variant's own kernel (1 thread, this
// repository's tools/lut_check.sh on ResNet-18 shapes): against avx2 XOR-popcount, and against
// avx512vpopcnt.
bool LutBeatsAvx2(const xnor::ConvGeometry& s);
bool LutBeatsAvx512(const xnor::ConvGeometry& s);
// BitSerialConv: against the avx2 AND-popcount kernel.
bool LutBeatsAvx2BitSerial(const xnor::ConvGeometry& s);

}  // namespace lut
}  // namespace qcompile
