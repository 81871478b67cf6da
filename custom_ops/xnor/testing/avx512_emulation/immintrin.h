// Scalar stand-ins for the AVX-512 intrinsics (and the few AVX2 ones for the tile's D conversion)
// that xnor_avx512.cc uses, so its loop structure,
// offsets and window handling can be checked against the reference kernel on CPUs without
// AVX-512 (tests/test_ops_kernels_emulated.py). Only a logic check: the real instructions do
// exactly these lane-wise operations.
#pragma once

#include <cstdint>
#include <cstring>

struct __m512i {
  uint64_t v[8];
};

static inline __m512i _mm512_setzero_si512() {
  __m512i r;
  for (uint64_t& x : r.v) x = 0;
  return r;
}
static inline __m512i _mm512_set1_epi64(long long a) {
  __m512i r;
  for (uint64_t& x : r.v) x = static_cast<uint64_t>(a);
  return r;
}
static inline __m512i _mm512_loadu_si512(const void* p) {
  __m512i r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
static inline void _mm512_storeu_si512(void* p, __m512i a) { std::memcpy(p, a.v, sizeof a.v); }
static inline __m512i _mm512_xor_si512(__m512i a, __m512i b) {
  for (int i = 0; i < 8; ++i) a.v[i] ^= b.v[i];
  return a;
}
static inline __m512i _mm512_add_epi64(__m512i a, __m512i b) {
  for (int i = 0; i < 8; ++i) a.v[i] += b.v[i];
  return a;
}
static inline __m512i _mm512_popcnt_epi64(__m512i a) {
  for (int i = 0; i < 8; ++i) a.v[i] = static_cast<uint64_t>(__builtin_popcountll(a.v[i]));
  return a;
}
// Bit i of the result is bit (a_i << 2 | b_i << 1 | c_i) of imm, as vpternlogq defines it:
// the OR over the minterms that imm selects.
static inline __m512i _mm512_ternarylogic_epi64(__m512i a, __m512i b, __m512i c, int imm) {
  __m512i r;
  for (int i = 0; i < 8; ++i) {
    uint64_t out = 0;
    for (int idx = 0; idx < 8; ++idx) {
      if (!((imm >> idx) & 1)) continue;
      out |= ((idx & 4) ? a.v[i] : ~a.v[i]) & ((idx & 2) ? b.v[i] : ~b.v[i]) &
             ((idx & 1) ? c.v[i] : ~c.v[i]);
    }
    r.v[i] = out;
  }
  return r;
}
static inline __m512i _mm512_sub_epi64(__m512i a, __m512i b) {
  for (int i = 0; i < 8; ++i) a.v[i] -= b.v[i];
  return a;
}

// The 256- and 128-bit integer vectors the tile's D conversion uses (32-bit lanes).
struct __m256i {
  uint32_t v[8];
};
struct __m128i {
  uint32_t v[4];
};

// vpmovqd with a zeroing mask: lane i the low 32 bits of a's lane i (truncation), 0 if masked off.
static inline __m256i _mm512_maskz_cvtepi64_epi32(unsigned char mask, __m512i a) {
  __m256i r;
  for (int i = 0; i < 8; ++i) r.v[i] = ((mask >> i) & 1) ? static_cast<uint32_t>(a.v[i]) : 0u;
  return r;
}
// The unpacks interleave within each 128-bit half, as the instructions do.
static inline __m256i _mm256_unpacklo_epi32(__m256i a, __m256i b) {
  __m256i r;
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 2; ++i) r.v[4 * h + 2 * i] = a.v[4 * h + i], r.v[4 * h + 2 * i + 1] = b.v[4 * h + i];
  return r;
}
static inline __m256i _mm256_unpackhi_epi32(__m256i a, __m256i b) {
  __m256i r;
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 2; ++i)
      r.v[4 * h + 2 * i] = a.v[4 * h + 2 + i], r.v[4 * h + 2 * i + 1] = b.v[4 * h + 2 + i];
  return r;
}
static inline __m256i _mm256_unpacklo_epi64(__m256i a, __m256i b) {
  __m256i r;
  for (int h = 0; h < 2; ++h)
    r.v[4 * h] = a.v[4 * h], r.v[4 * h + 1] = a.v[4 * h + 1], r.v[4 * h + 2] = b.v[4 * h],
    r.v[4 * h + 3] = b.v[4 * h + 1];
  return r;
}
static inline __m256i _mm256_unpackhi_epi64(__m256i a, __m256i b) {
  __m256i r;
  for (int h = 0; h < 2; ++h)
    r.v[4 * h] = a.v[4 * h + 2], r.v[4 * h + 1] = a.v[4 * h + 3], r.v[4 * h + 2] = b.v[4 * h + 2],
    r.v[4 * h + 3] = b.v[4 * h + 3];
  return r;
}
static inline __m128i _mm256_castsi256_si128(__m256i a) {
  __m128i r;
  std::memcpy(r.v, a.v, sizeof r.v);
  return r;
}
static inline __m128i _mm256_extracti128_si256(__m256i a, int imm) {
  __m128i r;
  std::memcpy(r.v, a.v + 4 * (imm & 1), sizeof r.v);
  return r;
}
static inline void _mm_storeu_si128(__m128i* p, __m128i a) { std::memcpy(p, a.v, sizeof a.v); }
