"""An int8 conv runs on qcompile's direct integer kernel instead of onnxruntime's ConvInteger.

Rewrite:  ConvInteger(x, w, x_zp, w_zp; not depthwise, not 1x1)
       -> qcompile::DirectConvInteger(x, w, x_zp, w_zp; the same attributes)
and, when its sums go only to a Requantize (uniform codes along the channels; its MaxPool and
power-of-two thresholds included), both become one
          qcompile::DirectConvRequantize(x, w, x_zp, w_zp, scale, bias, y_scale, y_zp)
which writes the next layer's codes without the int32 tensor.

Why it is exact: the op computes ConvInteger's sums, sum (x - x_zp)(w - w_zp) over the window with
x_zp in the padding, in int32 (custom_ops/SPEC.md; tests compare the two on every type pair, pad,
dilation and group). It takes weights with w - w_zp in int8, which every lowered layer of 8 bits
or fewer has; others keep ConvInteger. Why: onnxruntime's ConvInteger copies the input into an
im2col matrix and packs both GEMM operands on every call; the direct kernel reads the input in
place (a tap is a shifted run of the padded plane, or of one of its phase planes at a stride) with
AMX or AVX-512 VNNI. It is used only where
one of those runs (qcompile.runtime.direct_conv_is_fast): its AVX2 kernel measured 0.34-1.05x
onnxruntime's own int8 conv on this project's machine (tools/bench_direct_conv.py).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QCOMPILE_DOMAIN, QCOMPILE_OPSET
from qcompile.base.ir_readers import const_array
from qcompile.passes.depthwise_integer import fuse_requantize, is_depthwise_conv_integer
from qcompile.passes.rewrite import NamedPass


def is_direct_conv_integer(node: ir.Node) -> bool:
    """A 2-D ConvInteger with a window of more than one tap (not depthwise), constant weights and
    zero points, w - w_zp in int8."""
    if node.op_type != "ConvInteger" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 4:
        return False
    if any(v is None for v in node.inputs) or is_depthwise_conv_integer(node):
        return False
    w, xzp, wzp = (const_array(node.inputs[i]) for i in (1, 2, 3))
    if w is None or xzp is None or wzp is None or w.ndim != 4 or xzp.size != 1 or wzp.size != 1:
        return False
    pad = node.attributes.get("auto_pad")
    if pad is not None and pad.as_string() not in ("", "NOTSET"):
        return False
    # a 1x1 conv is a plain GEMM for onnxruntime too (no im2col): the direct kernel measured
    # 0.66-0.87x its ConvInteger there (tools/bench_direct_conv.py), so it stays
    if w.shape[2] * w.shape[3] == 1:
        return False
    shifted = w.astype(np.int32) - int(wzp.reshape(-1)[0])
    return "kernel_shape" in node.attributes and bool(shifted.min() >= -128 and shifted.max() <= 127)


class DirectIntegerPass(NamedPass, ir.passes.InPlacePass):
    """ConvInteger nodes (not depthwise) become qcompile::DirectConvInteger (same inputs and attributes),
    fused with the Requantize after it where there is one; nothing when not `enabled`."""

    def __init__(self, enabled: bool):
        super().__init__()
        self.enabled = enabled

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        if not self.enabled:
            return ir.passes.PassResult(model, modified)
        graph = model.graph
        for node in list(graph):
            if not is_direct_conv_integer(node):
                continue
            node.op_type, node.domain = "DirectConvInteger", QCOMPILE_DOMAIN
            modified = True
            fuse_requantize(graph, node, "DirectConvRequantize", pooled=True)
        if modified:  # an int8-only model has no other qcompile op: a cleanup may have dropped the import
            model.opset_imports.setdefault(QCOMPILE_DOMAIN, QCOMPILE_OPSET)
        return ir.passes.PassResult(model, modified)
