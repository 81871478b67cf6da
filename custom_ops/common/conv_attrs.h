// Attributes shared by the convolution-like ops (XnorConv, XnorConvThreshold, BitSerialConv,
// PackedMaxPool) and the output-size rule, with the checks every one of them needs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "op_util.h"

namespace qcompile {

// Attribute bound: keeps every size product far from int64 overflow.
constexpr int64_t kMaxAttr = int64_t{1} << 24;

constexpr int64_t kWordBits = 64;
inline int64_t Words(int64_t bits) { return (bits + kWordBits - 1) / kWordBits; }

struct ConvAttrs {
  int64_t in_channels = 0, group = 1;  // only with_channels
  std::vector<int64_t> kernel_shape, strides, pads, dilations;

  // kernel_shape is required; with_channels also reads in_channels (required) and group. prefix:
  // the attribute names' (DirectConvRequantize's pool_kernel_shape, ... beside its conv's own).
  void Parse(const Attrs& at, const std::string& label, bool with_channels,
             const std::string& prefix = "");

  // Output size for an H x W input; fails (naming input X and its shape) when < 1.
  void OutputSize(const std::string& label, const std::vector<int64_t>& xs, int64_t H, int64_t W,
                  int64_t* OH, int64_t* OW) const;
};

inline void ConvAttrs::Parse(const Attrs& at, const std::string& label, bool with_channels,
                             const std::string& prefix) {
  const std::string ks = prefix + "kernel_shape", st = prefix + "strides", pa = prefix + "pads",
                    di = prefix + "dilations";
  kernel_shape = at.Ints(ks.c_str(), {});
  strides = at.Ints(st.c_str(), {1, 1});
  pads = at.Ints(pa.c_str(), {0, 0, 0, 0});
  dilations = at.Ints(di.c_str(), {1, 1});
  auto in_range = [](const std::vector<int64_t>& v, size_t n, int64_t lo) {
    if (v.size() != n) return false;
    for (int64_t e : v)
      if (e < lo || e > kMaxAttr) return false;
    return true;
  };
  if (with_channels) {
    in_channels = at.Int("in_channels", -1);
    group = at.Int("group", 1);
    if (in_channels < 1 || in_channels > kMaxAttr)
      Fail(label, "attribute 'in_channels': expected 1..", kMaxAttr, ", got ", in_channels,
           in_channels == -1 ? " (missing; it is required)" : "");
    if (group < 1 || in_channels % group != 0)
      Fail(label, "attribute 'group': expected >= 1 and dividing in_channels (", in_channels,
           "), got ", group);
  }
  if (!in_range(kernel_shape, 2, 1))
    Fail(label, "attribute '", ks, "': expected [KH, KW] with KH, KW >= 1, got ",
         ShapeStr(kernel_shape), kernel_shape.empty() ? " (missing; it is required)" : "");
  if (!in_range(strides, 2, 1))
    Fail(label, "attribute '", st, "': expected [sh, sw] with values >= 1, got ", ShapeStr(strides));
  if (!in_range(dilations, 2, 1))
    Fail(label, "attribute '", di, "': expected [dh, dw] with values >= 1, got ", ShapeStr(dilations));
  if (!in_range(pads, 4, 0))
    Fail(label, "attribute '", pa, "': expected [pt, pl, pb, pr] with values >= 0, got ", ShapeStr(pads));
}

inline void ConvAttrs::OutputSize(const std::string& label, const std::vector<int64_t>& xs,
                                  int64_t H, int64_t W, int64_t* OH, int64_t* OW) const {
  const int64_t eff_h = H + pads[0] + pads[2] - dilations[0] * (kernel_shape[0] - 1) - 1;
  const int64_t eff_w = W + pads[1] + pads[3] - dilations[1] * (kernel_shape[1] - 1) - 1;
  if (eff_h < 0 || eff_w < 0)
    Fail(label, "output size < 1: input X ", ShapeStr(xs), " with kernel_shape ",
         ShapeStr(kernel_shape), ", pads ", ShapeStr(pads), ", dilations ", ShapeStr(dilations));
  *OH = eff_h / strides[0] + 1;
  *OW = eff_w / strides[1] + 1;
}

}  // namespace qcompile
