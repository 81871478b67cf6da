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
from onnxscript.rewriter._basics import MatchResult

from qcompile.analysis import activation_operand, analyze_layer, conv_attrs, weight_operand
from qcompile.ops.bitserial import pack_weight_planes
from qcompile.passes._consts import QCOMPILE_DOMAIN, const_array, float_attr
from qcompile.passes.lower_binary import _f32, _tag


class MultiBitToBitSerial(pattern.RewriteRuleClassBase):
    def __init__(self, op_type: str):
        super().__init__(name=f"MultiBit{op_type}ToBitSerial")
        self.op_type = op_type
        self.target = "BitSerialConv" if op_type == "Conv" else "BitSerialGemm"

    def pattern(self, op, x, w):
        layer_op = getattr(op, self.op_type)
        return layer_op(x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, w, out, **_) -> MatchResult:
        result = MatchResult()
        layer = analyze_layer(out.producer())
        if layer.target != self.target:
            return result.fail(f"{layer.name}: {layer.reason or 'lowers to ' + str(layer.target)}")
        return result

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = analyze_layer(node)
        act = activation_operand(layer.input.quant_node)
        wop = weight_operand(node, layer.weight)
        m = wop.codes.shape[0]
        signed_planes = wop.offset == 0 and wop.coeffs[-1] < 0
        packed_w = pack_weight_planes(wop.codes, wop.planes, signed_planes)
        scale = (wop.scale * np.float32(act.scale)).astype(np.float32)
        plane_attrs = dict(act_coeffs=act.coeffs, weight_coeffs=wop.coeffs, weight_offset=int(wop.offset))
        if self.op_type == "Conv":
            attrs = conv_attrs(node, layer.kernel)
            bias = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
            bias = np.zeros(m, np.float32) if bias is None else bias
            packed = op.QuantizePack(layer.input.quant_node.inputs[0], group=attrs["group"], _domain=QCOMPILE_DOMAIN,
                                     **act.quant)
            extra = dict(in_channels=int(wop.codes.shape[1] * attrs["group"]), **attrs)
        else:
            bias = np.zeros(m, np.float32)
            if node.op_type == "Gemm":
                scale = (scale * np.float32(float_attr(node, "alpha", 1.0))).astype(np.float32)
                if len(node.inputs) > 2 and node.inputs[2] is not None:
                    c = const_array(node.inputs[2]).reshape(-1) * np.float32(float_attr(node, "beta", 1.0))
                    bias = np.broadcast_to(c, (m,))
            packed = op.QuantizePack(layer.input.quant_node.inputs[0], _domain=QCOMPILE_DOMAIN, **act.quant)
            extra = dict(in_features=int(wop.codes.shape[1]))
        packed.producer().name = f"{layer.name}/pack"
        y = getattr(op, self.target)(
            packed,
            op.initializer(ir.tensor(packed_w), f"{layer.name}/w_planes"),
            _f32(op, scale, f"{layer.name}/scale"),
            _f32(op, bias, f"{layer.name}/bias"),
            _domain=QCOMPILE_DOMAIN,
            **plane_attrs,
            **extra,
        )
        return _tag(y, layer.name)


def multibit_lowering_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([MultiBitToBitSerial.rule(op) for op in ("Conv", "Gemm", "MatMul")])
