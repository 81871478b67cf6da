"""A chain of dense bit-serial layers becomes one qcompile::BitSerialMlp node.

  QuantizePack(x) -> BitSerialGemmThreshold -> ... -> BitSerialGemmThreshold -> BitSerialGemm
      => BitSerialMlp(x, W concatenated, thresholds concatenated, directions concatenated, scale, bias)

(and a Reshape / Flatten in front that only flattens x to [N, K]: the op reads [N, ...] so).

Why: in a small MLP (Brevitas's tfc / sfc, a classifier head) each layer's kernels take less time
than onnxruntime spends dispatching a custom-op node (about a microsecond: its kernel context,
the output allocation), so five nodes cost more than the float twin's fused Gemms. The fused op
runs the same kernels and epilogues as the nodes it replaces (custom_ops/SPEC.md), so its output
is bit for bit theirs. Runs after the layer table is made (compiler._lower): each layer keeps
its row; the node carries the layers' names in `qcompile.fused_layers`.

Only whole chains of constants fuse: every W, threshold table, direction, scale and bias an
initializer, each intermediate read by the next layer alone, no `kernel` attribute on the
QuantizePack, one `kernel` value (or none) on the layers.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import const_array
from qcompile.base.metadata import LAYER_KEY, REF_KEY
from qcompile.passes.rewrite import NamedPass

FUSED_LAYERS_KEY = "qcompile.fused_layers"
_QUANT_ATTRS = ("scale", "zero_point", "bitwidth", "signed", "narrow", "rounding_mode", "pre_scale", "pre_bias")


def _is(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.domain == QCOMPILE_DOMAIN and node.op_type == op_type


def _next(value: ir.Value) -> ir.Node | None:
    """The node that alone reads value (not a graph output), else None."""
    uses = value.uses()
    if len(uses) != 1 or value.is_graph_output() or uses[0].idx != 0:
        return None
    return uses[0].node


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else default


def _int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return int(attr.as_int()) if attr is not None else default


def chain_from(pack: ir.Node) -> list[ir.Node] | None:
    """The layers after QuantizePack `pack` that fuse with it (BitSerialGemmThreshold*, then
    BitSerialGemm), else None."""
    if "kernel" in pack.attributes or _int(pack, "group", 1) != 1:
        return None
    layers, node = [], _next(pack.outputs[0])
    while _is(node, "BitSerialGemmThreshold"):
        layers.append(node)
        node = _next(node.outputs[0])
    if not _is(node, "BitSerialGemm"):
        return None
    layers.append(node)
    kernels = {layer.attributes["kernel"].as_string() for layer in layers if "kernel" in layer.attributes}
    if len(kernels) > 1 or any(const_array(v) is None for layer in layers for v in layer.inputs[1:]):
        return None
    return layers


def _flatten_input(pack: ir.Node, k: int) -> ir.Value:
    """The value before a Reshape / Flatten that only flattens the pack's input to [N, k] (BitSerialMlp
    reads any [N, ...] so), else the pack's input itself."""
    x = pack.inputs[0]
    node = x.producer()
    if node is None or node.domain not in ("", "ai.onnx") or len(x.uses()) != 1 or x.is_graph_output():
        return x
    if node.op_type == "Flatten" and _int(node, "axis", 1) == 1:
        return node.inputs[0]
    if node.op_type == "Reshape" and _int(node, "allowzero", 0) == 0:
        shape = const_array(node.inputs[1])
        src = node.inputs[0].shape
        batch1 = src is not None and len(src) > 0 and src[0] == 1
        if shape is not None and shape.size == 2:
            a, b = int(shape[0]), int(shape[1])
            keeps_batch = a == 0 or (a == 1 and batch1) or (a == -1 and b == k)
            if keeps_batch and (b == k or (b == -1 and a != -1)):
                return node.inputs[0]
    return x


def fuse(graph: ir.Graph, pack: ir.Node, layers: list[ir.Node]) -> ir.Node:
    """Replace pack and layers by one BitSerialMlp node (inserted where the last layer was)."""
    last = layers[-1]
    act, act_n, wgt, wgt_n, offsets, levels, bases = [], [], [], [], [], [], []
    ws, ts, ds = [], [], []
    features = [_int(layers[0], "in_features", 0)]
    for layer in layers:
        a, q = _ints(layer, "act_coeffs", []), _ints(layer, "weight_coeffs", [])
        act += a
        wgt += q
        act_n.append(len(a))
        wgt_n.append(len(q))
        offsets.append(_int(layer, "weight_offset", 0))
        w = const_array(layer.inputs[1])
        features.append(int(w.shape[0]))
        ws.append(w.reshape(-1))
        if layer is not last:
            t = const_array(layer.inputs[2])
            levels.append(int(t.shape[1]))
            bases.append(_int(layer, "out_base", 0))
            ts.append(t.reshape(-1).astype(np.int32))
            ds.append(const_array(layer.inputs[3]).reshape(-1).astype(np.int32))
    name = last.name or "mlp"
    attrs = [pack.attributes[k] for k in _QUANT_ATTRS if k in pack.attributes]
    attrs += [ir.AttrInt64("planes", act_n[0]), ir.AttrInt64s("features", features),
              ir.AttrInt64s("act_coeffs", act), ir.AttrInt64s("act_planes", act_n),
              ir.AttrInt64s("weight_coeffs", wgt), ir.AttrInt64s("weight_planes", wgt_n),
              ir.AttrInt64s("weight_offset", offsets), ir.AttrInt64s("levels", levels),
              ir.AttrInt64s("out_base", bases)]
    kernel = next((layer.attributes["kernel"] for layer in layers if "kernel" in layer.attributes), None)
    if kernel is not None:  # one value on all the layers that have one (chain_from)
        attrs.append(kernel)

    def init(array: np.ndarray, suffix: str) -> ir.Value:
        value = ir.Value(name=f"{name}/mlp_{suffix}", const_value=ir.tensor(array))
        graph.register_initializer(value)
        return value

    x = _flatten_input(pack, features[0])
    inputs = [x, init(np.concatenate(ws), "w"),
              init(np.concatenate(ts) if ts else np.zeros(0, np.int32), "thresholds"),
              init(np.concatenate(ds) if ds else np.zeros(0, np.int32), "direction"),
              last.inputs[2], last.inputs[3]]
    node = ir.Node(QCOMPILE_DOMAIN, "BitSerialMlp", inputs, attributes=attrs, name=name)
    layer_names = [layer.metadata_props.get(LAYER_KEY, layer.name) for layer in layers]
    node.metadata_props[LAYER_KEY] = layer_names[-1]
    node.metadata_props[FUSED_LAYERS_KEY] = ",".join(layer_names)
    if REF_KEY in last.metadata_props:
        node.metadata_props[REF_KEY] = last.metadata_props[REF_KEY]
    graph.insert_before(last, node)
    out = last.outputs[0]
    out_name = out.name
    node.outputs[0].type, node.outputs[0].shape = out.type, out.shape
    ir.convenience.replace_all_uses_with(out, node.outputs[0], replace_graph_outputs=True)
    flatten = [pack.inputs[0].producer()] if x is not pack.inputs[0] else []
    graph.remove([pack, *layers], safe=True)
    if flatten:
        graph.remove(flatten, safe=True)
    node.outputs[0].name = out_name  # the graph keeps its output name
    return node


class FuseDenseChainPass(NamedPass, ir.passes.InPlacePass):
    """Every QuantizePack -> dense bit-serial chain becomes one BitSerialMlp node."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for pack in [n for n in model.graph if _is(n, "QuantizePack")]:
            layers = chain_from(pack)
            if layers is not None:
                fuse(model.graph, pack, layers)
                modified = True
        return ir.passes.PassResult(model, modified)
