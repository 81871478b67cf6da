"""MultibitThresholdsPass: two chained multi-bit layers exchange packed codes.

Structure (the first layer becomes BitSerialConvThreshold / BitSerialGemmThreshold, a MaxPool
between them PlaneMaxPool, no float op left between them), exactness (the compiled model's output
equals, bit for bit, the same pipeline's output without this pass -- the float chain the thresholds
fold -- in onnxruntime and in the pure-Python executor), parity with the reference (verify), and
cases where the rule must not fire, with the reason it gives.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from graphs import GraphBuilder

from qcompile.ops.evaluator import run as run_python
from qcompile.passes.multibit_thresholds import MultibitThresholdsPass
from qcompile.passes.pipeline import CompileOptions, compile_pipeline, run_frontend
from qcompile.runtime import InferenceSession
from qcompile.verify import verify

QONNX = "qonnx.custom_op.general"


def compile_proto(proto, threshold_pass: bool = True):
    """The compiled model and the pipeline's refusals (with or without the pass under test)."""
    options = CompileOptions(packed_activations=threshold_pass)
    result = compile_pipeline(run_frontend(ir.serde.deserialize_model(proto)), options)
    return ir.serde.serialize_model(result.model), result.report.refusals


def ops(proto):
    return [n.op_type for n in proto.graph.node]


def between(proto, first: str, last: str) -> list[str]:
    """Op types strictly between the first `first` node and the next `last` node."""
    names = ops(proto)
    i = names.index(first)
    return names[i + 1:names.index(last, i + 1)]


def chain_model(abits=2, wbits=2, *, out_signed=0, out_zp=0.0, relu=False, pool=False, neg_mul_after_pool=False,
                seed=0, m=24, out_bits=None):
    """x -> Quant -> Conv(wbits) -> BN -> [Relu] -> [MaxPool -> Mul(+-c)] -> Quant(out) -> [MaxPool] -> Conv -> BN."""
    g = GraphBuilder(seed)
    xq = g.quant("x", 0.3, abits, signed=0)
    w = g.quant(g.const(g.rng.standard_normal((m, 16, 3, 3)).astype(np.float32)), 0.25, wbits, narrow=1)
    y = g.bn(g.op("Conv", [xq, w], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), m)
    if relu:
        y = g.op("Relu", [y])
    if neg_mul_after_pool:  # a decreasing per-channel scale after the pool: the pool is a min
        y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        c = np.where(np.arange(m) % 3 == 0, -1.0, 1.0).astype(np.float32) * g.rng.uniform(0.5, 2, m).astype(np.float32)
        y = g.op("Mul", [y, g.const(c.reshape(m, 1, 1), "mul")])
    bits = out_bits or abits
    ins = [y, g.const(np.float32(0.2), "s"), g.const(np.float32(out_zp), "z"), g.const(np.float32(bits), "b")]
    y = g.op("Quant", ins, domain=QONNX, signed=out_signed, narrow=0, rounding_mode="ROUND")
    if pool:
        y = g.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    w2 = g.quant(g.const(g.rng.standard_normal((8, m, 3, 3)).astype(np.float32)), 0.25, wbits, narrow=1)
    y = g.bn(g.op("Conv", [y, w2], name="conv2", kernel_shape=[3, 3]), 8)
    return g.model({"x": ["N", 16, 9, 9]}, [y])


def assert_exact(new, old, ref, batch=3, seed=1):
    """new == old bit for bit (both executors), and new against the reference (verify)."""
    feeds = {"x": (np.random.default_rng(seed).standard_normal((batch, 16, 9, 9)) * 2).astype(np.float32)}
    want = InferenceSession(old.SerializeToString()).run(None, feeds)[0]
    got = InferenceSession(new.SerializeToString()).run(None, feeds)[0]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(run_python(new, feeds)[0], got)
    report = verify(ref, new, feeds)
    assert report.passed, report.to_json()


CHAINS = [
    dict(),
    dict(out_signed=1),  # two's complement codes
    dict(abits=3, wbits=3, out_zp=2.0, out_signed=0),  # unsigned grid with zero point: v reaches below 0
    dict(abits=4, wbits=2, relu=True),
    dict(pool=True),
    dict(pool=True, out_signed=1, abits=3),
    dict(out_bits=1, out_signed=0),  # a 1-bit unsigned code: one threshold
]


@pytest.mark.parametrize("kw", CHAINS, ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()) or "plain")
def test_chain_folds_into_thresholds(kw):
    ref = chain_model(**kw)
    new, _ = compile_proto(ref)
    old, _ = compile_proto(ref, threshold_pass=False)
    assert ops(new).count("BitSerialConvThreshold") == 1 and ops(new).count("QuantizePack") == 1
    assert between(new, "BitSerialConvThreshold", "BitSerialConv") == (["PlaneMaxPool"] if kw.get("pool") else [])
    assert "QuantizePack" in between(old, "BitSerialConv", "BitSerialConv")  # the float chain it replaced
    assert_exact(new, old, ref)


def test_decreasing_scale_after_pool_takes_the_min():
    ref = chain_model(neg_mul_after_pool=True)
    new, _ = compile_proto(ref)
    old, _ = compile_proto(ref, threshold_pass=False)
    assert between(new, "BitSerialConvThreshold", "BitSerialConv") == ["PlaneMaxPool"]
    pool = next(n for n in new.graph.node if n.op_type == "PlaneMaxPool")
    mask = onnx.numpy_helper.to_array(next(i for i in new.graph.initializer if i.name == pool.input[1]))
    from qcompile.ops.packing import unpack_last_axis

    assert np.array_equal(unpack_last_axis(mask, 24), (np.arange(24) % 3 == 0).astype(np.uint8))
    assert_exact(new, old, ref)


def dense_model(seed=0):
    """x -> Quant -> Gemm(2-bit) -> BN -> Quant -> Gemm(2-bit)."""
    g = GraphBuilder(seed)
    xq = g.quant("x", 0.3, 2, signed=0)
    w = g.quant(g.const(g.rng.standard_normal((70, 130)).astype(np.float32)), 0.25, 2, narrow=1)
    y = g.op("Gemm", [xq, w], name="fc1", transB=1)
    y = g.op("BatchNormalization", [y] + [g.const(p.astype(np.float32), "bn") for p in (
        g.rng.uniform(-1.5, 1.5, 70), g.rng.standard_normal(70), g.rng.standard_normal(70) * 3,
        g.rng.uniform(0.5, 2, 70))], epsilon=1e-5)
    w2 = g.quant(g.const(g.rng.standard_normal((10, 70)).astype(np.float32)), 0.25, 2, narrow=1)
    y = g.op("Gemm", [g.quant(y, 0.5, 2, signed=1), w2], name="fc2", transB=1)
    return g.model({"x": ["N", 130]}, [y])


def test_dense_chain_folds():
    ref = dense_model()
    new, _ = compile_proto(ref)
    old, _ = compile_proto(ref, threshold_pass=False)
    assert ops(new) == ["QuantizePack", "BitSerialGemmThreshold", "BitSerialGemm"]
    feeds = {"x": (np.random.default_rng(2).standard_normal((16, 130)) * 2).astype(np.float32)}
    want = InferenceSession(old.SerializeToString()).run(None, feeds)[0]
    got = InferenceSession(new.SerializeToString()).run(None, feeds)[0]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(run_python(new, feeds)[0], got)
    assert verify(ref, new, feeds).passed


def test_thresholds_reproduce_the_chain_on_every_reachable_d():
    """The derived thresholds, read back from the graph, give channel_codes on the whole D range."""
    from qcompile.ops.multibit_threshold import threshold_codes
    from qcompile.passes import multibit_thresholds as mt

    ref = chain_model(abits=3, wbits=3, out_zp=2.0, relu=True)
    model = compile_pipeline(ir.serde.deserialize_model(ref), CompileOptions(packed_activations=False)).model
    chain = next(c for c in (mt.match_chain(n) for n in model.graph if n.op_type == "QuantizePack")
                 if not isinstance(c, str))
    assert [n.op_type for n in chain.steps] == ["Relu"]  # the Quant became the QuantizePack
    lo, hi, _ = mt.d_ranges(chain)
    th, direction = mt.thresholds_for(chain, -2, 7)
    for ch in range(lo.size):
        d = np.arange(lo[ch], hi[ch] + 1)
        want = mt.channel_codes(chain, ch, d)
        got = threshold_codes(d.reshape(1, 1, -1), th[ch:ch + 1], direction[ch:ch + 1], -2).reshape(-1)
        assert np.array_equal(got, want), ch


# ------------------------------------------------------------------------ must not fire


def flatten_model(size: int):
    """x [N,16,size,size] -> Quant -> Conv 3x3 (no pad) -> Flatten -> Quant -> Gemm."""
    g = GraphBuilder(1)
    xq = g.quant("x", 0.3, 2, signed=0)
    w = g.quant(g.const(g.rng.standard_normal((8, 16, 3, 3)).astype(np.float32)), 0.25, 2, narrow=1)
    y = g.op("Flatten", [g.op("Conv", [xq, w], kernel_shape=[3, 3])])
    k = 8 * (size - 2) ** 2
    w2 = g.quant(g.const(g.rng.standard_normal((4, k)).astype(np.float32)), 0.25, 2, narrow=1)
    return g.model({"x": ["N", 16, size, size]}, [g.op("Gemm", [g.quant(y, 0.5, 2, signed=1), w2], transB=1)])


def test_flatten_of_a_one_pixel_conv_keeps_the_codes_packed():
    ref = flatten_model(3)  # 3x3 image, 3x3 kernel: a 1x1 output
    new, _ = compile_proto(ref)
    old, _ = compile_proto(ref, threshold_pass=False)
    assert ops(new) == ["QuantizePack", "BitSerialConvThreshold", "Reshape", "BitSerialGemm"]
    feeds = {"x": (np.random.default_rng(4).standard_normal((5, 16, 3, 3)) * 2).astype(np.float32)}
    want = InferenceSession(old.SerializeToString()).run(None, feeds)[0]
    got = InferenceSession(new.SerializeToString()).run(None, feeds)[0]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(run_python(new, feeds)[0], got)
    assert verify(ref, new, feeds).passed


def test_flatten_of_a_larger_image_is_refused_with_a_reason():
    ref = flatten_model(9)  # 7x7 output pixels: the dense layer reads them in NCHW order
    new, refusals = compile_proto(ref)
    assert "BitSerialConvThreshold" not in ops(new) and "BitSerialConv" in ops(new)
    reasons = [r.reason for r in refusals if r.rule == "MultibitThresholdsPass"]
    assert any("not a 1x1 image read by dense layers" in r for r in reasons), reasons


def test_float_value_with_another_user_is_not_folded():
    """The conv's float output is also a graph output: it must stay computed."""
    ref = chain_model()
    bn_out = next(n for n in ref.graph.node if n.op_type == "BatchNormalization").output[0]
    ref.graph.output.append(onnx.helper.make_tensor_value_info(bn_out, onnx.TensorProto.FLOAT, None))
    new, refusals = compile_proto(ref)
    assert "BitSerialConvThreshold" not in ops(new)
    assert any("has other users" in r.reason for r in refusals if r.rule == "MultibitThresholdsPass")


def test_pass_alone_leaves_a_graph_without_chains_unchanged():
    g = GraphBuilder(0)
    y = g.op("Relu", ["x"])
    model = ir.serde.deserialize_model(g.model({"x": [1, 4]}, [y]))
    assert not MultibitThresholdsPass()(model).modified


def test_dot_product_beyond_exact_float_range_is_refused():
    """|D| may pass 2^24 (what the threshold ops read back exactly): the float chain stays."""
    g = GraphBuilder(3)
    c = 9000  # 9000 channels x 9 taps x 15 (4-bit codes) x 15 (4-bit weights) > 2^24
    xq = g.quant("x", 0.3, 4, signed=0)
    w = g.quant(g.const(g.rng.standard_normal((2, c, 3, 3)).astype(np.float32)), 0.25, 4, narrow=1)
    y = g.op("Conv", [xq, w], kernel_shape=[3, 3])
    w2 = g.quant(g.const(g.rng.standard_normal((2, 2, 1, 1)).astype(np.float32)), 0.25, 2, narrow=1)
    ref = g.model({"x": [1, c, 3, 3]}, [g.op("Conv", [g.quant(y, 0.5, 2, signed=0), w2], kernel_shape=[1, 1])])
    new, refusals = compile_proto(ref)
    assert "BitSerialConvThreshold" not in ops(new) and ops(new).count("BitSerialConv") == 2
    assert any("more than the 2^24" in r.reason for r in refusals if r.rule == "MultibitThresholdsPass")


def test_pool_whose_pads_reach_a_whole_window_is_refused():
    ref = chain_model(pool=True)
    pool = next(n for n in ref.graph.node if n.op_type == "MaxPool")
    for a in pool.attribute:
        if a.name == "pads":
            del a.ints[:]
            a.ints.extend([3, 3, 3, 3])  # pads >= the 3x3 window: some windows are all padding
    new, refusals = compile_proto(ref)
    assert "PlaneMaxPool" not in ops(new)
    assert any("pads reach a whole window" in r.reason for r in refusals if r.rule == "MultibitThresholdsPass")


def test_division_by_a_zero_constant_is_refused():
    g = GraphBuilder(5)
    xq = g.quant("x", 0.3, 2, signed=0)
    w = g.quant(g.const(g.rng.standard_normal((4, 8, 3, 3)).astype(np.float32)), 0.25, 2, narrow=1)
    y = g.op("Conv", [xq, w], kernel_shape=[3, 3])
    y = g.op("Div", [y, g.const(np.array([1.0, 0.0, 2.0, 1.0], np.float32).reshape(1, 4, 1, 1), "div")])
    w2 = g.quant(g.const(g.rng.standard_normal((2, 4, 1, 1)).astype(np.float32)), 0.25, 2, narrow=1)
    ref = g.model({"x": [1, 8, 5, 5]}, [g.op("Conv", [g.quant(y, 0.5, 2, signed=0), w2], kernel_shape=[1, 1])])
    new, refusals = compile_proto(ref)
    assert "BitSerialConvThreshold" not in ops(new)
    assert any("by 0" in r.reason for r in refusals if r.rule == "MultibitThresholdsPass"), refusals
