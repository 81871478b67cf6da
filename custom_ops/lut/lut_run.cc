#include "lut_run.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace qcompile {
namespace lut {
namespace {

#ifdef QCOMPILE_TEST_HOOKS
std::atomic<uint64_t> g_lut_runs{0};
#endif
constexpr int64_t kTaskPx = 1024;  // virtual positions per task (a multiple of kLutPx)

}  // namespace

LutUse EffectiveUse(LutUse use) {
  const char* e = std::getenv("QCOMPILE_LUT");
  if (use == kLutWhenFaster && e && std::strcmp(e, "0") == 0) return kLutOff;
  return use;
}

bool LutChosen(LutUse use, bool (*faster)(const xnor::ConvGeometry&), const xnor::ConvGeometry& s,
               int64_t P) {
  if (use == kLutOff || P < 1 || P > 4) return false;
  return use == kLutAlways || (faster && faster(s));
}

bool BuildTables(const xnor::ConvGeometry& s, const LutOperands& o, const uint64_t* w,
                 LutTables* t) {
  LutPlan p;
  if (!MakeLutPlan(s, o.P, &p)) return false;
  t->tables.assign(static_cast<size_t>(LutTableBytes(p)), 0);
  if (!o.act_coeffs) {
    if (!LutTablesXnor(s, &p, w, t->tables.data())) return false;
  } else if (!LutTablesBitSerial(s, &p, w, o.Q, o.act_coeffs, o.weight_coeffs, o.weight_offset,
                                 t->tables.data())) {
    return false;
  }
  t->max_entry = p.max_entry;
  return true;
}

const LutTables* LutTableCache::Get(const xnor::ConvGeometry& s, const LutOperands& o,
                                    const uint64_t* w, bool constant, LutTables* scratch) {
  if (!constant) return BuildTables(s, o, w, scratch) ? scratch : nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  if (!built_) {
    ok_ = BuildTables(s, o, w, &tables_);
    built_ = true;
  }
  return ok_ ? &tables_ : nullptr;
}

bool RunLut(OrtKernelContext* ctx, LutTileFn fn, const xnor::ConvGeometry& s, int64_t P,
            const LutTables& t, const uint64_t* x, const float* scale, const float* bias,
            float* y, int32_t* d) {
  LutPlan p;
  MakeLutPlan(s, P, &p);
  p.max_entry = t.max_entry;
  std::vector<int64_t> step_off(static_cast<size_t>(p.steps));
  LutStepOffsets(s, p, step_off.data());
  std::vector<uint8_t> xb(static_cast<size_t>(LutActivationBytes(p)));
  std::atomic<bool> clean{true};
  ParallelFor(ctx, static_cast<size_t>(s.N * s.G), [&](size_t i) {
    const int64_t k = static_cast<int64_t>(i);
    if (!LutActivationsOf(s, p, x, xb.data(), k / s.G, k % s.G))
      clean.store(false, std::memory_order_relaxed);
  });
  if (!clean.load()) return false;
#ifdef QCOMPILE_TEST_HOOKS
  g_lut_runs.fetch_add(1, std::memory_order_relaxed);
#endif
  LutConvArgs a{p, xb.data(), t.tables.data(), step_off.data(), scale, bias, y, d};
  const int64_t chunks = (p.vcount + kTaskPx - 1) / kTaskPx;
  ParallelFor(ctx, static_cast<size_t>(s.N * s.G * p.blocks * chunks), [&](size_t i) {
    int64_t k = static_cast<int64_t>(i);
    const int64_t c = k % chunks;
    k /= chunks;
    const int64_t b = k % p.blocks;
    k /= p.blocks;
    const int64_t v0 = c * kTaskPx;
    fn(a, k / s.G, k % s.G, b, v0, v0 + kTaskPx < p.vcount ? v0 + kTaskPx : p.vcount);
  });
  return true;
}

#ifdef QCOMPILE_TEST_HOOKS
uint64_t LutRuns() { return g_lut_runs.load(std::memory_order_relaxed); }
#endif

}  // namespace lut
}  // namespace qcompile

