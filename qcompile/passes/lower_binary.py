"""Rewrite binary Conv / Gemm / MatMul into qcompile::XnorConv / XnorGemm on bit-packed operands.

Pattern:  Conv(BipolarQuant(x, s_a), W)   with W = +-alpha_m per output channel (after folding)
Rewrite:  XnorConv(BinarizePack(x), pack(sign W), scale = alpha_m * s_a, bias = conv bias)

Why it is exact: sum_c (s_a * sx_c)(alpha_m * sw_c) = s_a * alpha_m * D with D the integer +-1 dot
product that XnorConv computes by popcount; zero padding contributes 0 on both sides.
The check is analysis.analyze_layer, so the compile table and the rule always agree.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchResult

from qcompile.analysis import analyze_layer, conv_attrs
from qcompile.ops.packing import pack_conv_weights, pack_dense_weights
from qcompile.passes._consts import QCOMPILE_DOMAIN, const_array, float_attr, int_attr

LAYER_KEY = "qcompile.layer"  # node metadata: which reference layer a compiled node stands for
FOLDED_KEY = "qcompile.folded"  # node metadata: ops folded into its output transform


def _check_layer(out: ir.Value, wanted: str) -> MatchResult:
    result = MatchResult()
    layer = analyze_layer(out.producer())
    if layer.target != wanted:
        return result.fail(f"{layer.name}: {layer.reason}")
    return result


def _tag(value: ir.Value, layer_name: str) -> ir.Value:
    node = value.producer()
    node.name = layer_name
    node.metadata_props[LAYER_KEY] = layer_name
    return value


def _f32(op, array: np.ndarray, name: str) -> ir.Value:
    return op.initializer(ir.tensor(np.ascontiguousarray(array, dtype=np.float32)), name)


class BinaryConvToXnorConv(pattern.RewriteRuleClassBase):
    """Conv(BipolarQuant(x), binary W[, b]) -> XnorConv(BinarizePack(x), packed W, scale, b)."""

    def pattern(self, op, x, w):
        return op.Conv(x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, w, out, **_) -> MatchResult:
        return _check_layer(out, "XnorConv")

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = analyze_layer(node)
        attrs = conv_attrs(node, layer.kernel)
        weights = layer.weight.values  # [M, Cg, KH, KW]
        m, cg = weights.shape[:2]
        bias = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        scale = layer.weight.alpha * np.float32(layer.input.scale)
        packed = op.BinarizePack(layer.input.quant_node.inputs[0], group=attrs["group"], _domain=QCOMPILE_DOMAIN)
        packed.producer().name = f"{layer.name}/pack"
        y = op.XnorConv(
            packed,
            op.initializer(ir.tensor(pack_conv_weights(weights)), f"{layer.name}/w_packed"),
            _f32(op, scale, f"{layer.name}/scale"),
            _f32(op, bias if bias is not None else np.zeros(m), f"{layer.name}/bias"),
            _domain=QCOMPILE_DOMAIN,
            in_channels=int(cg * attrs["group"]),
            **attrs,
        )
        return _tag(y, layer.name)


class BinaryDenseToXnorGemm(pattern.RewriteRuleClassBase):
    """Gemm / MatMul(BipolarQuant(x), binary W) -> XnorGemm(BinarizePack(x), packed W, scale, bias)."""

    def __init__(self, op_type: str):
        super().__init__(name=f"Binary{op_type}ToXnorGemm")
        self.op_type = op_type

    def pattern(self, op, x, w):
        layer_op = getattr(op, self.op_type)
        return layer_op(x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, w, out, **_) -> MatchResult:
        return _check_layer(out, "XnorGemm")

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = analyze_layer(node)
        weights = layer.weight.values  # [M, K]
        m, k = weights.shape
        alpha_gemm = float_attr(node, "alpha", 1.0) if node.op_type == "Gemm" else 1.0
        beta = float_attr(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0
        bias = np.zeros(m, dtype=np.float32)
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
            bias = np.broadcast_to(const_array(node.inputs[2]).reshape(-1), (m,)) * np.float32(beta)
        scale = layer.weight.alpha * np.float32(layer.input.scale) * np.float32(alpha_gemm)
        packed = op.BinarizePack(layer.input.quant_node.inputs[0], _domain=QCOMPILE_DOMAIN)
        packed.producer().name = f"{layer.name}/pack"
        y = op.XnorGemm(
            packed,
            op.initializer(ir.tensor(pack_dense_weights(weights)), f"{layer.name}/w_packed"),
            _f32(op, scale, f"{layer.name}/scale"),
            _f32(op, bias, f"{layer.name}/bias"),
            _domain=QCOMPILE_DOMAIN,
            in_features=int(k),
        )
        return _tag(y, layer.name)


def binary_lowering_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet(
        [
            BinaryConvToXnorConv.rule(),
            BinaryDenseToXnorGemm.rule("Gemm"),
            BinaryDenseToXnorGemm.rule("MatMul"),
        ]
    )


# re-exported for fold_affine
__all__ = ["binary_lowering_rules", "LAYER_KEY", "FOLDED_KEY", "int_attr"]
