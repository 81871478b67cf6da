"""FoldAffineIntoLoweredPass alone, after binary lowering: BatchNorm folds into XnorConv's scale
and bias; structure, parity, and the case it must not fire (a Mul that is not per channel), with its reason."""

from __future__ import annotations

import numpy as np
from graphs import GraphBuilder, binary_conv_model
from helpers import apply_alone, op_types

from qcompile.passes.cleanup import CleanupPass
from qcompile.passes.fold_affine import FoldAffineIntoLoweredPass
from qcompile.passes.fold_quantizers import FoldWeightQuantizersPass
from qcompile.passes.lower_binary import LowerBinaryLayersPass
from qcompile.verify import verify


def _lowered_then_folded(ref):
    return apply_alone(ref, FoldWeightQuantizersPass(), CleanupPass(), LowerBinaryLayersPass(), CleanupPass(),
                       FoldAffineIntoLoweredPass())


def test_batchnorm_folds_into_xnor_conv_with_parity():
    ref = binary_conv_model(cin=16, cout=8, bn=True)
    folded, modified, _ = _lowered_then_folded(ref)
    assert modified[-1] is True
    assert op_types(folded) == ["BinarizePack", "XnorConv"]
    xnor = next(n for n in folded.graph.node if n.op_type == "XnorConv")
    assert {e.key: e.value for e in xnor.metadata_props}["qcompile.folded"] == "BatchNormalization"
    # float tolerance: BN folded into one multiply-add, rounded once to float32 (verify.RTOL)
    assert verify(ref, folded).passed


def test_mul_by_a_full_tensor_must_not_fold_and_says_why():
    g = GraphBuilder(6)
    conv = g.op("Conv", [g.bipolar("x"), g.binary_weight((8, 8, 3, 3))], name="conv", kernel_shape=[3, 3])
    y = g.op("Mul", [conv, g.const(g.rng.standard_normal((1, 8, 3, 3)).astype(np.float32))], name="mul")
    ref = g.model({"x": [1, 8, 5, 5]}, [y])
    folded, modified, run = _lowered_then_folded(ref)
    assert modified[-1] is False and op_types(folded) == ["BinarizePack", "XnorConv", "Mul"]
    (refusal,) = run.report.by_rule("FoldMulIntoXnorConv")
    assert (refusal.node, refusal.reason) == ("mul", "Mul operand is not a per-channel constant")
    assert verify(ref, folded).passed
