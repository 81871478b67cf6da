"""Fold quantizers whose inputs are all constant (weight quantizers: QONNX, Pow2Quant) into initializers.

After this pass a quantized conv's weight is a plain constant holding the exact quantized values
(e.g. +-alpha per channel for binary weights), which is what the lowering rules inspect.
"""

from __future__ import annotations

import onnx_ir as ir

from qcompile.analysis import evaluate_quantizer
from qcompile.passes.rewrite import NamedPass


class FoldWeightQuantizersPass(NamedPass, ir.passes.InPlacePass):
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
