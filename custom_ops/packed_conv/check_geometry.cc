#include "check_geometry.h"

#include "../common/op_util.h"

namespace qcompile {
namespace packed {

ConvGeometry MakeConvGeometry(const std::string& label, const ConvAttrs& a,
                              const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                              int64_t P, int64_t Q) {
  const char* x_layout = P == 1 ? "[N, H, W, G*Wg]" : "[N, H, W, G*P*Wg]";
  const char* w_layout = Q == 1 ? "[M, KH, KW, Wg]" : "[M, KH, KW, Q*Wg]";
  CheckRank(label, "X", xs, 4, x_layout);
  CheckRank(label, "W", ws, 4, w_layout);
  ConvGeometry s{};
  s.N = xs[0];
  s.H = xs[1];
  s.W = xs[2];
  s.G = a.group;
  s.Cg = a.in_channels / a.group;
  s.Wg = Words(s.Cg);
  s.XW = s.G * P * s.Wg;
  if (xs[3] != s.XW) {
    if (P == 1)
      Fail(label, "input X: expected last dim G*ceil((C/G)/64) = ", s.G, "*", s.Wg, " = ", s.XW,
           " (in_channels ", a.in_channels, ", group ", a.group, "), got shape ", ShapeStr(xs));
    Fail(label, "input X: expected last dim G*P*ceil((C/G)/64) = ", s.G, "*", P, "*", s.Wg,
         " = ", s.XW, " (in_channels ", a.in_channels, ", group ", a.group, ", ", P,
         " planes), got shape ", ShapeStr(xs));
  }
  s.M = ws[0];
  s.KH = a.kernel_shape[0];
  s.KW = a.kernel_shape[1];
  if (s.M < 1 || s.M % s.G != 0)
    Fail(label, "input W: expected M (dim 0) >= 1 and divisible by group ", s.G, ", got shape ",
         ShapeStr(ws));
  if (ws[1] != s.KH || ws[2] != s.KW || ws[3] != Q * s.Wg) {
    if (Q == 1)
      Fail(label, "input W: expected shape [", s.M, ", ", s.KH, ", ", s.KW, ", ", s.Wg,
           "] ([M, KH, KW, ceil(Cg/64)] with Cg = ", s.Cg, "), got ", ShapeStr(ws));
    Fail(label, "input W: expected shape [", s.M, ", ", s.KH, ", ", s.KW, ", ", Q * s.Wg,
         "] ([M, KH, KW, Q*ceil(Cg/64)] with Cg = ", s.Cg, ", Q = ", Q, "), got ",
         ShapeStr(ws));
  }
  s.Mg = s.M / s.G;
  s.sh = a.strides[0];
  s.sw = a.strides[1];
  s.pt = a.pads[0];
  s.pl = a.pads[1];
  s.dh = a.dilations[0];
  s.dw = a.dilations[1];
  a.OutputSize(label, xs, s.H, s.W, &s.OH, &s.OW);
  s.blocks_per_group = (s.Mg + kBlockM - 1) / kBlockM;
  return s;
}

ConvGeometry DenseGeometry(int64_t N, int64_t K, int64_t Kw, int64_t XW, int64_t M) {
  ConvGeometry s{};
  s.N = N;
  s.H = s.W = 1;
  s.G = 1;
  s.Cg = K;
  s.Wg = Kw;
  s.XW = XW;
  s.M = s.Mg = M;
  s.KH = s.KW = 1;
  s.sh = s.sw = s.dh = s.dw = 1;
  s.pt = s.pl = 0;
  s.OH = s.OW = 1;
  s.blocks_per_group = (s.Mg + kBlockM - 1) / kBlockM;
  return s;
}

}  // namespace packed
}  // namespace qcompile
