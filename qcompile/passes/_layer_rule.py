"""The shared half of the lowering rules (binary, multi-bit, SHIFT): match one Conv / Gemm / MatMul,
let analysis.analyze_layer decide (so the compile table and the rule always agree), emit the op."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult

from qcompile.analysis import Layer, analyze_layer, constant_value
from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import float_attr
from qcompile.base.metadata import FLOAT_ENCODING, LAYER_KEY, REF_KEY, ref_entry
from qcompile.passes.report import PipelineRun
from qcompile.passes.rewrite import ReportingRule


def _tag(value: ir.Value, layer_name: str, reference: str) -> ir.Value:
    node = value.producer()
    node.name = layer_name
    node.metadata_props[LAYER_KEY] = layer_name
    node.metadata_props[REF_KEY] = ref_entry(reference, FLOAT_ENCODING)
    return value


def _f32(op, array: np.ndarray, name: str) -> ir.Value:
    return op.initializer(ir.tensor(np.ascontiguousarray(array, dtype=np.float32)), name)


class LayerLoweringRule(ReportingRule):
    """Fires on a layer of ``op_type`` whose analysis target is ``target``; subclasses rewrite.

    The pattern binds only the layer; the quantizer it consumes is the one analysis found, and
    `check_match` verifies that it is exactly the producer of the layer's input (no Flatten /
    Reshape left between them), so the rewrite never skips an op.
    """

    def __init__(self, name: str, op_type: str, target: str):
        super().__init__(name=name)
        self.op_type = op_type
        self.target = target

    def pattern(self, op, x, w):
        layer_op = getattr(op, self.op_type)
        return layer_op(x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    @staticmethod
    def layer(node: ir.Node) -> Layer:
        """The node's analysis, computed once per pipeline run."""
        run = PipelineRun.current()
        return run.layer(node) if run is not None else analyze_layer(node)

    def check_match(self, context, x, w, out, **_) -> MatchResult:
        result = MatchResult()
        layer = self.layer(out.producer())
        if layer.target != self.target:
            return result.fail(layer.reason or f"lowers to {layer.target}")
        quant = layer.input.quant_node
        if quant is not None and x.producer() is not quant:
            return result.fail(f"its input quantizer {quant.op_type} is not the direct producer of its "
                               f"input (a Flatten/Reshape was not hoisted)")
        return result

    def is_layer_reason(self, node: ir.Node) -> bool:
        target = self.layer(node).target
        return target is None or target == self.target

    def emit(self, op, x, weights: np.ndarray, scale: np.ndarray, bias: np.ndarray, layer_name: str,
             reference: str, **attrs):
        """The target op on (x, packed weights, per-output scale, bias), tagged as the layer and as
        standing for the reference tensor `reference` (the layer's output)."""
        y = getattr(op, self.target)(
            x,
            op.initializer(ir.tensor(weights), f"{layer_name}/w_packed"),
            _f32(op, scale, f"{layer_name}/scale"),
            _f32(op, bias, f"{layer_name}/bias"),
            _domain=QCOMPILE_DOMAIN,
            **attrs,
        )
        return _tag(y, layer_name, reference)


def output_scale_bias(node: ir.Node, scale: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The op's per-output scale and bias: a Conv's bias, or a Gemm's alpha and beta·C folded in."""
    if node.op_type == "Conv":
        bias = constant_value(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        return scale, np.zeros(m, np.float32) if bias is None else bias
    bias = np.zeros(m, np.float32)
    if node.op_type == "Gemm":
        scale = (scale * np.float32(float_attr(node, "alpha", 1.0))).astype(np.float32)
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            c = constant_value(node.inputs[2]).reshape(-1) * np.float32(float_attr(node, "beta", 1.0))
            bias = np.broadcast_to(c, (m,))
    return scale, bias
