#include "run_planes.h"

#include "tap_concat.h"
#include "tasks.h"

namespace qcompile {
namespace packed {
namespace {

// Output-channel blocks (8 channels) per parallel task.
constexpr int64_t kChunkBlocks = 2;

void RunTasks(OrtKernelContext* ctx, BitSerialRowFn fn, const BitSerialArgs& a) {
  const ConvGeometry& s = a.geo;
  RunRowTasks(ctx, s, kChunkBlocks, [&](int64_t n, int64_t g, int64_t b0, int64_t b1,
                                        int64_t oh) {
    const int64_t m0 = g * s.Mg + b0 * kBlockM;
    const int64_t m1 = std::min(g * s.Mg + b1 * kBlockM, (g + 1) * s.Mg);
    fn(a, n, m0, m1, oh);
  });
}

// Bit-plane kernels concatenate whenever it saves a word, at unit stride and dilation.
bool ConcatApplies(const ConvGeometry& s) {
  return tapconcat::TapConcatApplies(s, tapconcat::kTapConcatForce, /*unit_stride=*/true);
}

// The split kernel on a.x with weights `wb` (plane-major, nibble-blocked; laid out here from
// a.w when null); false, having run nothing, when the padded split copy would be huge.
bool RunSplit(OrtKernelContext* ctx, const PlaneKernel& k, BitSerialArgs a, const uint64_t* wb) {
  const ConvGeometry& s = a.geo;
  SplitLayout layout = MakeSplitLayout(s);
  // Huge pads would make the padded copy huge: such calls take the fallback kernel.
  if (layout.words > 4 * s.N * s.H * s.W * s.XW + (int64_t{1} << 22) ||
      layout.steps > (int64_t{1} << 20))
    return false;
  std::vector<uint64_t> blocked, split;
  if (!wb) {
    blocked = PlaneMajorWeights(a.w, s.M, s.G, s.KH * s.KW, a.Q, s.Wg);
    wb = blocked.data();
  }
  a.wb = wb;
  std::vector<int64_t> x_step(static_cast<size_t>(layout.steps));
  SplitSteps(s, layout, x_step.data());
  layout.x_step = x_step.data();
  split.resize(static_cast<size_t>(layout.words));
  SplitActivations(s, layout, a.x, split.data());
  a.xs = split.data();
  a.split = &layout;
  RunTasks(ctx, k.row, a);
  return true;
}

}  // namespace

void PreparePlaneWeights(const OrtKernelInfo* info, const PlaneKernel& k, int64_t group,
                         int64_t Q, PreparedWeights* out) {
  if (!k.split) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  // Compute checks the shape; only a shape it can accept is laid out here.
  if (ws.size() != 4 || ws[0] < 1 || ws[0] % group != 0) return;
  if (ws.back() < Q || ws.back() % Q != 0) return;
  const int64_t taps = ws[1] * ws[2];
  out->Set(wdata, ws, PlaneMajorWeights(wdata, ws[0], group, taps, Q, ws.back() / Q));
}

void PreparePlaneConcatWeights(const OrtKernelInfo* info, const PlaneKernel& k,
                               const ConvAttrs& at, int64_t Q, PreparedWeights* out) {
  if (!k.split) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  ConvGeometry s = tapconcat::AttrGeometry(at);
  if (ws.size() != 4 || ws[0] < 1 || ws[0] % s.G != 0 || ws[1] != s.KH || ws[2] != s.KW ||
      ws[3] != Q * s.Wg || !ConcatApplies(s))
    return;
  s.M = ws[0];
  std::vector<uint64_t> w2;
  if (!tapconcat::ConcatWeights(s, Q, wdata, &w2)) return;
  out->Set(wdata, ws, PlaneMajorWeights(w2.data(), s.M, s.G, s.KH, Q, Words(s.KW * s.Cg)));
}

void RunPlaneConv(OrtKernelContext* ctx, const PlaneKernel& k, BitSerialArgs a,
                  const PreparedWeights* prepared, const PreparedWeights* concat,
                  const lut::LutState* lut) {
  ConvGeometry& s = a.geo;
  s.blocks_per_group = (s.Mg + kBlockM - 1) / kBlockM;
  if (lut && k.lut && lut::LutChosen(lut->use, k.lut_faster, s, a.P)) {
    const lut::LutOperands o{a.P, a.Q, a.act_coeffs, a.weight_coeffs, a.weight_offset};
    lut::LutTables scratch;
    const lut::LutTables* t = lut->cache->Get(s, o, a.w, prepared != nullptr, &scratch);
    if (t && lut::RunLut(ctx, k.lut, s, a.P, *t, a.x, a.scale, a.bias, a.y, nullptr)) return;
  }
  if (!k.split) {
    RunTasks(ctx, k.row, a);
    return;
  }
  if (ConcatApplies(s)) {
    std::vector<uint64_t> w2, w2_blocked, x2;
    const uint64_t* wb = concat ? concat->laid_out.data() : nullptr;
    if (!wb && tapconcat::ConcatWeights(s, a.Q, a.w, &w2)) {
      w2_blocked = PlaneMajorWeights(w2.data(), s.M, s.G, s.KH, a.Q, Words(s.KW * s.Cg));
      wb = w2_blocked.data();
    }
    if (wb) x2.resize(static_cast<size_t>(s.N * s.H * s.OW * s.G * a.P * Words(s.KW * s.Cg)));
    if (wb && tapconcat::ConcatActivations(s, s.G * a.P, a.x, x2.data())) {
      BitSerialArgs c = a;
      c.geo = tapconcat::ConcatGeometry(s, s.G * a.P);
      c.x = x2.data();
      if (RunSplit(ctx, k, c, wb)) return;
    }
  }
  if (RunSplit(ctx, k, a, prepared ? prepared->laid_out.data() : nullptr)) return;
  RunTasks(ctx, k.fallback, a);
}

}  // namespace packed
}  // namespace qcompile
