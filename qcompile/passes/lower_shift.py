"""Rewrite Conv / Gemm / MatMul with power-of-two weights into qcompile::ShiftConv / ShiftGemm.

Pattern:  Conv(Q(x), Wq)   Q = qcompile::Pow2Quant, or a QONNX Quant when both bit widths are >= 3
          (MINW-Net's rule, analysis._plan), Wq = scale_w[m] * {0, ±2^e} per output channel
Rewrite:  ShiftConv(x, 4-bit sign/exponent codes, scale = s_a * scale_w[m], bias), the activation
          quantizer's attributes copied onto the op, which quantizes x itself.

Why it is exact: the reference computes sum (s_a * a)(scale_w * w_int) = s_a * scale_w * D with D
the integer dot product of the activation codes a and w_int = ±2^e, which ShiftConv computes as
shifts and adds; zero padding is a = 0 on both sides.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter import pattern

from qcompile.analysis import conv_attrs, shift_activation
from qcompile.ops.shift import encode_weights
from qcompile.passes._layer_rule import LayerLoweringRule, output_scale_bias
from qcompile.passes.rewrite import RuleSetPass


def _activation_scale(act: dict) -> np.float32:
    if act["act_mode"] == "pow2":  # Pow2Quant's value is a * 2^-(L-1)
        return np.float32(2.0 ** -(len(act["act_thresholds"]) - 1))
    return np.float32(act["act_scale"])


class Pow2LayerToShift(LayerLoweringRule):
    def __init__(self, op_type: str):
        super().__init__(f"Pow2{op_type}ToShift", op_type, "ShiftConv" if op_type == "Conv" else "ShiftGemm")

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = self.layer(node)
        act = shift_activation(layer.input)
        pow2 = layer.weight.pow2
        m = pow2.ints.shape[0]
        codes = encode_weights(pow2.ints.reshape(m, -1))
        scale, bias = output_scale_bias(node, (pow2.scale * _activation_scale(act)).astype(np.float32), m)
        if self.op_type == "Conv":
            attrs = conv_attrs(node, layer.kernel)
            extra = dict(in_channels=int(pow2.ints.shape[1] * attrs["group"]), **attrs)
        else:
            extra = dict(in_features=int(pow2.ints.shape[1]))
        return self.emit(op, layer.input.quant_node.inputs[0], codes, scale, bias, layer.name, node.outputs[0].name, **act, **extra)

def shift_lowering_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([Pow2LayerToShift.rule(op) for op in ("Conv", "Gemm", "MatMul")])


class LowerShiftLayersPass(RuleSetPass):
    """Power-of-two layers become ShiftConv / ShiftGemm."""

    make_rules = staticmethod(shift_lowering_rules)
