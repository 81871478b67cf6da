"""Packed activations between binary layers: BatchNorm + sign folded into integer thresholds.

Structure: which ops stand after the pass. Exactness: the bits the compiled graph passes on equal
the reference's on every input, ties and sign-flipped channels included. The next binary layer
has alpha = 1 weights, so its output is the integer dot product and is compared with ==.
Both executors are checked: the pure-Python one (qcompile.ops.evaluator) and onnxruntime with the
C++ library.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx_ir as ir
import pytest
from graphs import GraphBuilder

from qcompile.ops.evaluator import run as run_python
from qcompile.passes.packed_activations import _bit_is_positive, channel_threshold
from qcompile.passes.pipeline import CompileOptions, run_pipeline


def compile_proto(proto):
    options = CompileOptions(packed_activations=True)
    return ir.serde.serialize_model(run_pipeline(ir.serde.deserialize_model(proto), options))


def run_ort(model, feeds):
    from qcompile.runtime import InferenceSession

    return InferenceSession(model.SerializeToString()).run(None, feeds)


def unit_binary_weight(g: GraphBuilder, shape) -> str:
    """+-1 weights (alpha = 1) so the consumer's output is an exact integer."""
    return g.bipolar(g.const(g.rng.standard_normal(shape).astype(np.float32), "w"), 1.0)


def chain_model(order: list[str], *, cin=16, mid=70, cout=8, seed=0, tie_channels=0, group_next=1):
    """float conv -> binary conv -> <order of MaxPool/BN/Clip> -> binary conv (alpha = 1)."""
    g = GraphBuilder(seed)
    x = g.op("Conv", ["x", g.const(g.rng.standard_normal((cin, 3, 3, 3)).astype(np.float32))],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Conv", [g.bipolar(x), unit_binary_weight(g, (mid, cin, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    for op in order:
        if op == "MaxPool":
            y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        elif op == "BN":
            gamma = g.rng.uniform(0.5, 1.5, mid) * np.where(g.rng.random(mid) < 0.4, -1, 1)
            beta = g.rng.standard_normal(mid)
            mean = g.rng.integers(-8, 8, mid).astype(np.float64)
            var = g.rng.uniform(0.5, 4, mid)
            eps = 1e-5
            # channels with an exact tie: beta = 0, var + eps = 1 exactly -> z == 0 where D == mean
            gamma[:tie_channels] = np.abs(gamma[:tie_channels])
            beta[:tie_channels] = 0.0
            var[:tie_channels] = 1.0
            if tie_channels:
                eps = 0.0
            params = [g.const(p.astype(np.float32), "bn") for p in (gamma, beta, mean, var)]
            y = g.op("BatchNormalization", [y, *params], epsilon=eps)
        elif op == "Clip":
            y = g.op("Clip", [y, g.const(np.float32(-1)), g.const(np.float32(1))])
        elif op == "Bipolar":  # the reference's own sign before a MaxPool (Brevitas CNV)
            y = g.bipolar(y, scale=0.5)
    y = g.op("Conv", [g.bipolar(y), unit_binary_weight(g, (cout, mid // group_next, 3, 3))],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group_next)
    return g.model({"x": ["N", 3, 8, 8]}, [y])


CHAINS = [
    ["BN", "Clip"],
    ["MaxPool", "BN", "Clip"],  # the AQE paper's block: conv -> pool -> BN -> HardTanh -> sign
    ["BN", "Clip", "MaxPool"],
    ["BN", "MaxPool"],
    ["Clip"],
    [],
    ["BN", "Bipolar", "MaxPool"],  # Brevitas CNV: conv -> BN -> QuantIdentity (sign) -> MaxPool -> conv
    ["BN", "Clip", "Bipolar", "MaxPool"],
    ["Bipolar"],
]


@pytest.mark.parametrize("order", CHAINS, ids=lambda o: "-".join(o) or "none")
def test_chain_becomes_packed_and_exact(order):
    ref = chain_model(order, tie_channels=5 if "BN" in order else 0)
    comp = compile_proto(ref)
    ops = [n.op_type for n in comp.graph.node]
    expected = ["Conv", "BinarizePack", "XnorConvThreshold"]
    if "MaxPool" in order:
        expected.append("PackedMaxPool")
    assert ops == [*expected, "XnorConv"]
    feeds = {"x": np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)}
    (want,) = run_python(ref, feeds)
    (got_py,) = run_python(comp, feeds)
    np.testing.assert_array_equal(got_py, want)  # integer-valued: exact
    (got_ort,) = run_ort(comp, feeds)
    np.testing.assert_array_equal(got_ort, want)


def test_grouped_consumer_gets_grouped_packing():
    ref = chain_model(["BN", "Clip"], mid=70, group_next=2)
    comp = compile_proto(ref)
    thr = next(n for n in comp.graph.node if n.op_type == "XnorConvThreshold")
    assert {a.name: a.i for a in thr.attribute}["out_group"] == 2
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    np.testing.assert_array_equal(run_ort(comp, feeds)[0], run_python(ref, feeds)[0])


def test_chain_with_float_consumer_stays_float():
    g = GraphBuilder(3)
    y = g.op("Conv", [g.bipolar("x"), unit_binary_weight(g, (8, 8, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    bn = g.bn(y, 8)
    a = g.op("Conv", [g.bipolar(bn), unit_binary_weight(g, (4, 8, 1, 1))], kernel_shape=[1, 1])
    b = g.op("Relu", [bn])  # a float user of the BatchNorm output: the chain must not be consumed
    ref = g.model({"x": [2, 8, 5, 5]}, [a, b])
    ops = [n.op_type for n in compile_proto(ref).graph.node]
    assert "XnorConvThreshold" not in ops


def test_a_batchnorm_after_the_sign_does_not_fold_and_says_why():
    from qcompile.compiler import compile as compile_model

    ref = chain_model(["Bipolar", "BN"])
    result = compile_model(ref, parity_inputs={"x": np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)})
    assert "XnorConvThreshold" not in [n.op_type for n in result.model.graph.node]
    reasons = {r.reason for r in result.report.refusals if r.rule == "PackActivationsPass"}
    assert any("only a MaxPool may follow the BipolarQuant" in r for r in reasons)


def test_relu_between_binary_layers_does_not_fold():
    g = GraphBuilder(3)
    y = g.op("Conv", [g.bipolar("x"), unit_binary_weight(g, (8, 8, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Relu", [g.bn(y, 8)])
    y = g.op("Conv", [g.bipolar(y), unit_binary_weight(g, (4, 8, 1, 1))], kernel_shape=[1, 1])
    ops = [n.op_type for n in compile_proto(g.model({"x": [2, 8, 5, 5]}, [y])).graph.node]
    assert "XnorConvThreshold" not in ops


@pytest.mark.parametrize("seed", range(20))
def test_threshold_matches_exact_predicate_everywhere(seed):
    rng = np.random.default_rng(seed)
    f = lambda v: Fraction(float(np.float32(v)))
    s, b = f(rng.uniform(0.01, 2) * rng.choice([-1, 1])), f(rng.normal())
    bn = None
    if seed % 2:
        bn = (f(rng.normal()), f(rng.normal()), f(rng.normal() * 5), f(rng.uniform(0.1, 3)) + f(1e-5))
    dmax = 64 * 9
    t, direction = channel_threshold(dmax, s, b, bn)
    for d in range(-dmax, dmax + 1):
        want = _bit_is_positive(d, s, b, bn)
        got = d >= t if direction > 0 else d <= t
        assert got == want, (d, t, direction)


@pytest.mark.parametrize("order", [["BN"], ["BN", "Clip"], ["BN", "Bipolar", "MaxPool"], ["MaxPool", "BN"]],
                         ids=lambda o: "-".join(o))
def test_an_int8_first_layer_writes_the_binary_layers_bits(order):
    """Brevitas CNV 1w1a's first layer: 8-bit input x binary weights on int8 arithmetic, then
    BatchNorm and the sign: ConvInteger -> ThresholdPack, whose bits are the reference's signs."""
    from qcompile.compiler import compile as compile_model

    g = GraphBuilder(21)
    ins = ["x", g.const(np.float32(1 / 64), "s"), g.const(np.float32(0), "z"), g.const(np.float32(8), "b")]
    xq = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND")
    y = g.op("Conv", [xq, unit_binary_weight(g, (20, 3, 3, 3))], name="first", kernel_shape=[3, 3])
    for op in order:
        if op == "MaxPool":
            y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        elif op == "BN":
            gamma = g.rng.uniform(0.5, 1.5, 20) * np.where(g.rng.random(20) < 0.4, -1, 1)
            params = [gamma, g.rng.standard_normal(20), g.rng.standard_normal(20) * 4, g.rng.uniform(0.5, 4, 20)]
            y = g.op("BatchNormalization", [y, *[g.const(p.astype(np.float32), "bn") for p in params]])
        elif op == "Clip":
            y = g.op("Clip", [y, g.const(np.float32(-1)), g.const(np.float32(1))])
        else:
            y = g.bipolar(y)
    z = g.op("Conv", [g.bipolar(y), unit_binary_weight(g, (8, 20, 3, 3))], name="second", kernel_shape=[3, 3])
    ref = g.model({"x": [2, 3, 12, 12]}, [z])
    feeds = {"x": np.random.default_rng(5).standard_normal((2, 3, 12, 12)).astype(np.float32)}
    result = compile_model(ref, impl=["first=int8"], parity_inputs=feeds)
    assert result.parity.passed
    ops = [n.op_type for n in result.model.graph.node]
    assert ops[ops.index("ConvInteger") + 1] == "ThresholdPack" and "BinarizePack" not in ops
    assert ("PackedMaxPool" in ops) == ("MaxPool" in order) and "Cast" not in ops
    (want,) = run_python(ref, feeds)
    np.testing.assert_array_equal(run_ort(result.model, feeds)[0], want)  # integer-valued: exact
