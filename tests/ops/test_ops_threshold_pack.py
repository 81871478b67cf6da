"""qcompile::ThresholdPack: an int8 conv's int32 sums -> a binary layer's packed sign bits, one
threshold per channel; the kernel in onnxruntime against the numpy twin (XnorConvThreshold's own
packing) bit for bit, and its clean errors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import xnor

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _model(out_group: int):
    node = helper.make_node("ThresholdPack", ["D", "t", "dir"], ["Y"], domain="qcompile", out_group=out_group)
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, None) for n in ("D", "t", "dir")]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.UINT64, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])


def _run(out_group, feeds, threads=1):
    so = runtime.session_options()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(_model(out_group).SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


@pytest.mark.parametrize("m,out_group", [(1, 1), (8, 2), (64, 1), (70, 1), (130, 2), (200, 4)])
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (16, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_threshold_pack_equals_the_twin(m, out_group, hw, threads):
    rng = np.random.default_rng(m + hw[0])
    d = rng.integers(-60, 60, (2, m, *hw)).astype(np.int32)
    t = rng.integers(-40, 40, m).astype(np.int32)
    t[:3] = [INT32_MIN, INT32_MAX, 0][: min(3, m)]  # always and never reached
    direction = rng.choice(np.array([-1, 1], np.int32), m)
    d.reshape(-1)[: min(10, d.size)] = t[0] if m else 0  # sums on a threshold exactly
    feeds = {"D": d, "t": t, "dir": direction}
    got = _run(out_group, feeds, threads)
    want = xnor.pack_threshold_bits(d, t, direction, out_group)
    assert got.shape == want.shape == (2, *hw, out_group * -(-(m // out_group) // 64))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("feeds,out_group,message", [
    (dict(D=np.zeros((1, 4, 2), np.int32)), 1, "rank 4"),
    (dict(t=np.zeros(3, np.int32)), 1, "threshold: expected shape \\[4\\]"),
    (dict(dir=np.array([1, 0, 1, 1], np.int32)), 1, "expected \\+1 or -1"),
    ({}, 3, "must divide M"),
])
def test_bad_input_is_a_clean_error(feeds, out_group, message):
    base = dict(D=np.zeros((1, 4, 2, 2), np.int32), t=np.zeros(4, np.int32), dir=np.ones(4, np.int32))
    with pytest.raises(Exception, match=message) as info:
        _run(out_group, {**base, **feeds})
    assert "ThresholdPack" in str(info.value)
