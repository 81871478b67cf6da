"""Multi-bit layers: Quant activations x Quant / BipolarQuant weights -> QuantizePack + BitSerial ops.

Structure after the pipeline, parity of the compiled graph with the reference in both executors
(pure Python and onnxruntime with the C++ library), and must-not-fire cases. Integer parts are
checked exactly with scale-1 graphs (the output is the integer dot product).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from graphs import GraphBuilder

from qcompile.ops.evaluator import run as run_python
from qcompile.passes.pipeline import run_pipeline
from qcompile.verify import verify


def compile_proto(proto):
    return ir.serde.serialize_model(run_pipeline(ir.serde.deserialize_model(proto)))


def ops(proto):
    return [n.op_type for n in proto.graph.node]


def multibit_model(wbits: int, abits: int, *, act_signed=0, act_zp=0.0, seed=0, group=1, per_channel=True):
    """float conv -> Quant(abits) -> Conv(wbits weights) -> BN -> Flatten -> Quant -> Gemm(wbits)."""
    g = GraphBuilder(seed)
    x = g.op("Conv", ["x", g.const(g.rng.standard_normal((16, 3, 3, 3)).astype(np.float32))],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    ins = [x, g.const(np.float32(0.3), "s"), g.const(np.float32(act_zp), "z"), g.const(np.float32(abits), "b")]
    xq = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=act_signed, narrow=0, rounding_mode="ROUND")
    if wbits == 1:
        w = g.binary_weight((24, 16 // group, 3, 3))
    else:
        scale = np.linspace(0.2, 0.5, 24, dtype=np.float32).reshape(24, 1, 1, 1) if per_channel else 0.3
        w = g.quant(g.const(g.rng.standard_normal((24, 16 // group, 3, 3)).astype(np.float32)), scale, wbits, narrow=1)
    y = g.op("Conv", [xq, w], name="conv", kernel_shape=[3, 3], pads=[1, 0, 2, 1], strides=[2, 1], group=group)
    y = g.bn(y, 24)
    y = g.op("Flatten", [y])
    wg = g.quant(g.const(g.rng.standard_normal((5, 24 * 5 * 7)).astype(np.float32)), 0.1, max(wbits, 2))
    y = g.op("Gemm", [g.quant(y, 0.5, abits, signed=1), wg], name="fc", transB=1)
    return g.model({"x": ["N", 3, 8, 8]}, [y])


CASES = [(2, 2, 0, 0.0), (3, 3, 1, 0.0), (1, 4, 0, 0.0), (4, 2, 0, 3.0), (2, 4, 1, 0.0)]


@pytest.mark.parametrize("wbits,abits,act_signed,act_zp", CASES)
def test_multibit_lowers_and_matches(wbits, abits, act_signed, act_zp):
    ref = multibit_model(wbits, abits, act_signed=act_signed, act_zp=act_zp)
    comp = compile_proto(ref)
    assert ops(comp) == ["Conv", "QuantizePack", "BitSerialConv", "Flatten", "QuantizePack", "BitSerialGemm"]
    feeds = {"x": np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)}
    want = run_python(ref, feeds)[0]
    got = run_python(comp, feeds)[0]
    # float parts only: BN folded into the per-channel scale/bias (float32 rounding)
    assert np.max(np.abs(want - got)) <= 1e-4 * np.max(np.abs(want))
    report = verify(ref, comp, feeds)
    assert report.passed, report.to_json()


def test_grouped_multibit_conv():
    ref = multibit_model(2, 2, group=2)
    comp = compile_proto(ref)
    assert "BitSerialConv" in ops(comp)
    assert verify(ref, comp, batch=3).passed


def test_integer_part_exact():
    """Scale 1 everywhere: the compiled output is the integer dot product, compared with ==."""
    g = GraphBuilder(9)
    xq = g.quant("x", 1.0, 3, signed=1)
    w = g.quant(g.const(g.rng.integers(-3, 4, (7, 65, 3, 3)).astype(np.float32)), 1.0, 3, narrow=1)
    y = g.op("Conv", [xq, w], kernel_shape=[3, 3], pads=[2, 1, 0, 1], dilations=[2, 1])
    ref = g.model({"x": ["N", 65, 6, 9]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["QuantizePack", "BitSerialConv"]
    feeds = {"x": (np.random.default_rng(1).standard_normal((2, 65, 6, 9)) * 3).astype(np.float32)}
    want = run_python(ref, feeds)[0]
    np.testing.assert_array_equal(run_python(comp, feeds)[0], want)
    from qcompile.runtime import InferenceSession

    np.testing.assert_array_equal(InferenceSession(comp.SerializeToString()).run(None, feeds)[0], want)


def test_per_input_channel_weight_scale_does_not_lower():
    g = GraphBuilder(2)
    xq = g.quant("x", 0.5, 2, signed=0)
    scale = np.linspace(0.2, 0.5, 4, dtype=np.float32).reshape(1, 4, 1, 1)  # varies along input channels
    w = g.quant(g.const(g.rng.standard_normal((6, 4, 3, 3)).astype(np.float32)), scale, 2, narrow=1)
    y = g.op("Conv", [xq, w], kernel_shape=[3, 3])
    comp = compile_proto(g.model({"x": [1, 4, 5, 5]}, [y]))
    assert "BitSerialConv" not in ops(comp)


def test_per_channel_activation_scale_does_not_lower():
    g = GraphBuilder(2)
    xq = g.quant("x", np.linspace(0.2, 0.5, 4, dtype=np.float32).reshape(1, 4, 1, 1), 2, signed=0)
    w = g.quant(g.const(g.rng.standard_normal((6, 4, 3, 3)).astype(np.float32)), 0.3, 2, narrow=1)
    comp = compile_proto(g.model({"x": [1, 4, 5, 5]}, [g.op("Conv", [xq, w], kernel_shape=[3, 3])]))
    assert "BitSerialConv" not in ops(comp)


def test_binary_input_with_multibit_weights_stays_float():
    g = GraphBuilder(2)
    w = g.quant(g.const(g.rng.standard_normal((6, 4, 3, 3)).astype(np.float32)), 0.3, 2, narrow=1)
    comp = compile_proto(g.model({"x": [1, 4, 5, 5]}, [g.op("Conv", [g.bipolar("x"), w], kernel_shape=[3, 3])]))
    assert ops(comp) == ["BipolarQuant", "Conv"]
