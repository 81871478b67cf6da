"""verify's rounding-tie classification (qcompile.tie_check): a code that differs because the two
models' float values straddle a quantizer's rounding boundary within the float bound is a tie and
parity passes from the compiled codes on; any other code difference stays a mismatch."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qcompile.base.domains import QONNX_DOMAIN, QONNX_OPSET
from qcompile.verify import verify

# x = 9.5 lies exactly on the boundary between codes 9 and 10 of a unit-scale quantizer
X = np.array([[9.5, 3.0, -2.25, 1.0]], np.float32)
W = np.arange(12, dtype=np.float32).reshape(4, 3) - 5


def _model(factor: float) -> onnx.ModelProto:
    """t = x * factor; y = Quant(t, scale 1, 8 bits) @ W. Both models share the tensor name t."""
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n)
             for n, v in [("f", factor), ("s", 1.0), ("z", 0.0), ("b", 8.0), ("w", W)]]
    nodes = [
        helper.make_node("Mul", ["x", "f"], ["t"], name="scale_in"),
        helper.make_node("Quant", ["t", "s", "z", "b"], ["q"], name="act_quant", domain=QONNX_DOMAIN,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["q", "w"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(QONNX_DOMAIN, QONNX_OPSET)])


def test_one_ulp_below_the_boundary_is_a_tie_and_passes():
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))  # 9.5 * this rounds to 9.4999994: code 9
    report = verify(_model(1.0), _model(below_one), {"x": X})
    assert report.passed
    assert report.tie_codes == 1 and [(s.quantizer, s.tensor) for s in report.ties] == [("act_quant", "t")]
    assert all(o.max_abs_error == 0 for o in report.outputs)  # compared from the same codes: exact


def test_a_code_difference_beyond_the_float_bound_is_a_mismatch():
    report = verify(_model(1.0), _model(0.9), {"x": X})  # 8.55 -> code 9: a real error, not a tie
    assert not report.passed and not report.ties
    assert "quantizer 'act_quant'" in report.tie_mismatch and "tie bound" in report.tie_mismatch


def test_equal_codes_report_no_ties():
    report = verify(_model(1.0), _model(1.0), {"x": X})
    assert report.passed and report.ties is None and report.tie_mismatch is None
