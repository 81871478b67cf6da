"""The float chain between two lowered layers, as the threshold-folding passes find it: walked back
from the next layer's pack through values nobody else reads (packed_activations for XNOR,
multibit_thresholds for bit-serial layers)."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from qcompile.base.ir_readers import int_attr, ints_attr, str_attr


def single_use(value: ir.Value) -> bool:
    return len(value.uses()) == 1 and not value.is_graph_output()


def walk_back(pack: ir.Node, is_step: Callable[[ir.Node], bool]) -> tuple[ir.Node | None, list[ir.Node]] | str:
    """From `pack`'s input back while the producer is_step: (the first producer that is not a
    step, None at a graph input; the steps, nearest the pack first), or why a value on the way
    has other users (folding it would change what they read)."""
    value, steps = pack.inputs[0], []
    while True:
        if not single_use(value):
            return f"{value.name} has other users"
        node = value.producer()
        if node is None or not is_step(node):
            return node, steps
        steps.append(node)
        value = node.inputs[0]


def maxpool_refusal(node: ir.Node) -> str:
    """'' for a MaxPool the packed pooling ops run (2-D, floor mode, explicit pads, no indices
    read), else why not."""
    if len(node.outputs) > 1 and node.outputs[1].uses():
        return "MaxPool indices are used"
    if int_attr(node, "ceil_mode", 0) or int_attr(node, "storage_order", 0):
        return "MaxPool ceil_mode/storage_order is not supported"
    if str_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", ""):
        return "MaxPool auto_pad is not supported"
    if len(ints_attr(node, "kernel_shape", [])) != 2:
        return "MaxPool is not 2-D"
    return ""


def maxpool_window(node: ir.Node) -> dict[str, list[int]]:
    """A MaxPool's window as the qcompile pooling ops take it (kernel_shape, strides, pads,
    dilations, ONNX's defaults filled in)."""
    return {"kernel_shape": ints_attr(node, "kernel_shape", []), "strides": ints_attr(node, "strides", [1, 1]),
            "pads": ints_attr(node, "pads", [0, 0, 0, 0]), "dilations": ints_attr(node, "dilations", [1, 1])}
