"""Carry a quantizer's grid through ops that keep values on it, so the next layer sees its input quantized.

    Conv(MaxPool(Quant(x)))  ->  Conv(Quant(MaxPool(Quant(x))))      (the same Quant parameters)

Why it is exact: the max of values on a grid is one of them, and so is a Relu (when 0 is on the
grid), a zero Pad (likewise), a Concat of equal grids and any reshuffle (Identity, Reshape,
Flatten, Transpose, Squeeze, Unsqueeze). Re-quantizing a value v = (q − z)·s on the grid gives q
back (v/s + z is within a few ulps of the integer q, which ROUND restores; the clamp does
nothing), so the inserted quantizer's output is v, bit for bit. A Trunc (Brevitas's
TruncAvgPool2d) is a grid source too: its output (y − z/t)·s_out is on the grid of a Quant with
scale s_out, zero point z/t and the Trunc's output bit width and signedness.

The quantizer is inserted only in front of a Conv / Gemm / MatMul (their data input), where the
lowering rules look for it; what lies between keeps running as it did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from qcompile.analysis import LAYER_OPS
from qcompile.base.domains import QONNX_DOMAIN, QONNX_QUANT_OPS
from qcompile.base.ir_readers import const_array, int_attr, is_qonnx, str_attr
from qcompile.ops import qonnx as qref
from qcompile.ops.trunc import trunc_scale
from qcompile.passes.rewrite import NamedPass

# ops whose output holds only values of their (first) input, in another arrangement
REARRANGING = ("Identity", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class Grid:
    """A quantizer's value set: BipolarQuant {±scale}, or Quant's {(q − zeropt)·scale}."""

    op_type: str  # "BipolarQuant" or "Quant"
    scale: float
    zeropt: float = 0.0
    bits: float = 1.0
    signed: int = 1
    narrow: int = 0

    def has_zero(self) -> bool:
        if self.op_type == "BipolarQuant":
            return False
        qmin, qmax = qref.int_range(self.bits, self.signed, self.narrow)
        return self.zeropt == int(self.zeropt) and qmin <= self.zeropt <= qmax


def _scalar(value: ir.Value | None) -> float | None:
    arr = const_array(value)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


def source_grid(node: ir.Node | None) -> Grid | None:
    """The grid a quantizer (or Trunc) writes, when its parameters are positive scalar constants."""
    if is_qonnx(node, "BipolarQuant"):
        s = _scalar(node.inputs[1])
        return Grid("BipolarQuant", s) if s is not None and s > 0 else None
    if is_qonnx(node, *QONNX_QUANT_OPS):
        s, z, b = (_scalar(v) for v in node.inputs[1:4])
        if s is None or z is None or b is None or not s > 0:
            return None
        return Grid("Quant", s, z, b, int_attr(node, "signed", 1), int_attr(node, "narrow", 0))
    if is_qonnx(node, "Trunc") and len(node.inputs) == 6:
        s, z, so, b = (_scalar(node.inputs[i]) for i in (1, 2, 4, 5))
        if s is None or z is None or so is None or b is None or not (s > 0 and so > 0):
            return None
        t = float(trunc_scale(np.float32(s), np.float32(so)))
        zp = float(np.float32(z) / np.float32(t))
        return Grid("Quant", so, zp, b, int_attr(node, "signed", 1), int_attr(node, "narrow", 0))
    return None


def _pad_is_zero(node: ir.Node) -> bool:
    if str_attr(node, "mode", "constant") != "constant":
        return False
    value = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    return value is None or (value.size == 1 and float(value.reshape(-1)[0]) == 0.0)


def carried_grid(node: ir.Node, grids: dict[ir.Value, Grid]) -> Grid | None:
    """The grid of `node`'s output, when the op keeps its input's grid; else None."""
    if node.domain != "":
        return None
    first = grids.get(node.inputs[0]) if node.inputs and node.inputs[0] is not None else None
    op = node.op_type
    if op in REARRANGING or op == "MaxPool":  # a max is one of the pooled values
        return first
    if op in ("Relu", "Pad") and first is not None and first.has_zero():
        return first if op == "Relu" or _pad_is_zero(node) else None
    if op == "Concat":
        inputs = [grids.get(v) for v in node.inputs]
        return inputs[0] if inputs and inputs[0] is not None and all(g == inputs[0] for g in inputs) else None
    return None


def _quantizer(grid: Grid, x: ir.Value, name: str, graph: ir.Graph) -> ir.Node:
    def const(v: float, suffix: str) -> ir.Value:
        c = ir.Value(name=f"{name}/{suffix}", const_value=ir.tensor(np.array(v, np.float32), name=f"{name}/{suffix}"))
        c.shape, c.type = ir.Shape([]), ir.TensorType(ir.DataType.FLOAT)
        graph.register_initializer(c)
        return c

    if grid.op_type == "BipolarQuant":
        return ir.node("BipolarQuant", [x, const(grid.scale, "scale")], domain=QONNX_DOMAIN, name=name)
    inputs = [x, const(grid.scale, "scale"), const(grid.zeropt, "zeropt"), const(grid.bits, "bitwidth")]
    # ROUND, whatever the source rounds with: a value on the grid is within ulps of its code
    attrs = dict(signed=grid.signed, narrow=grid.narrow, rounding_mode="ROUND")
    return ir.node("Quant", inputs, attributes=attrs, domain=QONNX_DOMAIN, name=name)


class PropagateGridPass(NamedPass, ir.passes.InPlacePass):
    """Insert the grid's quantizer in front of each layer whose input is on a quantizer's grid but is
    not a quantizer's output (a MaxPool, Relu, Pad, Concat or reshuffle lies between)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        grids: dict[ir.Value, Grid] = {}
        inserted: dict[ir.Value, ir.Value] = {}  # one quantizer per value, whatever reads it
        modified = False
        for node in list(graph):
            grid = source_grid(node)
            if grid is not None:
                grids[node.outputs[0]] = grid
                continue
            carried = carried_grid(node, grids)
            if carried is not None:
                grids[node.outputs[0]] = carried
                continue
            if node.domain != "" or node.op_type not in LAYER_OPS:
                continue
            x = node.inputs[0]
            grid = grids.get(x)
            if grid is None or source_grid(x.producer()) is not None:
                continue
            if x not in inserted:
                quant = _quantizer(grid, x, f"{x.name}/grid_quant", graph)
                graph.insert_before(node, quant)
                quant.outputs[0].name = f"{x.name}__grid"
                inserted[x] = quant.outputs[0]
            node.replace_input_with(0, inserted[x])
            modified = True
        return ir.passes.PassResult(model, modified)
