"""Fold quantizers whose inputs are all constant (weight quantizers: QONNX, Pow2Quant) into initializers.

After this pass a quantized conv's weight is a plain constant holding the exact quantized values
(e.g. +-alpha per channel for binary weights), which is what the lowering rules inspect.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from qcompile.ops import qonnx as qref
from qcompile.ops.shift import pow2_quant
from qcompile.passes._consts import (
    QCOMPILE_DOMAIN,
    QONNX_QUANT_OPS,
    const_array,
    int_attr,
    is_qonnx,
    str_attr,
)


def is_pow2quant(node: ir.Node | None) -> bool:
    return node is not None and node.domain == QCOMPILE_DOMAIN and node.op_type == "Pow2Quant"


def pow2quant_thresholds(node: ir.Node) -> list[float]:
    attr = node.attributes.get("thresholds")
    return [float(t) for t in attr.as_floats()] if attr is not None else []


def evaluate_quantizer(node: ir.Node) -> np.ndarray | None:
    """The output of a BipolarQuant/Quant/IntQuant/Pow2Quant node whose inputs are constant, else None."""
    if not (is_qonnx(node, "BipolarQuant", *QONNX_QUANT_OPS) or is_pow2quant(node)):
        return None
    arrays = [const_array(v) for v in node.inputs]
    if any(a is None for a in arrays):
        return None
    if is_pow2quant(node):
        thresholds = pow2quant_thresholds(node)
        return pow2_quant(arrays[0], thresholds) if thresholds else None
    if node.op_type == "BipolarQuant":
        return qref.bipolar_quant(*arrays)
    x, scale, zeropt, bitwidth = arrays
    return qref.quant(
        x,
        scale,
        zeropt,
        bitwidth,
        signed=int_attr(node, "signed", 1),
        narrow=int_attr(node, "narrow", 0),
        rounding_mode=str_attr(node, "rounding_mode", "ROUND"),
    )


class FoldWeightQuantizersPass(ir.passes.InPlacePass):
    """Replace each constant-input QONNX quantizer by an initializer holding its output."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            folded = evaluate_quantizer(node)
            if folded is None:
                continue
            out = node.outputs[0]
            name = out.name or f"{node.name}_folded"
            const = ir.Value(name=f"{name}__q", const_value=ir.tensor(folded, name=f"{name}__q"))
            const.shape = ir.Shape(folded.shape)
            const.type = ir.TensorType(ir.DataType.FLOAT)
            graph.register_initializer(const)
            out.replace_all_uses_with(const, replace_graph_outputs=True)
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified)
