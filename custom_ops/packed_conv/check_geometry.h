// The packed-convolution geometry of an op's inputs, checked: what every op of the XNOR and
// bit-serial families builds before it calls a kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "kernel_args.h"

namespace qcompile {
namespace packed {

// Checks X [N, H, W, G*P*Wg] and W [M, KH, KW, Q*Wg] against conv attributes (P, Q planes; 1
// for binary operands) and returns the kernels' geometry; fails naming the tensor and shapes.
ConvGeometry MakeConvGeometry(const std::string& label, const ConvAttrs& a,
                              const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                              int64_t P, int64_t Q);

// A dense layer [N, K] x [M, K] as a 1x1 convolution of a 1x1 image with K channels, Kw words
// per plane and XW words per input row (Kw * planes): the same packed layouts and kernels.
ConvGeometry DenseGeometry(int64_t N, int64_t K, int64_t Kw, int64_t XW, int64_t M);

}  // namespace packed
}  // namespace qcompile
