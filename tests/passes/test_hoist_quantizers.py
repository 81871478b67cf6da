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
