"""Read constants and attributes out of an onnx-ir graph (no qcompile semantics here)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QONNX_DOMAIN
from qcompile.errors import QCompileError


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


def _attr(node: ir.Node, name: str, kind: ir.AttributeType, what: str):
    """node's attribute `name` if it is of type `kind`; None if absent; a clean error naming the
    node otherwise (a model can carry any type under any name: onnx checks no custom op's)."""
    attr = node.attributes.get(name)
    if attr is not None and attr.type != kind:
        raise QCompileError(f"node {node_label(node)!r} ({node.op_type}): attribute {name!r} must be {what}, "
                            f"got type {attr.type.name}")
    return attr


def ints_attr(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = _attr(node, name, ir.AttributeType.INTS, "a list of ints")
    return list(attr.as_ints()) if attr is not None else list(default)


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = _attr(node, name, ir.AttributeType.INT, "an int")
    return int(attr.as_int()) if attr is not None else default


def float_attr(node: ir.Node, name: str, default: float) -> float:
    attr = _attr(node, name, ir.AttributeType.FLOAT, "a float")
    return float(attr.as_float()) if attr is not None else default


def str_attr(node: ir.Node, name: str, default: str) -> str:
    attr = _attr(node, name, ir.AttributeType.STRING, "a string")
    return attr.as_string() if attr is not None else default


def node_label(node: ir.Node) -> str:
    """How a user finds a node: its name, else its op and first output."""
    out = node.outputs[0].name if node.outputs else "?"
    return node.name or f"{node.op_type}->{out}"
