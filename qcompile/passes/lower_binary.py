"""Rewrite binary Conv / Gemm / MatMul into qcompile::XnorConv / XnorGemm on bit-packed operands.

Pattern:  Conv(BipolarQuant(x, s_a), W)   with W = +-alpha_m per output channel (after folding)
Rewrite:  XnorConv(BinarizePack(x), pack(sign W), scale = alpha_m * s_a, bias = conv bias)

Why it is exact: sum_c (s_a * sx_c)(alpha_m * sw_c) = s_a * alpha_m * D with D the integer +-1 dot
product that XnorConv computes by popcount; zero padding contributes 0 on both sides.
The check is analysis.analyze_layer, so the compile table and the rule always agree.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter import pattern

from qcompile.analysis import conv_attrs
from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.ops.packing import pack_conv_weights, pack_dense_weights
from qcompile.passes._layer_rule import LayerLoweringRule, output_scale_bias
from qcompile.passes.rewrite import RuleSetPass


class BinaryLayerToXnor(LayerLoweringRule):
    """Conv / Gemm / MatMul(BipolarQuant(x), binary W) -> XnorConv / XnorGemm(BinarizePack(x), ...)."""

    def __init__(self, op_type: str):
        target = "XnorConv" if op_type == "Conv" else "XnorGemm"
        super().__init__(f"Binary{op_type}To{target}", op_type, target)

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = self.layer(node)
        weights = layer.weight.values  # [M, Cg, KH, KW] or [M, K]
        m = weights.shape[0]
        scale, bias = output_scale_bias(node, layer.weight.alpha * np.float32(layer.input.scale), m)
        if self.op_type == "Conv":
            attrs = conv_attrs(node, layer.kernel)
            packed = op.BinarizePack(layer.input.quant_node.inputs[0], group=attrs["group"], _domain=QCOMPILE_DOMAIN)
            w_packed = pack_conv_weights(weights)
            extra = dict(in_channels=int(weights.shape[1] * attrs["group"]), **attrs)
        else:
            packed = op.BinarizePack(layer.input.quant_node.inputs[0], _domain=QCOMPILE_DOMAIN)
            w_packed = pack_dense_weights(weights)
            extra = dict(in_features=int(weights.shape[1]))
        packed.producer().name = f"{layer.name}/pack"
        return self.emit(op, packed, w_packed, scale, bias, layer.name, node.outputs[0].name, **extra)


def binary_lowering_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([BinaryLayerToXnor.rule(op) for op in ("Conv", "Gemm", "MatMul")])


class LowerBinaryLayersPass(RuleSetPass):
    """Binary layers become XnorConv / XnorGemm."""

    make_rules = staticmethod(binary_lowering_rules)
