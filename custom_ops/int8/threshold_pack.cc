#include "threshold_pack.h"

#include <vector>

#include "../common/conv_attrs.h"
#include "../xnor/xnor_variants.h"

namespace qcompile {

ThresholdPackOp::ThresholdPackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::ThresholdPack", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 3, 1);
    out_group_ = at.Int("out_group", 1);
    if (out_group_ < 1 || out_group_ > kMaxAttr)
      Fail(label_, "attribute 'out_group': expected >= 1, got ", out_group_);
    pack_ = SelectVariant(xnor::Variants(), label_, KernelAttr(at)).threshold;
  });
}

Ort::Status ThresholdPackOp::Compute(OrtKernelContext* ctx, const Tensor<int32_t>& d,
                                     const Tensor<int32_t>& threshold,
                                     const Tensor<int32_t>& direction,
                                     Tensor<uint64_t>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ds = d.Shape();
    CheckRank(label_, "D", ds, 4, "[N, M, H, W]");
    const int64_t N = ds[0], M = ds[1], H = ds[2], W = ds[3];
    CheckVector(label_, "threshold", threshold.Shape(), M, "D is " + ShapeStr(ds));
    CheckVector(label_, "direction", direction.Shape(), M, "D is " + ShapeStr(ds));
    if (M % out_group_ != 0)
      Fail(label_, "attribute 'out_group' (", out_group_, ") must divide M (", M, ") of input D ",
           ShapeStr(ds));
    const int32_t* dir = direction.Data();
    for (int64_t m = 0; m < M; ++m)
      if (dir[m] != 1 && dir[m] != -1)
        Fail(label_, "input direction: expected +1 or -1 per channel, got ", dir[m], " at index ", m);
    const int64_t OG = out_group_, Mg_out = M / OG, Wg_out = Words(Mg_out), YW = OG * Wg_out;
    uint64_t* out = y.Allocate({N, H, W, YW});
    if (N == 0 || H == 0 || W == 0 || M == 0) return;
    const xnor::ThresholdArgs ta{threshold.Data(), dir, H * W, OG, Mg_out, Wg_out, W, YW};
    const int32_t* dd = d.Data();
    ParallelFor(ctx, static_cast<size_t>(N * H), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / H, h = static_cast<int64_t>(i) % H;
      pack_(ta, dd + n * M * ta.plane + h * W, out + (n * H + h) * W * YW);
    });
  });
}

}  // namespace qcompile
