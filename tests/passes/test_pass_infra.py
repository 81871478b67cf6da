"""The pass contract: readable names, a bounded fixed point, refusals in one report that feeds the
compile table, `modified` only when something changed, the producer chain checked exactly."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from graphs import GraphBuilder, binary_conv_model
from onnxscript.rewriter import pattern

from qcompile.compiler import compile as compile_model
from qcompile.errors import QCompileError
from qcompile.passes.cleanup import CleanupPass
from qcompile.passes.fold_quantizers import FoldWeightQuantizersPass
from qcompile.passes.lower_binary import LowerBinaryLayersPass
from qcompile.passes.packed_activations import PackActivationsPass
from qcompile.passes.pipeline import build_pipeline
from qcompile.passes.report import PipelineRun
from qcompile.passes.rewrite import RuleSetPass


def _refusals_model():
    g = GraphBuilder(5)
    w2 = g.quant(g.const(g.rng.standard_normal((8, 4, 3, 3)).astype(np.float32)), 0.5, 2)
    y = g.op("Conv", [g.bipolar("x"), w2], name="bin_x_2bit_w", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Conv", [g.bipolar(y), g.binary_weight((8, 8, 3, 3))], name="autopad", kernel_shape=[3, 3],
             auto_pad="SAME_UPPER")
    y = g.op("Conv", [g.bipolar(y), g.binary_weight((8, 8, 1, 1))], name="ok", kernel_shape=[1, 1])
    return g.model({"x": [1, 4, 6, 6]}, [y])


def test_every_pipeline_pass_has_a_readable_name():
    names = [str(p) for p in build_pipeline().passes]
    assert names[:4] == ["CleanupPass", "HoistQuantizersPass", "LowerInt8LayersPass", "LowerMultibitLayersPass"]
    assert all(" object at 0x" not in n for n in names)


def test_the_table_reads_the_reason_from_the_report():
    result = compile_model(_refusals_model(), check_parity=False)
    notes = {r.name: r.note for r in result.rows}
    assert notes["autopad"] == "stays float: auto_pad=SAME_UPPER is not supported; export with explicit pads"
    assert notes["bin_x_2bit_w"].startswith("stays float: binary input with 4 distinct levels")
    assert notes["ok"] == ""
    for name in ("autopad", "bin_x_2bit_w"):
        assert notes[name] == "stays float: " + result.report.layer_reason(name)
    # every lowering rule that saw the layer said why; the binary one names the auto_pad
    assert ("BinaryConvToXnorConv", "autopad") in {(r.rule, r.node) for r in result.report.refusals}


class _OncePerRound(pattern.RewriteRuleClassBase):
    """Rewrites one Neg into a fresh Neg in every application: the rule set never settles."""

    def setup(self):  # called at the start of each application of the rule set
        self.fired = False

    def pattern(self, op, x):
        return op.Neg(x)

    def check(self, context, x, **_):
        return not self.fired

    def rewrite(self, op, x):
        self.fired = True
        return op.Neg(x)


class _NeverStops(RuleSetPass):
    make_rules = staticmethod(lambda: pattern.RewriteRuleSet([_OncePerRound.rule()]))


def test_a_rule_set_that_never_settles_is_a_clear_error():
    g = GraphBuilder(0)
    model = ir.serde.deserialize_model(g.model({"x": [2]}, [g.op("Neg", ["x"])]))
    with pytest.raises(QCompileError, match=r"_NeverStops: the rules still matched after 3 rounds"):
        _NeverStops(max_rounds=3)(model)


def test_lowering_checks_the_quantizer_is_the_direct_producer():
    # no hoisting: BipolarQuant -> Flatten -> Gemm; analysis sees through the Flatten, the rule must not
    g = GraphBuilder(1)
    flat = g.op("Flatten", [g.bipolar("x")])
    y = g.op("Gemm", [flat, g.binary_weight((4, 18))], name="fc", transB=1)
    model = ir.serde.deserialize_model(g.model({"x": [2, 2, 3, 3]}, [y]))
    model.opset_imports.setdefault("qcompile", 1)
    with PipelineRun().active() as run:
        FoldWeightQuantizersPass()(model)
        CleanupPass()(model)
        assert not LowerBinaryLayersPass()(model).modified
    (refusal,) = run.report.by_rule("BinaryGemmToXnorGemm")
    assert refusal.reason == ("its input quantizer BipolarQuant is not the direct producer of its input "
                              "(a Flatten/Reshape was not hoisted)")


def test_pack_activations_reports_unchanged_graphs_as_unmodified():
    # one binary layer: its BinarizePack reads a graph input, so there is no chain to rewrite
    model = ir.serde.deserialize_model(binary_conv_model(cin=8, cout=8))
    model.opset_imports.setdefault("qcompile", 1)
    with PipelineRun().active() as run:
        FoldWeightQuantizersPass()(model)
        CleanupPass()(model)
        assert LowerBinaryLayersPass()(model).modified
        CleanupPass()(model)  # as the pipeline does: the replaced activation quantizer goes
        assert not PackActivationsPass()(model).modified
    (refusal,) = run.report.by_rule("PackActivationsPass")
    assert refusal.reason == "chain starts at a graph input"
