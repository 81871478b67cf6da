"""Rewrite multi-bit Conv / Gemm / MatMul into qcompile::BitSerialConv / BitSerialGemm.

Pattern:  Conv(Quant(x, s_a, z_a, b_a), Wq)   Wq = Quant(W, s_w, z_w, b_w) or BipolarQuant(W, alpha)
Rewrite:  BitSerialConv(QuantizePack(x), planes of the integer weights, scale = s_a * s_w[m], bias)

Why it is exact: the reference computes sum (s_a * v_a)(s_w * v_w) = s_a * s_w * D with D the
integer dot product of the activation values v_a = q_a - z_a and the weight values v_w, which
BitSerialConv computes as a sum of plane-pair popcounts; zero padding is v_a = 0 on both sides.
Runs before weight quantizers are folded: the weight Quant node carries the integer grid.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from qcompile.analysis import activation_operand, conv_attrs, weight_operand
from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.ops.bitserial import pack_weight_planes
from qcompile.passes._layer_rule import LayerLoweringRule, output_scale_bias
from qcompile.passes.rewrite import RuleSetPass


class MultiBitToBitSerial(LayerLoweringRule):
    def __init__(self, op_type: str):
        super().__init__(f"MultiBit{op_type}ToBitSerial", op_type, "BitSerialConv" if op_type == "Conv" else "BitSerialGemm")

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = self.layer(node)
        act = activation_operand(layer.input.quant_node, node)
        wop = weight_operand(node, layer.weight)
        m = wop.codes.shape[0]
        signed_planes = wop.offset == 0 and wop.coeffs[-1] < 0
        packed_w = pack_weight_planes(wop.codes, wop.planes, signed_planes)
        scale, bias = output_scale_bias(node, (wop.scale * np.asarray(act.scale, np.float32)).astype(np.float32), m)
        x = layer.input.quant_node.inputs[0]
        if act.divisor is not None:  # the Quant's own x / s[c], then QuantizePack with scale 1
            x = op.Div(x, op.initializer(ir.tensor(act.divisor), f"{layer.name}/act_scale"))
        plane_attrs = dict(act_coeffs=act.coeffs, weight_coeffs=wop.coeffs, weight_offset=int(wop.offset))
        if self.op_type == "Conv":
            attrs = conv_attrs(node, layer.kernel)
            packed = op.QuantizePack(x, group=attrs["group"], _domain=QCOMPILE_DOMAIN,
                                     **act.quant)
            extra = dict(in_channels=int(wop.codes.shape[1] * attrs["group"]), **attrs)
        else:
            packed = op.QuantizePack(x, _domain=QCOMPILE_DOMAIN, **act.quant)
            extra = dict(in_features=int(wop.codes.shape[1]))
        packed.producer().name = f"{layer.name}/pack"
        return self.emit(op, packed, packed_w, scale, bias, layer.name, node.outputs[0].name, **plane_attrs, **extra)

def multibit_lowering_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([MultiBitToBitSerial.rule(op) for op in ("Conv", "Gemm", "MatMul")])


class LowerMultibitLayersPass(RuleSetPass):
    """Multi-bit layers become BitSerialConv / BitSerialGemm."""

    make_rules = staticmethod(multibit_lowering_rules)
