"""Small QONNX graphs for pass and CLI tests."""

from __future__ import annotations

import numpy as np
import onnx

from qcompile.onnx_builder import GraphBuilder


def binary_conv_model(
    cin: int = 64, cout: int = 64, *, bn: bool = True, pads=(1, 1, 1, 1), group: int = 1, bias: bool = False,
    act_scale: float = 1.0, seed: int = 0, hw=(8, 8),
) -> onnx.ModelProto:
    """x -> BipolarQuant -> Conv(binary W) [-> BN] -> y."""
    g = GraphBuilder(seed)
    xq = g.bipolar("x", act_scale)
    ins = [xq, g.binary_weight((cout, cin // group, 3, 3))]
    if bias:
        ins.append(g.const(g.rng.standard_normal(cout).astype(np.float32), "bias"))
    y = g.op("Conv", ins, name="conv", kernel_shape=[3, 3], pads=list(pads), group=group)
    if bn:
        y = g.bn(y, cout)
    return g.model({"x": ["N", cin, *hw]}, [y])


def binary_dense_model(k: int = 130, m: int = 10, *, op: str = "Gemm", seed: int = 0) -> onnx.ModelProto:
    """x -> BipolarQuant -> Gemm / MatMul (binary W) -> y."""
    g = GraphBuilder(seed)
    xq = g.bipolar("x")
    if op == "Gemm":
        w = g.binary_weight((m, k))
        y = g.op("Gemm", [xq, w, g.const(g.rng.standard_normal(m).astype(np.float32), "bias")], name="fc", transB=1)
    else:
        wt = g.op("Transpose", [g.binary_weight((m, k))], perm=[1, 0])
        y = g.op("MatMul", [xq, wt], name="fc")
    return g.model({"x": [4, k]}, [y])
