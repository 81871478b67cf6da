// Scalar stand-ins for the AVX-512 intrinsics that xnor_avx512.cc uses, so its loop structure,
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
