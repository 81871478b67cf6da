"""The analytic cost model (qcompile.costmodel.EstimatedCosts): layer shapes and their features,
the choice it makes on given constants (never on timings), the fit of the constants, their cache
per machine, QCOMPILE_COSTMODEL=static, and the table's columns in the CLI and its JSON."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner

from qcompile import costmodel
from qcompile.analysis import analyze_model
from qcompile.cli import main
from qcompile.compiler import compile as compile_model
from qcompile.costmodel import (
    FEATURES,
    STATIC_CONSTANTS,
    EstimatedCosts,
    choose_impls,
    estimated_costs,
    fit_constants,
    layer_model,
    layer_shape,
)
from qcompile.errors import QCompileError
from qcompile.onnx_builder import GraphBuilder


def _conv_model(cin=16, cout=32, size=10, group=1, wbits=2, abits=2, stride=1):
    g = GraphBuilder(3)
    half = 1 << (wbits - 1)  # the whole signed grid (3..7 are not powers of two: no SHIFT option)
    wv = g.rng.integers(-half, half, (cout, cin // group, 3, 3)).astype(np.float32) * np.float32(0.1)
    x = g.quant("x", 0.1, abits, signed=0)
    w = g.quant(g.const(wv, "w"), 0.1, wbits)
    y = g.op("Conv", [x, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride],
             group=group)
    return g.model({"x": [1, cin, size, size]}, [y])


def _layer(proto):
    (layer,) = analyze_model(ir.serde.deserialize_model(proto))
    return layer


def test_layer_shape_counts_words_pairs_pixels_and_groups():
    proto = _conv_model(cin=100, cout=32, size=10, stride=2)
    shape = layer_shape(_layer(proto), [1, 100, 10, 10])
    assert (shape.dense, shape.out_channels, shape.group_channels, shape.groups, shape.taps, shape.pixels) == \
        (False, 32, 100, 1, 9, 25)
    assert shape.pairs == 4  # 2-bit unsigned activations x 2-bit signed weights: 2 x 2 planes
    assert shape.macs == 32 * 25 * 9 * 100
    assert shape.work("int8") == shape.macs
    assert shape.work("xnor") == 32 * 25 * 9 * 2  # 100 channels: two 64-bit words per tap
    assert shape.work("bitserial") == 4 * shape.work("xnor")
    f = shape.features("bitserial")
    assert list(f) == [1.0, 0.0, shape.work("bitserial"), 0.0, 100 * 100 + 32 * 25, 25.0]
    depthwise = layer_shape(_layer(_conv_model(cin=16, cout=16, group=16)), [1, 16, 10, 10])
    assert (depthwise.groups, depthwise.group_channels, depthwise.work("xnor")) == (16, 1, 16 * 100 * 9)
    assert layer_shape(_layer(proto), [None, 100, None, 10]) is None


def test_layer_shape_of_a_dense_layer():
    g = GraphBuilder(1)
    w = g.quant(g.const(g.rng.standard_normal((10, 200)).astype(np.float32)), 0.3, 3)
    y = g.op("Gemm", [g.quant("x", 0.25, 4, signed=0), w], name="fc", transB=1)
    shape = layer_shape(_layer(g.model({"x": [1, 200]}, [y])), [1, 200])
    assert (shape.dense, shape.out_channels, shape.group_channels, shape.pixels, shape.in_elems) == (True, 10, 200, 1, 200)
    assert list(shape.features("int8")) == [0.0, 1.0, 0.0, 2000.0, 210.0, 1.0]


def _choice_by(constants, proto=None):
    proto = proto or _conv_model()
    layer = _layer(proto)
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    model = layer_model(proto, layer, {"x": dims})
    return choose_impls([layer], {layer.name: model}, EstimatedCosts(constants))[layer.name]


def _only(impl_costs: dict[str, float]) -> dict[str, tuple[float, ...]]:
    """Constants where each implementation costs a fixed overhead (seconds) and nothing else."""
    return {impl: (s, s, 0.0, 0.0, 0.0, 0.0) for impl, s in impl_costs.items()}


def test_the_estimated_choice_follows_the_constants():
    choice = _choice_by(_only({"bitserial": 3e-3, "int8": 1e-3, "float": 2e-3, "twin": 1.5e-3}))
    assert (choice.impl, choice.why, choice.timed_by) == ("int8", "estimated", "estimated")
    assert choice.seconds == pytest.approx({"bitserial": 3e-3, "int8": 1e-3, "float": 2e-3, "twin": 1.5e-3})
    assert _choice_by(_only({"bitserial": 3e-3, "int8": 2.5e-3, "float": 2e-3, "twin": 1e-3})).impl == "float"  # 0.8x int8


def test_plane_pairs_make_bitserial_lose_to_int8_at_4_bits():
    """Per-unit constants: bit-serial pays per word and plane pair, int8 per multiply-add."""
    constants = {impl: (0.0, 0.0, per_unit, 0.0, 0.0, 0.0)
                 for impl, per_unit in (("bitserial", 1e-9), ("int8", 1e-10), ("float", 1e-9), ("twin", 1e-9))}
    # 64 channels: one word per tap; int8 costs 64 MACs x 1e-10 = 6.4e-9 per word, bit-serial 1e-9 per pair
    assert _choice_by(constants, _conv_model(cin=64, wbits=2, abits=2)).impl == "bitserial"  # 4 pairs
    assert _choice_by(constants, _conv_model(cin=64, wbits=4, abits=4)).impl == "int8"  # 16 pairs


def test_a_layer_of_unknown_shape_keeps_the_default():
    proto = _conv_model()
    layer = _layer(proto)
    assert EstimatedCosts().cost(None, layer, "int8", 1) is None
    choice = choose_impls([layer], {}, EstimatedCosts())[layer.name]
    assert (choice.impl, choice.why) == (layer.impl, "default")


def test_fit_recovers_the_constants_and_drops_a_negative_term():
    truth = np.array([1e-5, 8e-6, 2e-10, 3e-10, 4e-9, 5e-9])
    rng = np.random.default_rng(0)
    feats = [np.array([1.0 - d, d, *rng.uniform(1e3, 1e7, 4)]) for d in (0, 1) * 5]
    fitted = fit_constants([(f, float(f @ truth)) for f in feats])
    assert np.allclose(fitted, truth, rtol=1e-6)  # noiseless rows: least squares is exact
    # times that fall with the elements column: that term cannot be negative, it is dropped
    rows = [(np.array([1.0, 0.0, w, 0.0, e, 0.0]), 1e-5 + 1e-9 * w - 1e-10 * e)
            for w, e in ((1e4, 1e3), (2e4, 5e3), (4e4, 1e3), (1e5, 2e4), (3e3, 3e3), (6e4, 1e4))]
    fitted = fit_constants(rows)
    assert fitted[4] == 0.0 and all(c >= 0 for c in fitted)
    assert fit_constants(rows[:3]) is None  # fewer rows than constants


def test_static_mode_never_calibrates(monkeypatch):
    monkeypatch.setattr(costmodel, "calibrate", lambda: pytest.fail("calibrated in static mode"))
    monkeypatch.setenv("QCOMPILE_COSTMODEL", "static")
    costs = estimated_costs()
    assert costs.source == "static" and costs.constants == STATIC_CONSTANTS
    assert set(STATIC_CONSTANTS) == {*costmodel.IMPLS, "twin"} and all(len(c) == len(FEATURES)
                                                                      for c in STATIC_CONSTANTS.values())
    monkeypatch.setenv("QCOMPILE_COSTMODEL", "fast")
    with pytest.raises(QCompileError, match="QCOMPILE_COSTMODEL='fast': expected 'static' or 'calibrated'"):
        estimated_costs()


def test_calibrated_constants_are_cached_per_machine(tmp_path, monkeypatch):
    calls = []
    fake = {impl: (float(i + 1), 1.0, 0.0, 0.0, 0.0, 0.0) for i, impl in enumerate(costmodel.ESTIMATED)}
    monkeypatch.setattr(costmodel, "calibrate", lambda: calls.append(1) or fake)
    monkeypatch.setenv("QCOMPILE_COSTMODEL", "calibrated")
    path = tmp_path / "costmodel.json"
    first = estimated_costs(path)
    assert (first.source, first.constants, len(calls)) == ("calibrated", fake, 1)
    again = estimated_costs(path)
    assert (again.source, again.constants, len(calls)) == ("cached", fake, 1)
    cache = json.loads(path.read_text())
    (machine,) = cache
    assert machine == costmodel.machine_key() and "onnxruntime" in machine
    assert cache[machine]["features"] == list(FEATURES)
    cache[machine]["version"] = costmodel.CALIBRATION_VERSION - 1  # another version's layers: measured again
    path.write_text(json.dumps(cache))
    estimated_costs(path)
    assert len(calls) == 2


def test_calibration_fits_every_implementation(monkeypatch):
    """One real calibration (a few seconds): every implementation's layers run and fit; the values
    are this machine's and are not checked, only that the fit gave a usable model."""
    constants = costmodel.calibrate(budget_s=0.001)
    assert set(constants) == set(costmodel.ESTIMATED)
    assert all(len(c) == len(FEATURES) and all(v >= 0 for v in c) and any(v > 0 for v in c[1:])
               for c in constants.values())


def test_the_cli_table_and_json_show_impl_variant_times_and_why(tmp_path):
    from tests.passes.test_costmodel import _two_layer_model

    path = tmp_path / "m.onnx"
    onnx.save(_two_layer_model(), path)
    out = CliRunner().invoke(main, [str(path), "--json", str(tmp_path / "c.json")])
    assert out.exit_code == 0, out.output
    for col in ("impl", "variant", "ms (chosen", "why", "est.", "estimated"):  # headers may wrap
        assert col in out.output
    layers = json.loads((tmp_path / "c.json").read_text())["layers"]
    for row in layers:
        assert row["why"] == "estimated" and row["timed_by"] == "estimated"
        assert row["time_ms"] > 0 and row["float_ms"] > 0 and row["impl"] in row["options"]
        assert row["variant"]
    forced = CliRunner().invoke(main, [str(path), "--impl", "bitserial", "--json", "-"])
    rows = json.loads(forced.stdout)["layers"]
    assert [(r["impl"], r["why"], r["timed_by"]) for r in rows] == [("bitserial", "--impl", "estimated")] * 2
    inspected = CliRunner().invoke(main, ["inspect", str(path), "--json", "-"])
    assert [r["why"] for r in json.loads(inspected.stdout)["layers"]] == ["estimated"] * 2


def test_compile_takes_the_estimated_choice():
    constants = _only({"bitserial": 1e-3, "int8": 3e-3, "float": 2e-3, "twin": 1e-3})
    from tests.passes.test_costmodel import _two_layer_model

    result = compile_model(_two_layer_model(), costs=EstimatedCosts(constants))
    ops = [n.op_type for n in result.model.graph.node]
    assert "BitSerialConv" in ops and "BitSerialMlp" in ops and result.parity.passed  # the dense layer, fused
    assert all((r.impl, r.why) == ("bitserial", "estimated") for r in result.rows)
