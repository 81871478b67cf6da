"""QONNX Trunc: the numpy twin against qonnx's own implementation, and the C++ kernel in
onnxruntime against the twin, bit for bit (both do the SPEC's float32 steps in the same order)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from test_ops_qonnx import bits_equal  # tests/ops is on the path of its own tests

from qcompile import runtime
from qcompile.ops import evaluator, trunc

F32 = TensorProto.FLOAT
DOMAIN = "qonnx.custom_op.general"
V2_INPUTS = ["X", "scale", "zeropt", "in_bits", "out_scale", "out_bits"]
V1_INPUTS = ["X", "scale", "zeropt", "in_bits", "out_bits"]
MODES = sorted(trunc.TRUNC_ROUNDING)


def _model(inputs: list[str], version: int, **attrs):
    node = helper.make_node("Trunc", inputs, ["Y"], domain=DOMAIN, name="pool_trunc", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, F32, None) for n in inputs],
                              [helper.make_tensor_value_info("Y", F32, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, version)])
    model.ir_version = 8
    return model


def _session(model, threads: int = 1) -> ort.InferenceSession:
    so = runtime.session_options()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _pooled(shape, scale: float, seed: int = 0) -> np.ndarray:
    """What an AveragePool of 4-bit codes gives: (sum of k codes / k) · scale, plus ties (x.5) and
    values beyond the output grid."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, size=(*shape, 9)).sum(-1).astype(np.float32) / np.float32(9)
    x = (codes * np.float32(scale)).astype(np.float32)
    flat = x.reshape(-1)
    flat[:6] = np.array([0, 2.5, -2.5, 3.5, 40, -40], np.float32) * np.float32(scale)
    return x


def _v2_feeds(x, scale=0.125, out_scale=0.5, zp=0.0, in_bits=8, out_bits=4):
    f = np.float32
    return dict(X=x, scale=np.array(scale, f), zeropt=np.array(zp, f), in_bits=np.array(in_bits, f),
                out_scale=np.array(out_scale, f), out_bits=np.array(out_bits, f))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signed,narrow", [(0, 0), (1, 0), (1, 1), (0, 1)])
def test_twin_matches_qonnx_v2(mode, signed, narrow):
    from qonnx.custom_op.general.trunc import trunc_v2

    x = _pooled((2, 3, 5, 5), 0.125) * np.float32(1 if not signed else -1) ** np.arange(150).reshape(2, 3, 5, 5)
    x = x.astype(np.float32)
    feeds = _v2_feeds(x)
    ours = trunc.trunc(*feeds.values(), signed=signed, narrow=narrow, rounding_mode=mode)
    theirs = trunc_v2(feeds["X"], feeds["scale"], feeds["zeropt"], feeds["in_bits"], narrow, signed,
                      feeds["out_scale"], feeds["out_bits"], mode)
    np.testing.assert_array_equal(ours, np.asarray(theirs, np.float32))


@pytest.mark.parametrize("mode", MODES)
def test_twin_matches_qonnx_v1(mode):
    from qonnx.custom_op.general.trunc import trunc_v1

    x = _pooled((3, 7), 0.25, seed=1)
    f = np.float32
    args = (x, f(0.25), f(0.0), f(8), f(5))
    np.testing.assert_array_equal(trunc.trunc_v1(*args, rounding_mode=mode),
                                  np.asarray(trunc_v1(*args, mode), np.float32))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signed,narrow,zp", [(0, 0, 0.0), (1, 0, 0.0), (1, 1, 0.0), (1, 0, 2.0)])
def test_kernel_v2_bit_exact(threads, mode, signed, narrow, zp):
    x = _pooled((2, 3, 40, 90), 0.125)  # 21600 elements: two parallel chunks
    x[1] *= np.float32(-1)
    feeds = _v2_feeds(x, zp=zp)
    model = _model(V2_INPUTS, 2, signed=signed, narrow=narrow, rounding_mode=mode)
    (got,) = _session(model, threads).run(None, feeds)
    want = trunc.trunc(*feeds.values(), signed=signed, narrow=narrow, rounding_mode=mode)
    assert bits_equal(got, want)
    # the pure-Python evaluator (the second executor) agrees too
    assert bits_equal(evaluator.run(model, feeds)[0], want)


def test_kernel_v2_per_channel_scales_broadcast():
    x = _pooled((2, 4, 3, 3), 0.25)
    f = np.float32
    scale = np.array([0.25, 0.5, 0.125, 1.0], f).reshape(1, 4, 1, 1)
    feeds = _v2_feeds(x)
    feeds["scale"], feeds["out_scale"] = scale, (scale * f(4)).astype(f)
    (got,) = _session(_model(V2_INPUTS, 2, signed=0)).run(None, feeds)
    assert bits_equal(got, trunc.trunc(*feeds.values(), signed=0))


@pytest.mark.parametrize("mode", MODES)
def test_kernel_v1_bit_exact(mode):
    x = _pooled((5, 11), 0.25, seed=3)
    f = np.float32
    feeds = dict(X=x, scale=np.array(0.25, f), zeropt=np.array(0, f), in_bits=np.array(8, f), out_bits=np.array(5, f))
    (got,) = _session(_model(V1_INPUTS, 1, rounding_mode=mode)).run(None, feeds)
    assert bits_equal(got, trunc.trunc_v1(*feeds.values(), rounding_mode=mode))


@pytest.mark.parametrize("attrs,feed_change,expect", [
    (dict(rounding_mode="STOCHASTIC"), {}, "attribute 'rounding_mode'"),
    (dict(signed=2), {}, "attribute 'signed'"),
    (dict(narrow=-1), {}, "attribute 'narrow'"),
    ({}, dict(out_bits=np.array([4, 4], np.float32)), "input output_bit_width: expected a scalar"),
    ({}, dict(in_bits=np.array(2.5, np.float32)), "input input_bit_width: expected an integer bit width"),
    ({}, dict(scale=np.ones(3, np.float32)), "input scale: shape [3] does not broadcast"),
])
def test_bad_attributes_and_inputs_are_named_errors(attrs, feed_change, expect):
    feeds = {**_v2_feeds(_pooled((2, 4), 0.125)), **feed_change}
    with pytest.raises(Exception, match="pool_trunc") as err:
        _session(_model(V2_INPUTS, 2, **attrs)).run(None, feeds)
    assert expect in str(err.value)


def _ratios_around_half_powers() -> np.ndarray:
    """float32 ratios just below and above 2^(k+1/2): float32's log2 says exactly k+1/2 for some."""
    f = np.float32
    mids = np.float32(2.0) ** (np.arange(-12, 13) + f(0.5))
    return np.concatenate([np.nextafter(mids, f(0)), mids, np.nextafter(mids, f(np.inf))]).astype(f)


def test_trunc_scale_rounds_log2_exactly_near_half_powers():
    ratios = _ratios_around_half_powers()
    exact = np.exp2(np.round(np.log2(ratios.astype(np.longdouble)))).astype(np.float32)  # float80 log2
    assert bits_equal(trunc.trunc_scale(np.float32(1), ratios), exact)
    assert bits_equal(trunc.trunc_scale(np.float32(1), np.float32([0.25, 1, 8])), np.float32([0.25, 1, 8]))


def test_kernel_trunc_scale_matches_twin_near_half_powers():
    """Codes x = 2048 (scale 1) divided by t: t is 2^k or 2^(k+1) exactly as the twin says."""
    ratios = _ratios_around_half_powers().reshape(1, -1, 1, 1)
    x = np.full(ratios.shape, 2048, np.float32)
    feeds = _v2_feeds(x, scale=np.ones_like(ratios), out_scale=ratios, out_bits=24)
    (got,) = _session(_model(V2_INPUTS, 2, signed=0)).run(None, feeds)
    assert bits_equal(got, trunc.trunc(*feeds.values(), signed=0))


def _model_with_scales(scale: float, out_scale: float, **attrs):
    """A version-2 Trunc whose scale and output_scale are initializers, as in an export."""
    model = _model(V2_INPUTS, 2, **attrs)
    model.graph.initializer.extend([helper.make_tensor("scale", F32, [], [scale]),
                                    helper.make_tensor("out_scale", F32, [], [out_scale])])
    return model


@pytest.mark.parametrize("out_scale,attrs,expect", [
    (float(np.nextafter(np.float32(2**10.5), np.float32(np.inf))), {}, "within float rounding of 2^(k+1/2)"),
    (8.0, {"rounding_mode": "SIDEWAYS"}, "attribute rounding_mode 'SIDEWAYS'"),
    (8.0, {"signed": 2}, "attribute signed must be 0 or 1"),
])
def test_compile_refuses_a_trunc_it_cannot_run_exactly_naming_it(out_scale, attrs, expect):
    import onnx_ir as ir

    from qcompile.compiler import check_trunc_nodes
    from qcompile.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="Trunc node 'pool_trunc'") as err:
        check_trunc_nodes(ir.serde.deserialize_model(_model_with_scales(1.0, out_scale, **attrs)))
    assert expect in str(err.value)
    check_trunc_nodes(ir.serde.deserialize_model(_model_with_scales(1.0, 8.0)))  # a power of two: accepted
