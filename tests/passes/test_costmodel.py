"""The per-layer choice (qcompile.costmodel) on given costs: the fastest exact implementation, never
one slower than float, --impl overrides, their errors; MeasuredCosts' cache. No test asserts a speed.
The analytic cost model (EstimatedCosts) is tested in test_costmodel_estimated.py."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest
from click.testing import CliRunner

from qcompile.analysis import analyze_model
from qcompile.cli import main
from qcompile.compiler import compile as compile_model
from qcompile.costmodel import (
    MeasuredCosts,
    choose_impls,
    float_twin,
    layer_model,
    parse_impl_overrides,
)
from qcompile.errors import QCompileError
from qcompile.onnx_builder import GraphBuilder


def _two_layer_model():
    """conv (4-bit x 4-bit) -> Flatten -> fc (4-bit x 3-bit): both have bitserial, int8 and float."""
    g = GraphBuilder(5)

    def act(x, bits):
        ins = [x, g.const(np.float32(0.25), "s"), g.const(np.float32(0), "z"), g.const(np.float32(bits), "b")]
        return g.op("Quant", ins, domain="qonnx.custom_op.general", signed=0, narrow=0, rounding_mode="ROUND")

    w = g.quant(g.const(g.rng.standard_normal((8, 3, 3, 3)).astype(np.float32)), 0.2, 4)
    y = g.op("Conv", [act("x", 4), w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    flat = g.op("Flatten", [y])
    w2 = g.quant(g.const(g.rng.standard_normal((10, 8 * 6 * 6)).astype(np.float32)), 0.3, 3)
    out = g.op("Gemm", [act(flat, 4), w2], name="fc", transB=1)
    return g.model({"x": [1, 3, 6, 6]}, [out])


class GivenCosts:
    """Costs from a table: {(layer, impl): seconds}; records what it was asked."""

    kind = "measured"

    def __init__(self, table):
        self.table, self.asked = table, []

    def cost(self, layer_model, layer, impl, threads):
        self.asked.append((layer.name, impl))
        return self.table.get((layer.name, impl))


def _layers():
    return analyze_model(ir.serde.deserialize_model(_two_layer_model()))


def test_the_fastest_option_is_chosen_and_float_when_lowering_is_slower():
    layers = _layers()
    assert [lay.options for lay in layers] == [["bitserial", "int8", "float"]] * 2
    costs = GivenCosts({("conv", "bitserial"): 3.0, ("conv", "int8"): 1.0, ("conv", "float"): 2.0,
                        ("fc", "bitserial"): 3.0, ("fc", "int8"): 2.5, ("fc", "float"): 1.5})
    choices = choose_impls(layers, {lay.name: object() for lay in layers}, costs)
    assert (choices["conv"].impl, choices["fc"].impl) == ("int8", "float")
    assert choices["fc"].why == "measured" and choices["fc"].seconds["float"] == 1.5


def test_float_must_be_clearly_faster_than_an_exact_option():
    layers = _layers()
    near = GivenCosts({("conv", "bitserial"): 3.0, ("conv", "int8"): 1.0, ("conv", "float"): 0.7})
    assert choose_impls(layers[:1], {"conv": object()}, near)["conv"].impl == "int8"  # within FLOAT_MARGIN
    clear = GivenCosts({("conv", "bitserial"): 3.0, ("conv", "int8"): 1.0, ("conv", "float"): 0.6})
    assert choose_impls(layers[:1], {"conv": object()}, clear)["conv"].impl == "float"


def test_unknown_costs_keep_the_default_and_overrides_win():
    layers = _layers()
    partial = GivenCosts({("conv", "int8"): 1.0})  # float unknown: no measured choice
    choice = choose_impls(layers, {lay.name: object() for lay in layers}, partial)["conv"]
    assert (choice.impl, choice.why, choice.seconds) == ("bitserial", "default", {})
    costs = GivenCosts({(n, i): 1.0 for n in ("conv", "fc") for i in ("bitserial", "int8", "float")})
    choices = choose_impls(layers, {lay.name: object() for lay in layers}, costs, {"fc": "bitserial"}, "float")
    assert (choices["conv"].impl, choices["conv"].why) == ("float", "--impl")
    assert choices["fc"].impl == "bitserial"


def test_override_errors_are_one_line_and_name_the_choices():
    layers = _layers()
    with pytest.raises(QCompileError, match=r"--impl conv=xnor: layer 'conv' can run as bitserial, int8, float only"):
        choose_impls(layers, {}, None, {"conv": "xnor"})
    with pytest.raises(QCompileError, match="--impl names no layer 'nope'"):
        choose_impls(layers, {}, None, {"nope": "int8"})
    with pytest.raises(QCompileError, match="expected an implementation in xnor, bitserial, shift, int8, float"):
        parse_impl_overrides(["conv=fast"])
    assert parse_impl_overrides(["int8", "fc=float"]) == ("int8", {"fc": "float"})


def test_compile_follows_the_costs_and_the_table_shows_them():
    costs = GivenCosts({("conv", "bitserial"): 3e-3, ("conv", "int8"): 1e-3, ("conv", "float"): 2e-3,
                        ("fc", "bitserial"): 3e-3, ("fc", "int8"): 2.5e-3, ("fc", "float"): 1.5e-3})
    result = compile_model(_two_layer_model(), costs=costs)
    ops = [n.op_type for n in result.model.graph.node]
    assert "ConvInteger" in ops and "Gemm" in ops and "BitSerialGemm" not in ops and "MatMulInteger" not in ops
    rows = {r.name: r for r in result.rows}
    assert rows["conv"].op_after == "ConvInteger" and (rows["conv"].impl, rows["conv"].why) == ("int8", "measured")
    assert (rows["conv"].time_ms, rows["conv"].float_ms, rows["conv"].timed_by) == (1.0, 2.0, "measured")
    assert rows["conv"].variant == "onnxruntime" and rows["conv"].options == ["bitserial", "int8", "float"]
    assert rows["fc"].note.startswith("stays float: float chosen (measured)")
    assert result.parity.passed


def test_cli_impl_override_and_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QCOMPILE_CACHE_DIR", str(tmp_path / "cache"))
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(_two_layer_model(), path)
    ok = CliRunner().invoke(main, [str(path), "--impl", "int8", "--impl", "fc=bitserial"])
    assert ok.exit_code == 0, ok.output
    comp = onnx.load(tmp_path / "m.q.onnx")
    assert [n.op_type for n in comp.graph.node].count("ConvInteger") == 1
    assert "BitSerialMlp" in [n.op_type for n in comp.graph.node]  # QuantizePack -> BitSerialGemm, fused
    bad = CliRunner().invoke(main, [str(path), "--impl", "conv=xnor"])
    assert bad.exit_code != 0 and "can run as bitserial, int8, float only" in bad.output
    assert "Traceback" not in bad.output


def test_measured_costs_time_each_option_once_and_cache_them(tmp_path):
    proto = _two_layer_model()
    (conv, _) = analyze_model(ir.serde.deserialize_model(proto))
    shapes = {"x": [1, 3, 6, 6]}
    single = layer_model(proto, conv, shapes)
    assert [n.op_type for n in single.graph.node] == ["Quant", "Quant", "Conv"]
    assert [n.op_type for n in float_twin(single).graph.node] == ["Identity", "Identity", "Conv"]
    costs = MeasuredCosts(tmp_path / "costs.json", repeats=3)
    first = {impl: costs.cost(single, conv, impl, 1) for impl in conv.options}
    assert all(v is not None and v > 0 for v in first.values()) and costs.cost(single, conv, "twin", 1) > 0
    costs.save()
    cached = MeasuredCosts(tmp_path / "costs.json", measure=False)
    assert {impl: cached.cost(single, conv, impl, 1) for impl in conv.options} == first
    (machine,) = json.loads((tmp_path / "costs.json").read_text())
    assert "qcompile" in machine and "onnxruntime" in machine


def test_inspect_shows_the_choice_and_the_options():
    from qcompile.compiler import inspect

    costs = GivenCosts({("conv", "bitserial"): 3e-3, ("conv", "int8"): 1e-3, ("conv", "float"): 2e-3,
                        ("fc", "bitserial"): 1e-3, ("fc", "int8"): 2.5e-3, ("fc", "float"): 1.5e-3})
    rows, _, _ = inspect(_two_layer_model(), costs=costs)
    assert [(r.impl, r.why, r.note) for r in rows] == [("int8", "measured", "-> ConvInteger"),
                                                       ("bitserial", "measured", "-> BitSerialGemm")]
    assert all(r.options == ["bitserial", "int8", "float"] for r in rows)
    assert rows[1].variant in ("avx512vpopcnt", "avx2", "avx2_lut", "portable", "reference")


def test_a_source_that_lacks_an_option_gives_way_to_the_next():
    """compile's default order: measured figures where every option is cached, else the estimates."""

    class Estimates(GivenCosts):
        kind = "estimated"

    layers = _layers()
    measured = GivenCosts({("conv", "bitserial"): 3.0, ("conv", "int8"): 1.0, ("conv", "float"): 2.0,
                           ("fc", "int8"): 1.0})  # fc: only partly measured
    estimated = Estimates({(n, i): s for n in ("conv", "fc") for i, s in (("bitserial", 1.0), ("int8", 2.0),
                                                                       ("float", 3.0), ("twin", 0.5))})
    choices = choose_impls(layers, {lay.name: object() for lay in layers}, [measured, estimated])
    assert (choices["conv"].impl, choices["conv"].why) == ("int8", "measured")
    assert (choices["fc"].impl, choices["fc"].why, choices["fc"].timed_by) == ("bitserial", "estimated", "estimated")
    assert choices["fc"].seconds["twin"] == 0.5


def test_estimates_take_float_past_the_models_error():
    """Estimates within ESTIMATE_TIE (20%) are a tie, which goes to the exact option; float
    estimated cheaper than that is taken (measured choices keep FLOAT_MARGIN)."""
    from qcompile.costmodel import ESTIMATE_TIE

    class Estimates(GivenCosts):
        kind = "estimated"

    layers = _layers()[:1]
    near = Estimates({("conv", "bitserial"): 3.0, ("conv", "int8"): 1.0, ("conv", "float"): ESTIMATE_TIE + 0.01})
    assert choose_impls(layers, {"conv": object()}, near)["conv"].impl == "int8"
    clear = Estimates({("conv", "bitserial"): 3.0, ("conv", "int8"): 1.0, ("conv", "float"): ESTIMATE_TIE - 0.01})
    assert choose_impls(layers, {"conv": object()}, clear)["conv"].impl == "float"
    slow = Estimates({("conv", "bitserial"): 3.0, ("conv", "int8"): 2.0, ("conv", "float"): 1.0})
    assert choose_impls(layers, {"conv": object()}, slow)["conv"].impl == "float"  # int8 2x float: never


def test_a_depthwise_layer_stays_float_by_estimate_but_not_by_measure():
    """Estimates keep a depthwise layer float (its int8 kernel is slower than the float one on
    most shapes, which one calibrated layer does not capture); measured costs still decide."""
    g = GraphBuilder(7)
    ins = [g.op("Relu", ["x"]), g.const(np.float32(0.25), "s"), g.const(np.float32(0), "z"), g.const(np.float32(4), "b")]
    q = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=0, narrow=0, rounding_mode="ROUND")
    w = g.quant(g.const(g.rng.standard_normal((6, 1, 3, 3)).astype(np.float32)), 0.2, 4)
    y = g.op("Conv", [q, w], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=6)
    (layer,) = analyze_model(ir.serde.deserialize_model(g.model({"x": [1, 6, 8, 8]}, [y])))
    assert "int8" in layer.options and "float" in layer.options
    table = {("dw", impl): 1.0 for impl in layer.options} | {("dw", "int8"): 0.1, ("dw", "float"): 1.0}

    class Estimates(GivenCosts):
        kind = "estimated"

    assert choose_impls([layer], {"dw": object()}, Estimates(table))["dw"].impl == "float"
    assert choose_impls([layer], {"dw": object()}, GivenCosts(table))["dw"].impl == "int8"
    assert choose_impls([layer], {"dw": object()}, Estimates(table), overrides={"dw": "int8"})["dw"].impl == "int8"
    assert choose_impls([layer], {}, None)["dw"].impl == "float"  # no costs known: float too, not the analysis' int8
    assert choose_impls(_layers()[:1], {"conv": object()}, Estimates(
        {("conv", "bitserial"): 3.0, ("conv", "int8"): 0.1, ("conv", "float"): 1.0}))["conv"].impl == "int8"


def test_a_float_choice_that_fails_parity_is_lowered_after_all(monkeypatch):
    """A layer left float by its costs is computed by onnxruntime in another order than the
    reference; when parity fails, compile lowers such layers to their cheapest exact option and
    checks again (the verdict is forced here: the rounding it stands for is model-specific)."""
    import qcompile.compiler as compiler

    real_verify, verdicts = compiler.verify, []

    def verify_failing_float_layers(reference, compiled, *args, **kwargs):
        report = real_verify(reference, compiled, *args, **kwargs)
        report.passed = report.passed and "Gemm" not in {n.op_type for n in compiled.graph.node}
        verdicts.append(report.passed)
        return report

    monkeypatch.setattr(compiler, "verify", verify_failing_float_layers)
    costs = GivenCosts({("conv", "bitserial"): 3e-3, ("conv", "int8"): 1e-3, ("conv", "float"): 2e-3,
                        ("fc", "bitserial"): 3e-3, ("fc", "int8"): 2.5e-3, ("fc", "float"): 1.0e-3})
    result = compile_model(_two_layer_model(), costs=costs)
    assert verdicts == [False, True] and result.parity.passed
    rows = {r.name: r for r in result.rows}
    assert (rows["fc"].impl, rows["fc"].why) == ("int8", "measured; float failed parity")
    assert (rows["conv"].impl, rows["conv"].why) == ("int8", "measured")


def test_every_layer_float_by_the_costs_is_a_model_not_an_error():
    # float measured faster for both layers: the compile writes that model (the table says why),
    # where a model with nothing to lower at all is still an error
    costs = GivenCosts({("conv", "bitserial"): 3e-3, ("conv", "int8"): 2e-3, ("conv", "float"): 1e-3,
                        ("fc", "bitserial"): 3e-3, ("fc", "int8"): 2.5e-3, ("fc", "float"): 1.5e-3})
    result = compile_model(_two_layer_model(), costs=costs)
    ops = [n.op_type for n in result.model.graph.node]
    assert "Conv" in ops and "Gemm" in ops and not {"ConvInteger", "BitSerialConv", "BitSerialGemm"} & set(ops)
    assert all(r.note.startswith("stays float: float chosen (measured)") for r in result.rows)
    assert result.parity.passed
