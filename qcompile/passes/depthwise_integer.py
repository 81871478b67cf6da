"""A depthwise int8 layer runs on qcompile's own integer kernel instead of onnxruntime's ConvInteger.

Rewrite:  ConvInteger(x, w, x_zp, w_zp; group = C, w [C, 1, KH, KW])
       -> qcompile::DepthwiseConvInteger(x, w, x_zp, w_zp; the same attributes)
and, when its sums go only to a Requantize (no pool, uniform codes), both become one
          qcompile::DepthwiseConvRequantize(x, w, x_zp, w_zp, scale, bias, y_scale, y_zp)
which writes the next layer's codes without the int32 tensor (the same codes: the same kernel
sums, Requantize's arithmetic).

Why it is exact: the op computes ConvInteger's sums, sum (x - x_zp)(w - w_zp) over the window with
x_zp in the padding, in int32 (custom_ops/SPEC.md; tests compare the two on every type pair,
stride, pad and dilation). Why: onnxruntime runs a depthwise ConvInteger as one small GEMM per
channel, 3-8x slower than its float depthwise conv here; that kept MobileNet's depthwise layers
float, each behind a DequantizeLinear, layout reorders, a QuantizeLinear and a Clip.
"""

from __future__ import annotations

import onnx_ir as ir

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import const_array
from qcompile.passes.rewrite import NamedPass


def is_depthwise_conv_integer(node: ir.Node) -> bool:
    """A 2-D ConvInteger with one input channel per group and a group per output channel."""
    if node.op_type != "ConvInteger" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 4:
        return False
    w = const_array(node.inputs[1]) if node.inputs[1] is not None else None
    group = node.attributes.get("group")
    pad = node.attributes.get("auto_pad")
    if w is None or w.ndim != 4 or w.shape[1] != 1 or group is None or group.as_int() != w.shape[0]:
        return False
    if pad is not None and pad.as_string() not in ("", "NOTSET"):
        return False
    return all(node.inputs[i] is not None for i in (2, 3)) and "kernel_shape" in node.attributes


def fusable_requantize(node: ir.Node, pooled: bool = False) -> ir.Node | None:
    """The Requantize that alone reads a conv's int32 sums, if its codes are uniform along the
    channel axis and, unless `pooled` (DirectConvRequantize takes those too), it has no pool and
    no thresholds (what DepthwiseConvRequantize computes)."""
    out = node.outputs[0]
    uses = list(out.uses())
    if len(uses) != 1 or out.is_graph_output():
        return None
    rq = uses[0].node
    if rq.op_type != "Requantize" or rq.domain != QCOMPILE_DOMAIN or uses[0].idx != 0:
        return None
    if rq.outputs[0].is_graph_output():
        return None
    if not pooled and ("kernel_shape" in rq.attributes or "thresholds" in rq.attributes):
        return None
    axis = rq.attributes.get("axis")
    return rq if axis is None or axis.as_int() in (1, -3) else None


class DepthwiseIntegerPass(NamedPass, ir.passes.InPlacePass):
    """Depthwise ConvInteger nodes become qcompile::DepthwiseConvInteger (same inputs and
    attributes), fused with the Requantize after it where there is one."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        graph = model.graph
        for node in list(graph):
            if not is_depthwise_conv_integer(node):
                continue
            node.op_type, node.domain = "DepthwiseConvInteger", QCOMPILE_DOMAIN
            modified = True
            fuse_requantize(graph, node, "DepthwiseConvRequantize")
        return ir.passes.PassResult(model, modified)


# Requantize's pool attributes, as DirectConvRequantize names them beside its conv's own
POOL_ATTRS = {"kernel_shape": "pool_kernel_shape", "strides": "pool_strides", "pads": "pool_pads",
              "dilations": "pool_dilations"}


def fuse_requantize(graph: ir.Graph, node: ir.Node, fused_op: str, pooled: bool = False) -> bool:
    """node (a qcompile conv writing int32 sums) and the Requantize that alone reads them become
    one `fused_op` node (node's inputs, then Requantize's parameters; with `pooled`, its pool as
    pool_* attributes and its thresholds too); False: no such Requantize."""
    rq = fusable_requantize(node, pooled)
    if rq is None:
        return False
    attrs = [a for a in node.attributes.values() if a.name != "kernel"]
    attrs += [rq.attributes[k] for k in ("lo", "hi", "thresholds") if k in rq.attributes]
    attrs += [ir.Attr(POOL_ATTRS[k], a.type, a.value) for k, a in rq.attributes.items() if k in POOL_ATTRS]
    fused = ir.Node(QCOMPILE_DOMAIN, fused_op, [*node.inputs, *rq.inputs[1:]], attributes=attrs, name=node.name)
    fused.metadata_props.update(node.metadata_props)
    graph.insert_before(rq, fused)
    ir.convenience.replace_all_uses_with(rq.outputs[0], fused.outputs[0])
    graph.remove([rq, node], safe=True)
    return True
