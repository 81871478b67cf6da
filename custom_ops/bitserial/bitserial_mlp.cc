#include "bitserial_mlp.h"

#include "dense_planes.h"

namespace qcompile {
namespace {

// The plane coefficients of codes written in P planes: two's complement or unsigned (SPEC).
std::vector<int64_t> CodeCoeffs(int64_t P, bool twos_complement) {
  std::vector<int64_t> c(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) c[static_cast<size_t>(p)] = int64_t{1} << p;
  if (twos_complement) c.back() = -c.back();
  return c;
}

// v[begin, begin + n) of a flattened per-layer attribute, checked to be there.
std::vector<int64_t> Slice(const std::string& label, const char* name,
                           const std::vector<int64_t>& v, int64_t begin, int64_t n) {
  if (n < 1 || begin + n > static_cast<int64_t>(v.size()))
    Fail(label, "attribute '", name, "': expected at least ", begin + (n < 1 ? 1 : n),
         " values (the layers' counts), got ", v.size());
  return std::vector<int64_t>(v.begin() + begin, v.begin() + begin + n);
}

}  // namespace

BitSerialMlpOp::BitSerialMlpOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BitSerialMlp", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 6, 1);
    quant_.Parse(at, label_, "");
    variant_ = &SelectVariant(bitserial::Variants(), label_, KernelAttr(at));
    const std::vector<int64_t> features = at.Ints("features", {});
    const int64_t L = static_cast<int64_t>(features.size()) - 1;
    if (L < 1 || L > 64)
      Fail(label_, "attribute 'features': expected 2..65 feature counts (input, then each layer's "
           "outputs), got ", features.size());
    for (int64_t f : features)
      if (f < 1 || f > kMaxAttr)
        Fail(label_, "attribute 'features': expected counts in 1..", kMaxAttr, ", got ", ShapeStr(features));
    const std::vector<int64_t> act = at.Ints("act_coeffs", {}), act_n = at.Ints("act_planes", {});
    const std::vector<int64_t> wgt = at.Ints("weight_coeffs", {}), wgt_n = at.Ints("weight_planes", {});
    const std::vector<int64_t> offsets = at.Ints("weight_offset", {});
    const std::vector<int64_t> levels = at.Ints("levels", {}), bases = at.Ints("out_base", {});
    auto need = [&](const char* name, const std::vector<int64_t>& v, int64_t n) {
      if (static_cast<int64_t>(v.size()) != n)
        Fail(label_, "attribute '", name, "': expected ", n, " values (one per ",
             n == L ? "layer" : "layer but the last", "), got ", v.size());
    };
    need("act_planes", act_n, L);
    need("weight_planes", wgt_n, L);
    need("weight_offset", offsets, L);
    need("levels", levels, L - 1);
    need("out_base", bases, L - 1);
    int64_t a_at = 0, q_at = 0;
    layers_.resize(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l) {
      Layer& ly = layers_[static_cast<size_t>(l)];
      ly.K = features[static_cast<size_t>(l)];
      ly.M = features[static_cast<size_t>(l + 1)];
      ly.Kw = Words(ly.K);
      const std::string where = label_ + " layer " + std::to_string(l);
      ly.planes.act_coeffs = Slice(where, "act_coeffs", act, a_at, act_n[static_cast<size_t>(l)]);
      ly.planes.weight_coeffs = Slice(where, "weight_coeffs", wgt, q_at, wgt_n[static_cast<size_t>(l)]);
      ly.planes.weight_offset = offsets[static_cast<size_t>(l)];
      a_at += act_n[static_cast<size_t>(l)];
      q_at += wgt_n[static_cast<size_t>(l)];
      ly.planes.Validate(where);
      ly.planes.CheckRange(where, ly.K);
      // the codes this layer reads are the ones the quantizer (or the layer before) writes
      const bool twos = l == 0 ? quant_.twos_complement
                               : layers_[static_cast<size_t>(l - 1)].out.out_base < 0;
      const int64_t P_in = l == 0 ? quant_.planes : layers_[static_cast<size_t>(l - 1)].out.out_planes;
      if (ly.planes.act_coeffs != CodeCoeffs(P_in, twos))
        Fail(where, "attribute 'act_coeffs' ", ShapeStr(ly.planes.act_coeffs),
             " is not the coefficients of the codes it reads, ", ShapeStr(CodeCoeffs(P_in, twos)));
      ly.w_at = w_words_;
      w_words_ += ly.M * static_cast<int64_t>(ly.planes.weight_coeffs.size()) * ly.Kw;
      if (l + 1 < L) {
        ly.levels = levels[static_cast<size_t>(l)];
        if (ly.levels < 1 || ly.levels > 255)
          Fail(where, "attribute 'levels': expected 1..255, got ", ly.levels);
        ly.out.out_base = bases[static_cast<size_t>(l)];
        ly.out.out_planes = act_n[static_cast<size_t>(l + 1)];
        ly.t_at = t_count_;
        ly.d_at = d_count_;
        t_count_ += ly.M * ly.levels;
        d_count_ += ly.M;
      }
    }
    if (a_at != static_cast<int64_t>(act.size()) || q_at != static_cast<int64_t>(wgt.size()))
      Fail(label_, "attributes 'act_coeffs' / 'weight_coeffs': expected ", a_at, " / ", q_at,
           " values (the sums of act_planes / weight_planes), got ", act.size(), " / ", wgt.size());
    // Constants (the compiler's case): laid out and checked once.
    const uint64_t* w = nullptr;
    const int32_t *t = nullptr, *d = nullptr;
    std::vector<int64_t> ws, ts, ds;
    if (ConstantInput(info, 1, &w, &ws) && ConstantInput(info, 2, &t, &ts) &&
        ConstantInput(info, 3, &d, &ds) && ws == std::vector<int64_t>{w_words_} &&
        ts == std::vector<int64_t>{t_count_} && ds == std::vector<int64_t>{d_count_}) {
      try {  // a bad constant is reported by Compute
        Prepare(w, t, d, &const_);
      } catch (const std::exception&) {
        const_ = Prepared{};
      }
    }
  });
}

void BitSerialMlpOp::Prepare(const uint64_t* w, const int32_t* t, const int32_t* d,
                             Prepared* out) const {
  const size_t L = layers_.size();
  out->w.assign(L, packed::PreparedWeights{});
  out->thresholds.assign(L - 1, bitserial::ThresholdTables{});
  for (size_t l = 0; l < L; ++l) {
    const Layer& ly = layers_[l];
    const int64_t Q = static_cast<int64_t>(ly.planes.weight_coeffs.size());
    const uint64_t* wl = w + ly.w_at;
    out->w[l].Set(wl, {ly.M, Q * ly.Kw}, bitserial::DenseBlockedWeights(wl, ly.M, Q, ly.Kw));
    if (l + 1 == L) continue;
    const int32_t* tl = t + ly.t_at;
    const int32_t* dl = d + ly.d_at;
    const std::string where = label_ + " layer " + std::to_string(l);
    ly.out.Check(where, tl, {ly.M, ly.levels}, dl, {ly.M}, ly.M);
    out->thresholds[l].Build(tl, dl, ly.M, ly.levels);
  }
  out->w_src = w;
  out->t_src = t;
  out->d_src = d;
}

Ort::Status BitSerialMlpOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, const U64Tensor& w,
                                    const I32Tensor& thresholds, const I32Tensor& direction,
                                    const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const Layer& first = layers_.front();
    const Layer& last = layers_.back();
    int64_t K = 1;  // X [N, ...] is read as [N, K], a flatten from axis 1 (row-major: no copy)
    for (size_t i = 1; i < xs.size(); ++i) K *= xs[i];
    if (xs.size() < 2 || K != first.K)
      Fail(label_, "input X: expected shape [N, ", first.K, "] (features[0]; or [N, ...] of as many "
           "values per row), got ", ShapeStr(xs));
    CheckVector(label_, "W", w.Shape(), w_words_, "the layers' packed weights, concatenated");
    CheckVector(label_, "thresholds", thresholds.Shape(), t_count_, "the hidden layers' [M, L], concatenated");
    CheckVector(label_, "direction", direction.Shape(), d_count_, "the hidden layers' [M], concatenated");
    CheckVector(label_, "scale", scale.Shape(), last.M, "the last layer's outputs");
    CheckVector(label_, "bias", bias.Shape(), last.M, "the last layer's outputs");
    const int64_t N = xs[0];
    float* out = y.Allocate({N, last.M});
    if (N == 0) return;
    Prepared run;
    const Prepared* p = &const_;
    if (!(const_.w_src && const_.w_src == w.Data() && const_.t_src == thresholds.Data() &&
          const_.d_src == direction.Data())) {
      Prepare(w.Data(), thresholds.Data(), direction.Data(), &run);
      p = &run;
    }
    // activations of the current layer (packed planes) and the next one's, ping-pong
    const int64_t P0 = quant_.planes;
    ScratchArray<uint64_t, 512> a(static_cast<size_t>(N * P0 * first.Kw));
    quant_.Pack(ctx, label_, x.Data(), xs, N, K, 1, 1, 1, a.data());
    std::vector<uint64_t> heap;
    const uint64_t* cur = a.data();
    for (size_t l = 0; l < layers_.size(); ++l) {
      const Layer& ly = layers_[l];
      packed::BitSerialArgs args{};
      ly.planes.Fill(&args);
      args.geo.M = ly.M;
      args.geo.Wg = ly.Kw;
      ScratchArray<int32_t, 1024> d(static_cast<size_t>(N * ly.M));
      bitserial::RunDense(ctx, variant_->dense, bitserial::DenseArgsOf(args, cur, d.data()), N,
                          nullptr, &p->w[l]);
      if (l + 1 == layers_.size()) {  // the float output, as BitSerialGemm
        bitserial::DenseScaleBias(d.data(), N, ly.M, scale.Data(), bias.Data(), out);
        break;
      }
      const int64_t Wg_out = Words(ly.M), YW = ly.out.out_planes * Wg_out;
      std::vector<uint64_t> next(static_cast<size_t>(N * YW));
      bitserial::MultiThresholdArgs ta{};
      p->thresholds[l].Fill(&ta);
      ta.out_base = ly.out.out_base;
      ta.P = ly.out.out_planes;
      ta.Wg_out = Wg_out;
      for (int64_t n = 0; n < N; ++n)
        bitserial::MultiThresholdDense(ta, d.data() + n * ly.M, ly.M, next.data() + n * YW);
      heap.swap(next);
      cur = heap.data();
    }
  });
}

}  // namespace qcompile
