#include "run_binary.h"

#ifdef QCOMPILE_TEST_HOOKS
#include <atomic>
#endif

#include "tap_concat.h"
#include "tasks.h"

namespace qcompile {
namespace packed {
namespace {

// Output-channel blocks per parallel task (4 blocks = 32 channels).
constexpr int64_t kChunkBlocks = 4;

#ifdef QCOMPILE_TEST_HOOKS
std::atomic<uint64_t> g_tap_concat_runs{0};
#endif

// Runs the kernel on args (geometry, operands and weights in the kernel's layout all set).
void RunTasks(OrtKernelContext* ctx, const BinaryKernel& k, ConvArgs& args) {
  const ConvGeometry& s = args.geo;
  std::vector<uint64_t> split;
  if (k.split_x) {
    const int64_t words = s.N * s.H * s.W * s.XW;
    split.resize(static_cast<size_t>(2 * words));
    for (int64_t i = 0; i < words; ++i) {
      split[2 * i] = args.x[i] & kLowNibbles;
      split[2 * i + 1] = (args.x[i] >> 4) & kLowNibbles;
    }
    args.xs = split.data();
  }
  const ConvRowFn fn = k.conv;
  RunRowTasks(ctx, s, kChunkBlocks, [&args, fn](int64_t n, int64_t g, int64_t b0, int64_t b1,
                                                 int64_t oh) { fn(args, n, g, b0, b1, oh); });
}

// The tap-concatenated run; false, having run nothing, when it does not apply (the convolution
// does not qualify, the kernel reads plain weights, or a pad bit is set).
bool RunTapConcat(OrtKernelContext* ctx, const BinaryKernel& k, ConvArgs args,
                  const PreparedWeights* prepared, int mode) {
  const ConvGeometry& s = args.geo;
  if (k.weights == kWeightsPlain || !tapconcat::TapConcatApplies(s, mode, false)) return false;
  std::vector<uint64_t> w2, laid_out;
  std::vector<int32_t> pop;
  const uint64_t* wb = nullptr;
  const int32_t* tap_pop = nullptr;
  if (prepared) {
    wb = prepared->laid_out.data();
    tap_pop = prepared->tap_pop.data();
  } else {
    if (!tapconcat::ConcatWeights(s, 1, args.w, &w2, &pop)) return false;
    laid_out = LayoutWeights(k.weights, w2.data(), s.M, s.G, s.KH * Words(s.KW * s.Cg));
    wb = laid_out.data();
    tap_pop = pop.data();
  }
  const ConvGeometry c = tapconcat::ConcatGeometry(s, s.G);
  std::vector<uint64_t> x2(static_cast<size_t>(c.N * c.H * c.W * c.XW));
  if (!tapconcat::ConcatActivations(s, s.G, args.x, x2.data())) return false;
  const std::vector<int32_t> edges = tapconcat::TapConcatEdges(s, tap_pop, &args);
  args.edge_corr = edges.empty() ? nullptr : edges.data();
  args.geo = c;
  args.x = x2.data();
  args.w = nullptr;  // only the laid-out weights are valid for the concatenated geometry
  args.wb = wb;
#ifdef QCOMPILE_TEST_HOOKS
  g_tap_concat_runs.fetch_add(1, std::memory_order_relaxed);
#endif
  RunTasks(ctx, k, args);
  return true;
}

}  // namespace

void PrepareBinaryWeights(const OrtKernelInfo* info, const BinaryKernel& k, int64_t group,
                          PreparedWeights* out) {
  if (k.weights == kWeightsPlain) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  if (ws.empty() || ws[0] < 1 || ws[0] % group != 0) return;  // Compute reports the error
  int64_t taps = 1;
  for (size_t i = 1; i < ws.size(); ++i) taps *= ws[i];
  out->Set(wdata, ws, LayoutWeights(k.weights, wdata, ws[0], group, taps));
}

void PrepareBinaryConcatWeights(const OrtKernelInfo* info, const BinaryKernel& k,
                                const ConvAttrs& a, int mode, PreparedWeights* out) {
  if (k.weights == kWeightsPlain) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  ConvGeometry s = tapconcat::AttrGeometry(a);
  // Compute checks the shape; only one it can accept is prepared.
  if (ws.size() != 4 || ws[0] < 1 || ws[0] % s.G != 0 || ws[1] != s.KH || ws[2] != s.KW ||
      ws[3] != s.Wg || !tapconcat::TapConcatApplies(s, mode, false))
    return;
  s.M = ws[0];
  std::vector<uint64_t> w2;
  std::vector<int32_t> pop;
  if (!tapconcat::ConcatWeights(s, 1, wdata, &w2, &pop)) return;
  out->Set(wdata, ws, LayoutWeights(k.weights, w2.data(), s.M, s.G, s.KH * Words(s.KW * s.Cg)));
  out->tap_pop = std::move(pop);
}

void RunBinaryConv(OrtKernelContext* ctx, const BinaryKernel& k, ConvArgs args,
                   const PreparedWeights* prepared, int concat_mode,
                   const PreparedWeights* concat_prepared, const lut::LutState* lut) {
  if (concat_mode == tapconcat::kTapConcatForce &&
      RunTapConcat(ctx, k, args, concat_prepared, concat_mode))
    return;
  if (lut && k.lut && lut::LutChosen(lut->use, k.lut_faster, args.geo, 1)) {
    lut::LutTables scratch;
    const lut::LutTables* t =
        lut->cache->Get(args.geo, lut::LutOperands{}, args.w, prepared != nullptr, &scratch);
    if (t && lut::RunLut(ctx, k.lut, args.geo, 1, *t, args.x, args.scale, args.bias, args.y,
                         args.d))
      return;
  }
  if (RunTapConcat(ctx, k, args, concat_prepared, concat_mode)) return;
  const ConvGeometry& s = args.geo;
  std::vector<uint64_t> blocked;
  if (k.weights != kWeightsPlain) {
    if (prepared) {
      args.wb = prepared->laid_out.data();
    } else {
      blocked = LayoutWeights(k.weights, args.w, s.M, s.G, s.KH * s.KW * s.Wg);
      args.wb = blocked.data();
    }
  }
  RunTasks(ctx, k, args);
}

#ifdef QCOMPILE_TEST_HOOKS
uint64_t TapConcatRuns() { return g_tap_concat_runs.load(std::memory_order_relaxed); }
#endif

}  // namespace packed
}  // namespace qcompile
