"""Int8 convs (not depthwise) compile to qcompile::DirectConvInteger / DirectConvRequantize where the
direct kernel is fast (QCOMPILE_DIRECT_CONV=1 forces it here): an int8 layer feeding another
fuses with its Requantize (a MaxPool between the two included), a float reader keeps the int32 sums; the compiled model
equals the pure-Python evaluator bit for bit and passes parity; what the rewrite leaves alone
(depthwise, 1x1, weights past int8, auto_pad, no zero points); the switch and its clean error."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from graphs import GraphBuilder
from helpers import equals_the_evaluator, random_inputs

from qcompile import runtime
from qcompile.compiler import compile as compile_model
from qcompile.errors import QCompileError
from qcompile.passes.direct_integer import DirectIntegerPass, is_direct_conv_integer


def _quant(g, x, scale, bits=4, signed=0):
    ins = [x, g.const(np.float32(scale), "s"), g.const(np.float32(0.0), "z"), g.const(np.float32(bits), "b")]
    return g.op("Quant", ins, domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND")


def _three_convs(pool: bool):
    """Quant -> conv1 (3x3, pad 1) -> BN -> Relu -> Quant -> conv2 (valid 3x3, strides 2 x 1) ->
    Quant (signed) [-> MaxPool] -> conv3 (3x3, pad 1) -> float output: conv1 feeds codes to conv2 (fused), conv2 (pooled or
    not) to conv3, whose sums a float reader takes."""
    g = GraphBuilder(31)
    w = [g.quant(g.const(g.rng.standard_normal(s).astype(np.float32)), 0.2, 4)
         for s in ((12, 5, 3, 3), (9, 12, 3, 3), (6, 9, 3, 3))]
    y = g.op("Relu", [g.bn(g.op("Conv", [_quant(g, "x", 0.3), w[0]], name="conv1", kernel_shape=[3, 3],
                                 pads=[1, 1, 1, 1]), 12)])
    z = g.op("Conv", [_quant(g, y, 0.4), w[1]], name="conv2", kernel_shape=[3, 3], strides=[2, 1])
    q = _quant(g, z, 0.5, signed=1)
    if pool:  # CNV's order: the quantizer, then the pool
        q = g.op("MaxPool", [q], kernel_shape=[2, 2], strides=[2, 2])
    out = g.op("Conv", [q, w[2]], name="conv3", kernel_shape=[3, 3], pads=[1] * 4)
    return g.model({"x": [2, 5, 10, 10]}, [out])


@pytest.mark.parametrize("pool", [False, True])
def test_int8_convs_run_on_the_direct_kernel(monkeypatch, pool):
    monkeypatch.setenv("QCOMPILE_DIRECT_CONV", "1")
    ref = _three_convs(pool)
    result = compile_model(ref, impl=["int8"], parity_inputs=random_inputs(ref))
    assert result.parity.passed
    ops = [n.op_type for n in result.model.graph.node]
    assert "ConvInteger" not in ops
    # conv1 and conv2 (its MaxPool taken in) write the next layer's codes; conv3's sums go to a float reader
    assert ops.count("DirectConvRequantize") == 2 and ops.count("DirectConvInteger") == 1
    assert "Requantize" not in ops and "MaxPool" not in ops
    pooled = next(n for n in result.model.graph.node if n.name == "conv2")
    assert {a.name for a in pooled.attribute} >= ({"pool_kernel_shape", "pool_strides"} if pool else set())
    rows = {r.name: r for r in result.rows}
    assert rows["conv1"].impl == "int8" and rows["conv1"].op_after.startswith("DirectConvRequantize")
    assert rows["conv1"].variant == runtime.kernel_variants("DirectConvRequantize")[0]
    equals_the_evaluator(result.model, random_inputs(ref, seed=3))


def test_off_keeps_onnxruntime_conv_integer(monkeypatch):
    monkeypatch.setenv("QCOMPILE_DIRECT_CONV", "0")
    result = compile_model(_three_convs(False), impl=["int8"], check_parity=False)
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.count("ConvInteger") == 3 and not any(op.startswith("DirectConv") for op in ops)


def test_auto_follows_the_kernel_this_cpu_runs(monkeypatch):
    monkeypatch.delenv("QCOMPILE_DIRECT_CONV", raising=False)
    fast = runtime.selected_kernel("DirectConvInteger") in runtime.DIRECT_CONV_FAST
    assert runtime.direct_conv_is_fast() == fast
    monkeypatch.setenv("QCOMPILE_DIRECT_KERNEL", "portable")  # the override names the slow kernel
    assert not runtime.direct_conv_is_fast()


def test_a_bad_switch_value_is_a_clean_error(monkeypatch):
    monkeypatch.setenv("QCOMPILE_DIRECT_CONV", "yes")
    with pytest.raises(QCompileError, match="QCOMPILE_DIRECT_CONV='yes': expected 'auto', '1' or '0'"):
        compile_model(_three_convs(False), impl=["int8"], check_parity=False)


def test_the_pass_takes_convs_with_int8_weights_that_are_not_depthwise():
    h = onnx.helper
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in {
        "w": np.full((4, 4, 3, 3), 3, np.uint8), "w_dw": np.zeros((4, 1, 3, 3), np.uint8),
        "w_big": np.full((4, 4, 3, 3), 250, np.uint8), "w_1x1": np.ones((4, 4, 1, 1), np.uint8), "zx": np.zeros(1, np.int8), "zw": np.ones(1, np.uint8)}.items()]
    conv = dict(kernel_shape=[3, 3], pads=[1] * 4)
    nodes = [h.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["a"], **conv),
             h.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["b"], strides=[2, 2], **conv),
             h.make_node("ConvInteger", ["x", "w_dw", "zx", "zw"], ["c"], group=4, **conv),
             h.make_node("ConvInteger", ["x", "w_big", "zx", "zw"], ["d"], **conv),  # 250 - 1 > 127
             h.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["e"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
             h.make_node("ConvInteger", ["x", "w"], ["f"], **conv),  # no zero points
             h.make_node("ConvInteger", ["x", "w_1x1", "zx", "zw"], ["g"], kernel_shape=[1, 1])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.INT8, [1, 4, 5, 5])],
                         [h.make_tensor_value_info(n, onnx.TensorProto.INT32, None) for n in "abcdefg"], inits)
    model = ir.serde.deserialize_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    assert [is_direct_conv_integer(n) for n in model.graph] == [True, True] + [False] * 5
    DirectIntegerPass(enabled=False)(model)
    assert [n.op_type for n in model.graph].count("ConvInteger") == 7
    DirectIntegerPass(enabled=True)(model)
    assert [n.op_type for n in model.graph] == ["DirectConvInteger"] * 2 + ["ConvInteger"] * 5
    assert model.opset_imports["qcompile"] == 1
