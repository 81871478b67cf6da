"""Recognise quantizer nodes and read their declared parameters (evaluation lives in analysis,
which may use the numpy twins in qcompile.ops)."""

from __future__ import annotations

import onnx_ir as ir

from qcompile.base.domains import QCOMPILE_DOMAIN


def is_pow2quant(node: ir.Node | None) -> bool:
    return node is not None and node.domain == QCOMPILE_DOMAIN and node.op_type == "Pow2Quant"


def pow2quant_thresholds(node: ir.Node) -> list[float]:
    attr = node.attributes.get("thresholds")
    return [float(t) for t in attr.as_floats()] if attr is not None else []
