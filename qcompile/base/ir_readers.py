"""Read constants and attributes out of an onnx-ir graph (no qcompile semantics here)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QONNX_DOMAIN


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of an initializer or Constant-node output, else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain == "":
        attr = producer.attributes.get("value")
        if attr is not None:
            return attr.as_tensor().numpy()
    return None


def is_qonnx(node: ir.Node | None, *op_types: str) -> bool:
    return node is not None and node.domain == QONNX_DOMAIN and node.op_type in op_types


def ints_attr(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else list(default)


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return int(attr.as_int()) if attr is not None else default


def float_attr(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return float(attr.as_float()) if attr is not None else default


def str_attr(node: ir.Node, name: str, default: str) -> str:
    attr = node.attributes.get(name)
    return attr.as_string() if attr is not None else default


def node_label(node: ir.Node) -> str:
    """How a user finds a node: its name, else its op and first output."""
    out = node.outputs[0].name if node.outputs else "?"
    return node.name or f"{node.op_type}->{out}"
