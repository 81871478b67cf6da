// Standalone check and microbenchmark of the table-lookup kernels (custom_ops/lut/).
//   check: random geometries (groups, channels around the nibble and word widths, kernels,
//     strides, dilations, asymmetric pads, batch); XnorConv D and y against
//     xnor_conv2d_u64__reference, BitSerialConv y against bitserial_conv2d_u64__generic, for
//     the scalar and the avx2 LUT kernels. Exit status 1 on any mismatch.
//   bench: ResNet-18 3x3 and 1x1 shapes, 1 thread: the avx2 XOR-popcount kernel and the LUT
//     kernel side by side (alternating rounds, medians), G MAC/s, and each against its ceiling.
// Build and run: bash tools/lut_check.sh [bench [rounds]] (g++ -mavx2; no onnxruntime needed).
// Every variant at the op level, against onnxruntime fp32 and int8: tools/bench_lut.py.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../bitserial/bitserial_kernel.h"
#include "../../xnor/xnor_kernel.h"
#include "../lut_kernel.h"

using namespace qcompile;
using xnor::ConvGeometry;

namespace {

std::mt19937_64 rng(20261201);
int64_t Pick(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

bool Finish(ConvGeometry* s, int64_t pb, int64_t pr, int64_t words_per_pixel_group) {
  const int64_t eh = s->H + s->pt + pb - s->dh * (s->KH - 1) - 1;
  const int64_t ew = s->W + s->pl + pr - s->dw * (s->KW - 1) - 1;
  if (eh < 0 || ew < 0) return false;
  s->OH = eh / s->sh + 1;
  s->OW = ew / s->sw + 1;
  s->Wg = (s->Cg + 63) / 64;
  s->XW = s->G * words_per_pixel_group * s->Wg;
  s->M = s->Mg * s->G;
  s->blocks_per_group = (s->Mg + xnor::kBlockM - 1) / xnor::kBlockM;
  return true;
}

// Random words with the unused high bits of each channel row's last word 0 (SPEC).
void FillRows(std::vector<uint64_t>& v, int64_t Wg, int64_t Cg) {
  for (size_t i = 0; i < v.size(); ++i) {
    const int64_t bits = Cg - 64 * static_cast<int64_t>(i % Wg);
    v[i] = rng() & (bits >= 64 ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1));
  }
}

struct Lut {
  lut::LutPlan plan;
  std::vector<int64_t> off;
  std::vector<uint8_t> xb;
  std::vector<int8_t> tables;
  lut::LutConvArgs Args(const float* sc, const float* bi, float* y, int32_t* d) const {
    lut::LutConvArgs a{plan, xb.data(), tables.data(), off.data(), sc, bi, y, d};
    return a;
  }
};

void PlanLut(const ConvGeometry& s, int64_t P, Lut* l) {
  lut::MakeLutPlan(s, P, &l->plan);
  l->off.resize(l->plan.steps);
  lut::LutStepOffsets(s, l->plan, l->off.data());
  l->xb.resize(lut::LutActivationBytes(l->plan));
  l->tables.resize(lut::LutTableBytes(l->plan));
}

void RunLut(lut::LutTileFn fn, const lut::LutConvArgs& a) {
  const lut::LutPlan& p = a.plan;
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t g = 0; g < p.G; ++g)
      for (int64_t b = 0; b < p.blocks; ++b) fn(a, n, g, b, 0, p.vcount);
}

const lut::LutTileFn kFns[] = {lut::lut_conv2d_i8__scalar, lut::lut_conv2d_i8__avx2};
const char* kFnNames[] = {"scalar", "avx2"};

int CheckXnor(int* cases) {
  int bad = 0;
  for (int it = 0; it < 1500; ++it) {
    ConvGeometry s{};
    s.G = Pick(1, 3);
    s.Cg = Pick(1, 140);
    s.Mg = Pick(1, 13);
    s.N = Pick(1, 2);
    s.H = Pick(1, 9);
    s.W = Pick(1, 11);
    s.KH = Pick(1, 5);
    s.KW = Pick(1, 5);
    s.sh = Pick(1, 2);
    s.sw = Pick(1, 3);
    s.dh = Pick(1, 2);
    s.dw = Pick(1, 2);
    s.pt = Pick(0, 3);
    s.pl = Pick(0, 3);
    if (!Finish(&s, Pick(0, 3), Pick(0, 3), 1)) continue;
    std::vector<uint64_t> x(s.N * s.H * s.W * s.XW), w(s.M * s.KH * s.KW * s.Wg);
    FillRows(x, s.Wg, s.Cg);
    FillRows(w, s.Wg, s.Cg);
    std::vector<float> sc(s.M), bi(s.M);
    for (int64_t m = 0; m < s.M; ++m) {
      sc[m] = 0.5f + 0.37f * static_cast<float>(m);
      bi[m] = -0.25f * static_cast<float>(m);
    }
    const size_t out = s.N * s.M * s.OH * s.OW;
    std::vector<float> y_ref(out);
    std::vector<int32_t> d_ref(out);
    xnor::ConvArgs ref{s, x.data(), w.data(), nullptr, nullptr, sc.data(), bi.data(), y_ref.data()};
    xnor::ConvArgs ref_d = ref;
    ref_d.d = d_ref.data();
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t g = 0; g < s.G; ++g)
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          xnor::xnor_conv2d_u64__reference(ref, n, g, 0, s.blocks_per_group, oh);
          xnor::xnor_conv2d_u64__reference(ref_d, n, g, 0, s.blocks_per_group, oh);
        }
    Lut l;
    PlanLut(s, 1, &l);
    lut::LutActivations(s, l.plan, x.data(), l.xb.data());
    lut::LutTablesXnor(s, &l.plan, w.data(), l.tables.data());
    for (int f = 0; f < 2; ++f) {
      std::vector<float> y(out, -1.0f);
      std::vector<int32_t> d(out, -7);
      RunLut(kFns[f], l.Args(sc.data(), bi.data(), y.data(), nullptr));
      RunLut(kFns[f], l.Args(sc.data(), bi.data(), nullptr, d.data()));
      ++*cases;
      if (y != y_ref || d != d_ref) {
        if (++bad < 5)
          std::printf("xnor %s mismatch: G%ld Cg%ld Mg%ld N%ld %ldx%ld k%ldx%ld s%ld,%ld d%ld,%ld p%ld,%ld\n",
                      kFnNames[f], s.G, s.Cg, s.Mg, s.N, s.H, s.W, s.KH, s.KW, s.sh, s.sw, s.dh,
                      s.dw, s.pt, s.pl);
      }
    }
  }
  return bad;
}

struct Coeffs {
  std::vector<int64_t> c;
  int64_t offset;
};

Coeffs RandomCoeffs(int64_t planes, bool weights) {
  const int kind = static_cast<int>(Pick(0, weights ? 2 : 1));
  Coeffs r{{}, 0};
  if (weights && kind == 2) return {{-2}, 1};  // binary +-1
  for (int64_t p = 0; p < planes; ++p) r.c.push_back(int64_t{1} << p);
  if (kind == 1) r.c.back() = -r.c.back();  // two's complement
  return r;
}

int CheckBitSerial(int* cases, int* skipped) {
  int bad = 0;
  for (int it = 0; it < 1500; ++it) {
    ConvGeometry s{};
    const int64_t P = Pick(1, 4);
    Coeffs act = RandomCoeffs(P, false);
    Coeffs wc = RandomCoeffs(Pick(1, 3), true);
    const int64_t Q = static_cast<int64_t>(wc.c.size());
    s.G = Pick(1, 3);
    s.Cg = Pick(1, 140);
    s.Mg = Pick(1, 13);
    s.N = Pick(1, 2);
    s.H = Pick(1, 9);
    s.W = Pick(1, 11);
    s.KH = Pick(1, 4);
    s.KW = Pick(1, 4);
    s.sh = Pick(1, 2);
    s.sw = Pick(1, 3);
    s.dh = Pick(1, 2);
    s.dw = Pick(1, 2);
    s.pt = Pick(0, 2);
    s.pl = Pick(0, 2);
    if (!Finish(&s, Pick(0, 2), Pick(0, 2), P)) continue;
    std::vector<uint64_t> x(s.N * s.H * s.W * s.XW), w(s.M * s.KH * s.KW * Q * s.Wg);
    FillRows(x, s.Wg, s.Cg);
    FillRows(w, s.Wg, s.Cg);
    std::vector<float> sc(s.M), bi(s.M);
    for (int64_t m = 0; m < s.M; ++m) {
      sc[m] = 0.75f + 0.5f * static_cast<float>(m);
      bi[m] = 0.125f * static_cast<float>(m);
    }
    const size_t out = s.N * s.M * s.OH * s.OW;
    std::vector<float> y_ref(out), y(out);
    bitserial::BitSerialArgs ba{};
    ba.geo = s;
    ba.P = P;
    ba.Q = Q;
    for (int64_t p = 0; p < P; ++p) ba.act_coeffs[p] = act.c[p];
    for (int64_t q = 0; q < Q; ++q) ba.weight_coeffs[q] = wc.c[q];
    ba.weight_offset = wc.offset;
    ba.x = x.data();
    ba.w = w.data();
    ba.scale = sc.data();
    ba.bias = bi.data();
    ba.y = y_ref.data();
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t g = 0; g < s.G; ++g)
        for (int64_t oh = 0; oh < s.OH; ++oh)
          bitserial::bitserial_conv2d_u64__generic(ba, n, g * s.Mg, (g + 1) * s.Mg, oh);
    Lut l;
    PlanLut(s, P, &l);
    lut::LutActivations(s, l.plan, x.data(), l.xb.data());
    if (!lut::LutTablesBitSerial(s, &l.plan, w.data(), Q, ba.act_coeffs, ba.weight_coeffs,
                                 ba.weight_offset, l.tables.data())) {
      ++*skipped;  // an entry past int8: the op would pick another kernel
      continue;
    }
    for (int f = 0; f < 2; ++f) {
      std::fill(y.begin(), y.end(), -1.0f);
      RunLut(kFns[f], l.Args(sc.data(), bi.data(), y.data(), nullptr));
      ++*cases;
      if (y != y_ref && ++bad < 5)
        std::printf("bitserial %s mismatch: P%ld Q%ld G%ld Cg%ld Mg%ld k%ldx%ld s%ld,%ld\n",
                    kFnNames[f], P, Q, s.G, s.Cg, s.Mg, s.KH, s.KW, s.sh, s.sw);
    }
  }
  return bad;
}

// ------------------------------------------------------------------------------------ bench
using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Work per second of a ceiling microbenchmark, best of batches (least interference).
double Ceiling(int64_t (*fn)(int64_t), double seconds) {
  int64_t iters = 1 << 10;
  double best = 0.0, spent = 0.0;
  while (spent < seconds) {
    const Clock::time_point t0 = Clock::now();
    const int64_t lookups = fn(iters);
    const double s = Seconds(t0);
    spent += s;
    best = std::max(best, lookups / s);
    if (s < 0.01) iters *= 2;
  }
  return best;
}

struct Shape {
  int64_t C, H, K;
};

int Bench(int rounds, int only) {
  const double lut_ceiling = Ceiling(lut::lut_ceiling_lookups__avx2, 0.5);
  const double xor_ceiling = Ceiling(xnor::xnor_ceiling__avx2, 0.5);
  std::printf("ceilings (register-resident, 1 thread): LUT %.0f G lookups/s = %.0f G binary MAC/s"
              " = %.0f G 2-bit MAC/s; XOR+popcount (avx2 variant, L1) %.0f G binary MAC/s\n",
              lut_ceiling / 1e9, 4 * lut_ceiling / 1e9, 2 * lut_ceiling / 1e9, xor_ceiling / 1e9);
  const Shape shapes[] = {{64, 56, 3}, {128, 28, 3}, {256, 14, 3}, {512, 7, 3},
                          {64, 56, 1}, {128, 28, 1}, {256, 14, 1}, {512, 7, 1}};
  std::printf("%-16s %9s %9s %9s %7s %7s | %9s %9s %7s\n", "shape", "xor us", "lut us",
              "lut+x us", "xor/lut", "lut %c", "w2a2 us", "bs us", "bs/w2a2");
  for (const Shape& sh : shapes) {
    if (only >= 0 && &sh - shapes != only) continue;
    ConvGeometry s{};
    s.G = 1;
    s.Cg = sh.C;
    s.Mg = sh.C;
    s.N = 1;
    s.H = s.W = sh.H;
    s.KH = s.KW = sh.K;
    s.sh = s.sw = s.dh = s.dw = 1;
    s.pt = s.pl = sh.K / 2;
    Finish(&s, sh.K / 2, sh.K / 2, 1);
    const double macs = static_cast<double>(s.OH * s.OW * s.M * s.Cg * s.KH * s.KW);
    std::vector<uint64_t> x(s.N * s.H * s.W * s.XW), w(s.M * s.KH * s.KW * s.Wg);
    FillRows(x, s.Wg, s.Cg);
    FillRows(w, s.Wg, s.Cg);
    std::vector<float> sc(s.M, 1.0f), bi(s.M, 0.0f), y(s.N * s.M * s.OH * s.OW);
    // Today's avx2 XOR-popcount kernel: nibble-split activations (per call) and weights.
    const int64_t taps = s.KH * s.KW * s.Wg;
    std::vector<uint64_t> wb(s.blocks_per_group * taps * 2 * xnor::kBlockM, 0), xs(2 * x.size());
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t t = 0; t < taps; ++t) {
        uint64_t* dst = &wb[((m / 8) * taps + t) * 16 + m % 8];
        dst[0] = w[m * taps + t] & xnor::kLowNibbles;
        dst[8] = (w[m * taps + t] >> 4) & xnor::kLowNibbles;
      }
    xnor::ConvArgs xa{s, x.data(), w.data(), wb.data(), xs.data(), sc.data(), bi.data(), y.data()};
    Lut l;
    PlanLut(s, 1, &l);
    lut::LutTablesXnor(s, &l.plan, w.data(), l.tables.data());
    const lut::LutConvArgs la = l.Args(sc.data(), bi.data(), y.data(), nullptr);
    // W2A2: unsigned 2-bit activations, signed 2-bit weights; LUT vs the bit-serial popcount.
    ConvGeometry s2 = s;
    s2.XW = 2 * s.Wg;
    std::vector<uint64_t> x2(s.N * s.H * s.W * s2.XW), w2(s.M * s.KH * s.KW * 2 * s.Wg);
    FillRows(x2, s.Wg, s.Cg);
    FillRows(w2, s.Wg, s.Cg);
    bitserial::BitSerialArgs ba{};
    ba.geo = s2;
    ba.P = ba.Q = 2;
    ba.act_coeffs[0] = 1, ba.act_coeffs[1] = 2;
    ba.weight_coeffs[0] = 1, ba.weight_coeffs[1] = -2;
    ba.x = x2.data();
    ba.w = w2.data();
    ba.scale = sc.data();
    ba.bias = bi.data();
    ba.y = y.data();
    Lut l2;
    PlanLut(s2, 2, &l2);
    lut::LutTablesBitSerial(s2, &l2.plan, w2.data(), 2, ba.act_coeffs, ba.weight_coeffs, 0,
                            l2.tables.data());
    const lut::LutConvArgs la2 = l2.Args(sc.data(), bi.data(), y.data(), nullptr);

    std::vector<double> t_xor, t_lut, t_lutx, t_w2, t_bs;
    for (int r = 0; r < rounds; ++r) {
      Clock::time_point t0 = Clock::now();
      for (size_t i = 0; i < x.size(); ++i) {
        xs[2 * i] = x[i] & xnor::kLowNibbles;
        xs[2 * i + 1] = (x[i] >> 4) & xnor::kLowNibbles;
      }
      for (int64_t oh = 0; oh < s.OH; ++oh) xnor::xnor_conv2d_u64__avx2(xa, 0, 0, 0, s.blocks_per_group, oh);
      t_xor.push_back(Seconds(t0));
      t0 = Clock::now();
      lut::LutActivations(s, l.plan, x.data(), l.xb.data());
      const double t_layout = Seconds(t0);
      t0 = Clock::now();
      RunLut(lut::lut_conv2d_i8__avx2, la);
      t_lut.push_back(Seconds(t0));
      t_lutx.push_back(t_lut.back() + t_layout);
      t0 = Clock::now();
      lut::LutActivations(s2, l2.plan, x2.data(), l2.xb.data());
      RunLut(lut::lut_conv2d_i8__avx2, la2);
      t_w2.push_back(Seconds(t0));
      t0 = Clock::now();
      for (int64_t oh = 0; oh < s.OH; ++oh) bitserial::bitserial_conv2d_u64__popcnt(ba, 0, 0, s.M, oh);
      t_bs.push_back(Seconds(t0));
    }
    const double tx = Median(t_xor), tl = Median(t_lut), tlx = Median(t_lutx);
    const double tw = Median(t_w2), tb = Median(t_bs);
    char name[32];
    std::snprintf(name, sizeof name, "%ldx%ldx%ld k%ld", s.Cg, s.H, s.W, s.KH);
    std::printf("%-16s %9.1f %9.1f %9.1f %7.2f %6.0f%% | %9.1f %9.1f %7.2f   lut %5.0f G/s, xor %5.0f G/s\n",
                name, tx * 1e6, tl * 1e6, tlx * 1e6, tx / tlx, 100 * macs / tl / (4 * lut_ceiling),
                tw * 1e6, tb * 1e6, tb / tw, macs / tl / 1e9, macs / tx / 1e9);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "bench") == 0)
    return Bench(argc > 2 ? std::atoi(argv[2]) : 9, argc > 3 ? std::atoi(argv[3]) : -1);
  int cases = 0, skipped = 0;
  const int bad_x = CheckXnor(&cases);
  const int bad_b = CheckBitSerial(&cases, &skipped);
  std::printf("%d cases (%d bit-serial geometries past int8 tables skipped), %d mismatches\n",
              cases, skipped, bad_x + bad_b);
  return bad_x + bad_b != 0 || cases < 2000;
}
