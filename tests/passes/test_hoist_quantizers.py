"""HoistQuantizersPass alone: Flatten(Quant(x)) -> Quant(Flatten(x)); structure, parity, and the
case it must not fire (a per-channel quantizer does not commute with Flatten), with its reason."""

from __future__ import annotations

import numpy as np
from graphs import GraphBuilder
from helpers import apply_alone, op_types

from qcompile.passes.hoist_quantizers import HoistQuantizersPass
from qcompile.verify import verify


def _flatten_gemm(scale) -> object:
    g = GraphBuilder(4)
    flat = g.op("Flatten", [g.quant("x", scale, 3)], name="flatten")
    y = g.op("Gemm", [flat, g.const(g.rng.standard_normal((5, 12)).astype(np.float32))], name="fc", transB=1)
    return g.model({"x": [2, 3, 2, 2]}, [y])


def test_scalar_quant_moves_after_flatten_with_parity():
    ref = _flatten_gemm(0.25)
    hoisted, modified, run = apply_alone(ref, HoistQuantizersPass())
    assert modified == [True]
    assert op_types(hoisted) == ["Flatten", "Quant", "Gemm"]
    assert verify(ref, hoisted).passed
    assert run.report.refusals == []


def test_per_channel_quant_must_not_move_and_says_why():
    ref = _flatten_gemm(np.array([0.25, 0.5, 1.0], np.float32).reshape(1, 3, 1, 1))
    same, modified, run = apply_alone(ref, HoistQuantizersPass())
    assert modified == [False] and op_types(same) == ["Quant", "Flatten", "Gemm"]
    (refusal,) = run.report.by_rule("QuantAfterFlatten")
    assert (refusal.node, refusal.reason) == ("flatten", "Quant parameters are not scalar constants")


def _matmul_transposed_weight(scale_shape, *, weight_const: bool = True) -> object:
    """MatMul(Quant(x), Transpose(Quant(W))), as Brevitas exports a QuantLinear (W is [out, in])."""
    g = GraphBuilder(5)
    scale = g.rng.uniform(0.05, 0.2, scale_shape).astype(np.float32)
    w = g.const(g.rng.standard_normal((6, 12)).astype(np.float32), "w") if weight_const else "w_in"
    wq = g.quant(w, scale, 2, narrow=1)
    wt = g.op("Transpose", [wq], name="wt", perm=[1, 0])
    y = g.op("MatMul", [g.quant("x", 0.25, 2), wt], name="fc")
    inputs = {"x": [3, 12]} if weight_const else {"x": [3, 12], "w_in": [6, 12]}
    return g.model(inputs, [y])


def test_weight_quant_moves_after_transpose_with_parity():
    from qcompile.passes.hoist_quantizers import WeightQuantizersAfterTransposePass

    for scale_shape in [(), (6, 1)]:  # per tensor and per output channel ([out, 1], Brevitas's)
        ref = _matmul_transposed_weight(scale_shape)
        moved, modified, _ = apply_alone(ref, WeightQuantizersAfterTransposePass())
        assert modified == [True]
        assert op_types(moved) == ["Quant", "Quant", "MatMul"]  # the Transpose went into the constants
        result = verify(ref, moved)
        assert result.passed and all(o.max_abs_error == 0 for o in result.outputs)  # same elementwise ops


def test_weight_quant_of_non_constant_must_not_move_and_says_why():
    from qcompile.passes.hoist_quantizers import WeightQuantizersAfterTransposePass

    ref = _matmul_transposed_weight((6, 1), weight_const=False)
    same, modified, run = apply_alone(ref, WeightQuantizersAfterTransposePass())
    assert modified == [False] and "Transpose" in op_types(same)
    (refusal,) = run.report.by_rule("QuantAfterWeightTranspose")
    assert (refusal.node, refusal.reason) == ("wt", "Quant inputs are not all constant (not a weight quantizer)")


def test_weight_quant_behind_a_bad_perm_must_not_move_and_says_why():
    """A Transpose whose perm does not fit the weight (the fuzzer found one): refused, no crash."""
    from qcompile.passes.hoist_quantizers import WeightQuantizersAfterTransposePass

    ref = _matmul_transposed_weight(())
    for node in ref.graph.node:
        if node.name == "wt":
            node.attribute[0].ints[:] = [0, 2, 1]
    same, modified, run = apply_alone(ref, WeightQuantizersAfterTransposePass())
    assert modified == [False] and "Transpose" in op_types(same)
    (refusal,) = run.report.by_rule("QuantAfterWeightTranspose")
    assert refusal.reason == "Transpose perm [0, 2, 1] is not a permutation of the weight's 2 axes"
