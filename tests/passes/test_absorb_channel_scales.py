"""AbsorbChannelScalesPass: a per-input-channel activation scale s0 * 2^e[c] into a Conv that is not
depthwise goes into its integer weights. Structure (a per-tensor Quant, weights e_max bits wider),
the codes unchanged bit for bit, the compiled layer's parity with the reference, grouped convs, and
the cases it must not fire, each with the specific reason the table shows."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from graphs import GraphBuilder

from qcompile import runtime
from qcompile.base.domains import QONNX_DOMAIN
from qcompile.base.ir_readers import const_array
from qcompile.compiler import compile as compile_model
from qcompile.compiler import inspect
from qcompile.errors import UnsupportedError
from qcompile.passes.absorb_channel_scales import AbsorbChannelScalesPass

F32 = np.float32


def _model(ratios, *, wbits=4, group=1, cin=6, cout=8, bias=False) -> onnx.ModelProto:
    g = GraphBuilder(2)
    s = (F32(0.05) * np.asarray(ratios, F32)).astype(F32).reshape(1, cin, 1, 1)
    ins = [g.const(s, "s"), g.const(F32(0), "z"), g.const(F32(4), "b")]
    xq = g.op("Quant", ["x", *ins], domain=QONNX_DOMAIN, name="act", signed=0, narrow=0, rounding_mode="ROUND")
    shape = (cout, cin // group, 3, 3)
    w_scale = g.rng.uniform(0.05, 0.2, (cout, 1, 1, 1)).astype(F32)
    w = g.quant(g.const(g.rng.standard_normal(shape).astype(F32) * 0.3), w_scale, wbits, narrow=1)
    inputs = [xq, w] + ([g.const(g.rng.standard_normal(cout).astype(F32))] if bias else [])
    y = g.op("Conv", inputs, name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group)
    return g.model({"x": [2, cin, 7, 7]}, [y])


def _x(seed=0, shape=(2, 6, 7, 7)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 1.6, shape).astype(F32)


def _run(model: onnx.ModelProto, x: np.ndarray, outputs=None) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), runtime.session_options(threads=1),
                                providers=["CPUExecutionProvider"])
    return sess.run(outputs, {"x": x})


POW2 = [1, 2, 4, 1, 2, 1]  # s[c] / s0 in {1, 2, 4}: two more weight bits


@pytest.mark.parametrize("group,bias", [(1, False), (1, True), (2, False), (3, True)])
def test_power_of_two_ratios_fold_into_the_weights_and_the_layer_lowers(group, bias):
    ref = _model(POW2, group=group, bias=bias, cout=6 if group == 3 else 8)
    model = ir.serde.deserialize_model(ref)
    assert AbsorbChannelScalesPass()(model).modified
    conv = next(n for n in model.graph if n.op_type == "Conv")
    act, wq = conv.inputs[0].producer(), conv.inputs[1].producer()
    assert const_array(act.inputs[1]).size == 1 and float(const_array(act.inputs[1])) == F32(0.05)
    assert act.inputs[0].producer().op_type == "Mul"  # x * 2^-e[c]
    assert float(const_array(wq.inputs[3])) == 6  # 4-bit weights times up to 2^2
    # the codes are the reference Quant's, bit for bit: Quant(x)[c] / s[c] == Quant'(x * 2^-e) / s0
    probe = onnx.ModelProto()
    probe.CopyFrom(ref)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(probe.graph.node[0].output[0], 1, None))
    rewritten = ir.serde.serialize_model(model)
    rewritten.graph.output.append(onnx.helper.make_tensor_value_info(act.outputs[0].name, 1, None))
    x = _x()
    s = (F32(0.05) * np.asarray(POW2, F32)).astype(F32).reshape(1, 6, 1, 1)
    ref_y, ref_q = _run(probe, x)
    new_y, new_q = _run(rewritten, x)
    np.testing.assert_array_equal(ref_q / s, new_q / F32(0.05))
    # the conv's float sum in another order: float32 rounding of the output, a few ulps of its scale
    np.testing.assert_allclose(new_y, ref_y, rtol=1e-5, atol=1e-5 * float(np.abs(ref_y).max()))
    # --impl int8: the absorbed layer can take int8 arithmetic (the cost model may leave one this small float)
    result = compile_model(ref, None, parity_inputs={"x": x}, impl=["int8"])
    assert result.parity.passed
    (row,) = result.rows
    assert row.op_after.startswith("ConvInteger"), (row.op_after, row.note)  # 6-bit weights: int8 arithmetic
    assert row.wbits == "6"


def test_equal_scales_are_a_per_tensor_scale():
    result = compile_model(_model([1] * 6), None, parity_inputs={"x": _x()})
    assert result.parity.passed
    (row,) = result.rows
    assert row.op_after.startswith(("BitSerialConv", "ConvInteger")) and row.wbits == "4"  # lowered (the cost model picks)


@pytest.mark.parametrize("ratios,wbits,reason", [
    ([1, 1.5, 1, 1, 1, 1], 4, "channel 1's scale is 1.5 times the smallest, not a power of two"),
    ([1, 2, 64, 1, 1, 1], 4, "ratios go up to 2^6: the 4-bit weights times them need 10 bits, beyond int8"),
    ([1, 2, 4, 8, 1, 1], 6, "ratios go up to 2^3: the 6-bit weights times them need 9 bits, beyond int8"),
])
def test_not_absorbed_says_exactly_why(ratios, wbits, reason):
    ref = _model(ratios, wbits=wbits)
    assert not AbsorbChannelScalesPass()(ir.serde.deserialize_model(ref)).modified
    rows, _, _ = inspect(ref)
    assert rows[0].op_after == "Conv" and reason in rows[0].note, rows[0].note
    assert rows[0].note.startswith("per-channel activation scale into a Conv with group=1 (not depthwise")
    with pytest.raises(UnsupportedError, match="no layer could be lowered") as err:  # its only layer
        compile_model(ref, None, parity_inputs={"x": _x()})
    assert reason in str(err.value)
